"""Search spaces in W&B sweep syntax: one `Parameter` per entry, `SearchSpace` to check a
space against a builder's `Allowed` values and to declare it on a KerasTuner `hp`."""

import difflib
import math
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from artgan.errors import ArtganError

Distribution = Literal[
    "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform_values"
]
DISTRIBUTIONS = get_args(Distribution)
Scalar = bool | int | float | str


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class Parameter(Strict):
    """One search-space entry in W&B sweep syntax."""

    value: Scalar | None = None
    values: list[Scalar] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    q: float | None = Field(default=None, gt=0)
    distribution: Distribution | None = None
    when: dict[str, Scalar | list[Scalar]] | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [
            self.value is not None,
            self.values is not None,
            self.min is not None or self.max is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of `value`, `values` or `min`+`max`")
        if kinds[2]:
            if self.min is None or self.max is None:
                raise ValueError("a range needs both `min` and `max`")
            if not self.min < self.max:
                raise ValueError(f"empty range: min ({self.min}) must be < max ({self.max})")
            if self.distribution == "log_uniform_values" and self.min <= 0:
                raise ValueError("log_uniform_values needs min > 0")
        if self.values is not None and len(set(map(repr, self.values))) != len(self.values):
            raise ValueError("`values` has duplicates")
        if self.when is not None and len(self.when) != 1:
            raise ValueError("`when` takes exactly one parent parameter")
        return self

    def is_integer_range(self):
        if self.distribution == "int_uniform":
            return True
        if self.distribution is not None:
            return False
        return (
            float(self.min).is_integer()
            and float(self.max).is_integer()
            and (self.q is None or float(self.q).is_integer())
        )


@dataclass(frozen=True)
class Allowed:
    """One hyperparameter as the model builders declare it: what they can build (one of
    `choices`, or numbers, whole ones with `integer`, from `low` to `high`, `high` itself
    only if `high_inclusive`) and the `default` they use when a search does not choose it
    (None: the caller gives it). A search space may only choose among buildable values."""

    choices: tuple[Scalar, ...] = ()
    integer: bool = False
    low: float | None = None
    high: float | None = None
    high_inclusive: bool = True
    default: Scalar | None = None

    def __post_init__(self) -> None:
        if self.default is not None and (problem := self.problem(self.default)):
            raise ValueError(f"the declared default is not buildable: {problem}")

    def problems(self, param: Parameter) -> list[str]:
        """What is wrong with `param` (a search-space entry) for this hyperparameter."""
        if param.min is not None:
            if self.choices:
                return [f"expected one of {list(self.choices)}, not a range"]
            if self.integer and not param.is_integer_range():
                return ["needs whole numbers: give integer min/max (and q)"]
            candidates: list[Any] = [param.min, param.max]
        else:
            candidates = [param.value] if param.value is not None else list(param.values or [])
        return [problem for value in candidates if (problem := self.problem(value))]

    def problem(self, value: Scalar) -> str | None:
        """Why the builders cannot build `value`, or None."""
        if self.choices:
            known = [c for c in self.choices if c == value and type(c) is type(value)]
            return None if known else f"{value!r} is not one of {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if self.integer and not float(value).is_integer():
            return f"{value!r} is not a whole number"
        if self.low is not None and value < self.low:
            return f"{value!r} is below {self.low:g}"
        if self.high is not None and (
            value > self.high or (value == self.high and not self.high_inclusive)
        ):
            return f"{value!r} must be below {self.high:g}" + (
                "" if self.high_inclusive else " (exclusive)"
            )
        return None


class SearchSpace(Strict):
    """A named set of parameters; `register(hp)` declares them on a KerasTuner `hp`."""

    description: str = ""
    parameters: dict[str, Parameter] = Field(min_length=1)
    source: str | None = Field(default=None, exclude=True)  # the YAML file, for messages

    def check(self, allowed: Mapping[str, Allowed]) -> None:
        """Refuse (ArtganError naming file and key) a parameter that no model builder reads,
        e.g. a typo, or a value the builder cannot build. `allowed`: {name: Allowed}."""
        lines = []
        for name, param in self.parameters.items():
            where = f"{self.source or 'search space'}: parameters.{name}"
            if name not in allowed:
                near = difflib.get_close_matches(name, list(allowed), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(allowed)}"
                lines.append(f"{where}: unknown parameter (no model builder reads it){hint}")
                continue
            lines += [f"{where}: {problem}" for problem in allowed[name].problems(param)]
        if lines:
            raise ArtganError("\n".join(lines))

    @model_validator(mode="after")
    def _parents_exist(self):
        for name, param in self.parameters.items():
            for parent in param.when or {}:
                if parent not in self.parameters:
                    raise ValueError(f"{name}.when refers to unknown parameter {parent!r}")
            self.scopes(name)  # no cycles
        return self

    def scopes(self, name, seen=()):
        """[(parent, allowed values), ...] from the outermost condition of `name` inwards: a
        parameter whose parent is itself conditional lives inside both conditions."""
        when = self.parameters[name].when
        if not when:
            return []
        ((parent, allowed),) = when.items()
        if parent in seen or parent == name:
            raise ValueError(
                f"{name}.when: the conditions {' -> '.join([name, *seen])} form a cycle"
            )
        outer = self.scopes(parent, (*seen, name))
        return [*outer, (parent, allowed if isinstance(allowed, list) else [allowed])]

    def register(self, hp):
        """Declare every parameter on `hp`, parents first, conditional ones inside their
        scopes."""
        depth = {name: len(self.scopes(name)) for name in self.parameters}
        for name in sorted(self.parameters, key=depth.get):  # stable: file order per depth
            param = self.parameters[name]
            with ExitStack() as scopes:
                for parent, allowed in self.scopes(name):
                    scopes.enter_context(hp.conditional_scope(parent, allowed))
                declare(hp, name, param)

    def fix(self, name, value):
        """Pin one parameter to a constant (an override `space.NAME=VALUE`)."""
        when = self.parameters[name].when if name in self.parameters else None
        self.parameters[name] = Parameter(value=value, when=when)


def declare(hp, name, param):
    """Map one W&B-style parameter onto hp.Fixed / Boolean / Choice / Int / Float."""
    if param.value is not None:
        return hp.Fixed(name, param.value)
    if param.values is not None:
        if sorted(map(repr, param.values)) == ["False", "True"]:
            return hp.Boolean(name, default=param.values[0])
        return hp.Choice(name, param.values, ordered=_is_numeric(param.values))
    log = param.distribution == "log_uniform_values"
    sampling = "log" if log else "linear"
    if param.is_integer_range():
        step = int(param.q) if param.q else None
        return hp.Int(name, int(param.min), int(param.max), step=step, sampling=sampling)
    return hp.Float(name, param.min, param.max, step=param.q, sampling=sampling)


def _is_numeric(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
