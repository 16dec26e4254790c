"""The percentile rule (Optuna's `PercentilePruner`): a trial stops when its best value so
far is not among the best `percentile` % of the finished trials' best values up to the same
epoch. `percentile: 25` keeps only trials on course for the top quarter; 50 is the median
rule (`median`)."""

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from artgan.config.space import Strict


class Settings(Strict):
    #: The share of the finished trials, best first, a trial must keep up with to go on.
    percentile: float = Field(default=25.0, gt=0, lt=100)


def running_best(curve: Sequence[float], direction: str = "max") -> list[float]:
    """[best of the first 1, first 2, ... values] of a curve."""
    pick = max if direction == "max" else min
    best, result = None, []
    for value in curve:
        best = value if best is None else pick(best, value)
        result.append(best)
    return result


def percentile_stop(
    curve: Sequence[float],
    finished: Sequence[Sequence[float]],
    percentile: float,
    direction: str = "max",
) -> bool:
    """True when the best of `curve` so far is worse than the threshold that the best
    `percentile` % of the finished trials' bests up to the same epoch reach (linearly
    interpolated between trials, as numpy's percentile). A finished trial that ran fewer
    epochs counts with its best over all it ran. Ties go on."""
    epoch = len(curve)
    mine = running_best(curve, direction)[-1]
    theirs = [running_best(c, direction)[min(epoch, len(c)) - 1] for c in finished]
    if direction == "max":
        return mine < float(np.percentile(theirs, 100 - percentile))
    return mine > float(np.percentile(theirs, percentile))


class Percentile:
    name = "percentile"
    settings = Settings

    def should_stop(
        self,
        curve: Sequence[float],
        finished: Sequence[Sequence[float]],
        direction: str,
        settings: BaseModel,
    ) -> bool:
        return percentile_stop(curve, finished, settings.model_dump()["percentile"], direction)


PERCENTILE = Percentile()
