"""The median-stopping rule (Vizier's and Optuna's): a trial stops when its best value so
far is worse than the median of the finished trials' best values up to the same epoch. It
is the percentile rule at 50 % (`artgan.tuning.pruners.percentile`), with no settings."""

from collections.abc import Sequence

from pydantic import BaseModel

from artgan.config.space import Strict
from artgan.tuning.pruners.percentile import percentile_stop


class Settings(Strict):
    """None of its own."""


class Median:
    name = "median"
    settings = Settings

    def should_stop(
        self,
        curve: Sequence[float],
        finished: Sequence[Sequence[float]],
        direction: str,
        settings: BaseModel,
    ) -> bool:
        return percentile_stop(curve, finished, 50.0, direction)


MEDIAN = Median()
