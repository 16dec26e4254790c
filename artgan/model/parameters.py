"""The hyperparameters the model builders read, each declared once (`PARAMETERS`): what the
builders can build and the default they use when a search does not choose it.

Everything else derives from this table: a search space (`search_spaces/*.yaml`, the only
place where ranges to search are chosen) is checked against it before a search starts, and
a builder reads a trial's value, or the default, through `value`, which refuses anything
the table does not allow. Builders never declare ranges of their own, so there is no second
range that could silently differ from the space's. This module does not load TensorFlow: a
misspelled parameter is answered before it does.

Adding a hyperparameter: one entry here, one `value(hp, "name")` where a builder uses it,
and the search spaces that should search it.
"""

from typing import Any, Protocol

from artgan.config.space import Allowed, Scalar
from artgan.errors import ArtganError
from artgan.model.backbones import BACKBONES, SCRATCH, SEQUENCE_TAPS

SEQUENCE_MODES = ("rows", "columns", "both")
#: What reads a pretrained backbone's features: the LSTM over the feature map (a CRNN), or
#: a one-hidden-layer network over pooled statistics (the stages' global means and the
#: feature map's), which a linear probe cannot match and which trains in seconds an epoch.
HEADS = ("lstm", "pooled")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
#: The learning rate over a trial's epochs: `learning_rate` throughout, or falling from it
#: to zero along a half cosine over the search's epoch budget (Loshchilov & Hutter, SGDR).
LR_SCHEDULES = ("constant", "cosine")
#: What of a pretrained backbone a trial trains: nothing, its last block + head conv, all.
TRAINABLE = ("frozen", "top", "all")
BOOLEAN = (True, False)

PARAMETERS: dict[str, Allowed] = {
    "backbone": Allowed(choices=tuple(BACKBONES.names()), default=SCRATCH),
    # A pretrained backbone: the feature map the head reads, what of the backbone trains,
    # and (LSTM head) whether its pooled stage statistics join the LSTM's output.
    "backbone_layer": Allowed(choices=tuple(SEQUENCE_TAPS), default="stage6"),
    "backbone_trainable": Allowed(choices=TRAINABLE, default="frozen"),
    "pooled_stages": Allowed(choices=BOOLEAN, default=False),
    "head": Allowed(choices=HEADS, default="lstm"),
    "head_units": Allowed(integer=True, low=1, default=512),
    # A CNN trained from scratch (a pretrained backbone reads its own input size).
    "input_size": Allowed(integer=True, low=8, high=1024, default=96),
    "conv_blocks": Allowed(integer=True, low=1, high=8, default=3),
    "base_filters": Allowed(integer=True, low=1, default=32),
    "filter_growth": Allowed(low=1.0, high=4.0, default=2.0),
    "kernel_size": Allowed(integer=True, low=1, high=15, default=3),
    # The LSTM head.
    "sequence": Allowed(choices=SEQUENCE_MODES, default="rows"),
    "lstm_units": Allowed(integer=True, low=1, default=64),
    "bidirectional": Allowed(choices=BOOLEAN, default=False),
    # Either head, and training.
    "dropout": Allowed(low=0.0, high=1.0, high_inclusive=False, default=0.3),
    "optimizer": Allowed(choices=OPTIMIZERS, default="adam"),
    "learning_rate": Allowed(low=1e-8, high=10.0, default=1e-3),
    "lr_schedule": Allowed(choices=LR_SCHEDULES, default="constant"),
    "momentum": Allowed(low=0.0, high=1.0, high_inclusive=False, default=0.9),  # SGD's
    "batch_size": Allowed(integer=True, low=1),  # default: the spec's `training.batch_size`
}


class ImpossibleConfiguration(ArtganError):
    """Hyperparameter values no network can be built from (a search fails such a trial at
    once, without retrying it); the message names the parameter."""


class TrialValues(Protocol):
    """What a builder reads hyperparameters from: KerasTuner's `HyperParameters` (a trial's,
    or a bare one, where every parameter takes its default)."""

    values: dict[str, Scalar]  # the active parameters' values

    def is_active(self, hyperparameter: str) -> bool: ...


def value(hp: TrialValues, name: str, default: Scalar | None = None) -> Any:
    """The value of hyperparameter `name` a builder uses: `hp`'s when it has an active one,
    else the declared default (`default` where the declaration leaves it to the caller).
    `ImpossibleConfiguration` when the table says the builders cannot build it."""
    declared = PARAMETERS[name]  # a KeyError here is a builder reading an undeclared name
    chosen: Any
    if name in hp.values and hp.is_active(name):
        chosen = hp.values[name]
    else:
        chosen = default if declared.default is None else declared.default
    problem = declared.problem(chosen)
    if problem:
        raise ImpossibleConfiguration(f"`{name}`: {problem}")
    return chosen
