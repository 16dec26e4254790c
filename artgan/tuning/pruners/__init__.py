"""Pruning rules behind one small protocol, found by name in a registry: what the spec's
`pruning.type` names (`none`: no pruning).

A rule decides, after each epoch of a trial, whether the trial stops, from the trial's
objective curve so far and the finished trials' curves (`artgan.tuning.pruning` reads them
from the run folder and applies the decision). `should_stop` below waits for the spec's
warm-up (`pruning.min_epochs`, `pruning.min_trials`) for every rule; keys of `pruning:`
besides those are the rule's own settings, which its `settings` model checks.

Adding a rule: one module in this package with an object satisfying `Pruner` (below), one
`register(...)` line at the end of this file, one test of what it stops
(tests/test_pruning.py). Nothing else changes: specs accept the name and its settings
(`artgan.tuning.check`) and trials are pruned by it. Rules are pure functions of curves:
no Keras, no TensorFlow.
"""

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

from artgan.config.spec import PruningSpec
from artgan.registry import Registry

NONE = "none"
Curve = Sequence[float]


class Pruner(Protocol):
    """What artgan needs of a pruning rule."""

    @property
    def name(self) -> str:
        """The spec's `pruning.type`, e.g. "median"."""

    @property
    def settings(self) -> type[BaseModel]:
        """Its own keys in the spec's `pruning:` (a `Strict` model: unknown keys are errors)."""

    def should_stop(
        self, curve: Curve, finished: Sequence[Curve], direction: str, settings: BaseModel
    ) -> bool:
        """Whether the trial whose objective per epoch so far is `curve` stops now.
        `finished`: the finished trials' curves (at least `min_trials`, none empty);
        `curve` has at least `min_epochs` values; `direction`: "max" or "min";
        `settings`: the spec's, as `self.settings`."""


PRUNERS: Registry[Pruner] = Registry("pruning rule", reserved=(NONE,))
register = PRUNERS.register
get_pruner = PRUNERS.find


def own_settings(pruning: PruningSpec) -> BaseModel:
    """The rule's own settings: the keys of `pruning` besides the common ones."""
    return get_pruner(pruning.type).settings.model_validate(pruning.model_extra or {})


def should_stop(
    pruning: PruningSpec, curve: Curve, finished: Sequence[Curve], direction: str = "max"
) -> bool:
    """The spec's rule, after its warm-up: False before `min_epochs` epochs, or before
    `min_trials` trials have finished (empty curves do not count)."""
    finished = [c for c in finished if c]
    if (
        pruning.type == NONE
        or len(curve) < pruning.min_epochs
        or len(finished) < pruning.min_trials
    ):
        return False
    rule = get_pruner(pruning.type)
    return bool(rule.should_stop(curve, finished, direction, own_settings(pruning)))


# ----------------------------------------------------------------------------- registry

from artgan.tuning.pruners import median, percentile  # noqa: E402 - registers after the API

register(median.MEDIAN)
register(percentile.PERCENTILE)
