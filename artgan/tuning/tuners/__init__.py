"""Tuners (search algorithms) behind one small protocol, found by name in a registry: what
the spec's `tuner.type` names.

A tuner here is a KerasTuner tuner class and the constructor arguments it takes from the
spec; `artgan.tuning.tuner.make_tuner` mixes trial recording into the class and adds what
every tuner gets (the hypermodel, the search space, objective, seed, directory, retries).

Adding a tuner: one module in this package with an object satisfying `Tuner` (below), one
`register(...)` line at the end of this file, one test that a search with it runs
(tests/test_registries.py checks that every registered name has a working implementation).
Nothing else changes: specs accept the name (`artgan.tuning.check`) and `make_tuner` builds
it. Import KerasTuner inside `tuner_class`, not at the top of the module: the registry is
read when a spec is checked, before TensorFlow loads.
"""

from typing import Any, Protocol

from artgan.config.spec import ExperimentSpec
from artgan.registry import Registry


class Tuner(Protocol):
    """What artgan needs of a search algorithm."""

    name: str  # the spec's `tuner.type`, e.g. "bayesian"
    #: Whether artgan's pruning (the spec's `pruning`) may stop its trials; False for a
    #: tuner that stops trials early itself (Hyperband).
    prunable: bool

    def tuner_class(self) -> type:
        """The `keras_tuner.Tuner` subclass that searches."""

    def arguments(self, spec: ExperimentSpec) -> dict[str, Any]:
        """Its own constructor arguments, from the spec (e.g. `max_trials`)."""


TUNERS: Registry[Tuner] = Registry("tuner")
register = TUNERS.register
get_tuner = TUNERS.find


# ----------------------------------------------------------------------------- registry

from artgan.tuning.tuners import keras_tuners  # noqa: E402 - registers after the API

register(keras_tuners.RANDOM)
register(keras_tuners.BAYESIAN)
register(keras_tuners.HYPERBAND)
