"""The one check of a search before it starts: what its spec names must exist and be
buildable. The single search (`artgan.tuning.tuner.run_search`), the launcher
(`artgan.tuning.parallel.launcher.launch`) and every chief or worker process
(`artgan.tuning.parallel.roles.run_process`) call `check_search` before they write anything;
the CLI calls it before TensorFlow loads, so nothing imported here may load it.

The schema of a spec (`artgan.config.spec`) knows its keys and types; the names it accepts
for tuners, pruning rules, and search-space parameters and their values come from the
registries and the parameter table above it (`artgan.tuning.tuners`,
`artgan.tuning.pruners`, `artgan.model.parameters`, which reads `artgan.model.backbones`).
"""

import difflib

from artgan.config.spec import ExperimentSpec, validate
from artgan.errors import ArtganError
from artgan.model.parameters import PARAMETERS
from artgan.tuning.pruners import NONE, PRUNERS, get_pruner
from artgan.tuning.tuners import TUNERS, get_tuner


def check_search(spec: ExperimentSpec) -> None:
    """Refuse, with one `ArtganError` listing every problem (each naming the file and key),
    a search whose space names a parameter no builder reads or a value it cannot build, or
    whose tuner or pruning rule is unknown, or whose rule's settings are wrong."""
    lines = space_problems(spec) + tuner_problems(spec) + pruning_problems(spec)
    if lines:
        raise ArtganError("\n".join(lines))


def space_problems(spec: ExperimentSpec) -> list[str]:
    assert spec.space is not None  # load_experiment always resolves it
    try:
        spec.space.check(PARAMETERS)
    except ArtganError as error:
        return str(error).splitlines()
    return []


def tuner_problems(spec: ExperimentSpec) -> list[str]:
    if spec.tuner.type not in TUNERS:
        return [unknown(spec, "tuner.type", spec.tuner.type, TUNERS.names())]
    return []


def pruning_problems(spec: ExperimentSpec) -> list[str]:
    pruning, where = spec.pruning, where_in(spec)
    if pruning.type == NONE:
        return [
            f"{where}: pruning.{key}: unknown key (pruning.type is {NONE})"
            for key in pruning.model_extra or {}
        ]
    if pruning.type not in PRUNERS:
        return [unknown(spec, "pruning.type", pruning.type, PRUNERS.names())]
    try:
        validate(get_pruner(pruning.type).settings, pruning.model_extra or {}, where, "pruning")
    except ArtganError as error:
        return str(error).splitlines()
    if spec.tuner.type in TUNERS and not get_tuner(spec.tuner.type).prunable:
        reason = f"the {spec.tuner.type} tuner stops trials early itself"
        return [f"{where}: pruning.type: {reason}; set pruning.type: {NONE}"]
    return []


def unknown(spec: ExperimentSpec, key: str, name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{where_in(spec)}: {key}: unknown {name!r}; known: {', '.join(known)}{hint}"


def where_in(spec: ExperimentSpec) -> str:
    return spec.source or "experiment"
