"""Pretrained CNN front ends behind one small protocol, found by name in a registry.

A backbone is split where artgan caches its activations (`artgan.model.embeddings`):

    image -> bottom -> taps stage5 (stride 16), stage6 (stride 32, the cache point),
                       pooled (global means of the stages before the last)
    stage6 -> top   -> taps stage7 (the last stage), top (the head conv)

so a trial can train a head on cached `bottom` outputs and still run (and fine-tune) `top`.

Adding a backbone: one module in this package with an object satisfying `Backbone`
(below), one `register(...)` line at the end of this file, one test that converts its
weights offline and checks a known photo's ImageNet class (tests/test_backbones.py).
Nothing else changes: the search space's `backbone` choice, `python -m artgan similar
--extractor NAME`, the embedding cache (keyed by `name` and `weights_id`) and the bench
all read this registry. Import Keras inside the methods that build models (not at the top of
the module): the registry is read when a spec is checked, before TensorFlow loads.
"""

from typing import Protocol

from artgan.registry import Registry

#: The bottom part's outputs: what an embedding cache stores per image.
BOTTOM_TAPS = ("stage5", "stage6", "pooled")
#: Feature maps a head can read: (name, needs the top part).
SEQUENCE_TAPS = {"stage5": False, "stage6": False, "stage7": True, "top": True}
SCRATCH = "scratch"


class Backbone(Protocol):
    """What artgan needs of a pretrained front end. Models must use built-in Keras layers
    only, so saved models load with plain Keras; every layer has a fixed name."""

    @property
    def name(self) -> str:
        """The search-space value, e.g. "efficientnet_lite1"."""

    @property
    def input_size(self) -> int:
        """The side of the square [0, 1] RGB image `bottom` reads."""

    @property
    def weights_id(self) -> str:
        """Changes whenever the weights do (part of every embedding cache key)."""

    @property
    def origin(self) -> str:
        """Where the weights come from (package, licence, sha256), for model cards."""

    def bottom(self, input_size: int | None = None):
        """keras.Model: image -> {tap: tensor} for every name in `BOTTOM_TAPS`."""

    def top(self, stage6_shape: tuple, head: bool = True):
        """keras.Model: stage6 map -> {"stage7"[, "top"]}, ImageNet weights loaded."""

    def tap_shapes(self) -> dict:
        """{tap: shape of one image's output} for `BOTTOM_TAPS`, without building a model."""

    def classifier(self):
        """The whole ImageNet classifier ([0, 1] image -> 1000 probabilities), to check the
        converted weights against known photos."""


BACKBONES: Registry[Backbone] = Registry("backbone", reserved=(SCRATCH,))
register = BACKBONES.register
get_backbone = BACKBONES.find


# ----------------------------------------------------------------------------- registry

from artgan.model.backbones import efficientnet_lite, multiscale  # noqa: E402 - after the API

register(efficientnet_lite.LITE0)
register(efficientnet_lite.LITE1)
register(efficientnet_lite.LITE2)
register(multiscale.LITE0_MULTISCALE)
