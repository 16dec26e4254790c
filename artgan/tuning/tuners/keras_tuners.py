"""KerasTuner's own tuners: random search, Bayesian optimisation (a Gaussian process) and
Hyperband. KerasTuner is imported when a tuner class is asked for (it loads TensorFlow)."""

from typing import Any

from artgan.config.spec import ExperimentSpec


class KerasTuner:
    """One of KerasTuner's tuners, found by its class name in `keras_tuner`."""

    name = ""
    class_name = ""
    prunable = True

    def tuner_class(self) -> type:
        import keras_tuner as kt

        return getattr(kt, self.class_name)

    def arguments(self, spec: ExperimentSpec) -> dict[str, Any]:
        return dict(max_trials=spec.budget.max_trials)


class RandomSearch(KerasTuner):
    name, class_name = "random", "RandomSearch"


class BayesianOptimization(KerasTuner):
    """`tuner.initial_points`: random trials before the Gaussian process steers."""

    name, class_name = "bayesian", "BayesianOptimization"

    def arguments(self, spec: ExperimentSpec) -> dict[str, Any]:
        return dict(
            max_trials=spec.budget.max_trials, num_initial_points=spec.tuner.initial_points
        )


class Hyperband(KerasTuner):
    """`tuner.hyperband_factor`: the halving factor. Trials are stopped early by Hyperband
    itself (successive halving), so artgan's pruning does not apply; `budget.epochs` is the
    most epochs a trial trains, and the number of trials follows from it."""

    name, class_name, prunable = "hyperband", "Hyperband", False

    def arguments(self, spec: ExperimentSpec) -> dict[str, Any]:
        return dict(
            max_epochs=spec.budget.epochs,
            factor=spec.tuner.hyperband_factor,
            hyperband_iterations=1,
        )


RANDOM, BAYESIAN, HYPERBAND = RandomSearch(), BayesianOptimization(), Hyperband()
