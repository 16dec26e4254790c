"""Experiment specs and search spaces: YAML -> validated objects -> KerasTuner `hp`.

An experiment (`experiments/*.yaml`) names a task, its data, a tuner, a budget and a
search space file (`search_spaces/*.yaml`). Search spaces use the `parameters:` block of
Weights & Biases sweep configs, which many users already write:

    parameters:
      conv_blocks:   {min: 2, max: 4}                    # hp.Int
      dropout:       {min: 0.1, max: 0.5, q: 0.1}        # hp.Float with step
      learning_rate: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
      sequence:      {values: [rows, columns, both]}     # hp.Choice
      bidirectional: {values: [true, false]}             # hp.Boolean
      input_size:    {value: 64}                         # hp.Fixed
      momentum:      {min: 0.0, max: 0.95, when: {optimizer: sgd}}   # conditional

`when:` (our one addition) makes a parameter exist only while another has one of the
given values, via `hp.conditional_scope`. Pydantic validates both files, so a mistake is
reported with the file, the key and what was expected.
"""

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from artgan.config.space import SearchSpace, Strict
from artgan.errors import ArtganError
from artgan.files import file_sha256, not_a_file
from artgan.paths import EXPERIMENTS, data_root

Model = TypeVar("Model", bound=BaseModel)

Task = Literal["style", "genre", "artist"]
TASKS = get_args(Task)


class DataSpec(Strict):
    train: str
    val: str
    classes: str
    images: str
    resize: Literal["letterbox", "stretch", "crop"] = "letterbox"
    on_error: Literal["raise", "skip"] = "raise"


class TunerSpec(Strict):
    """The search algorithm: `type` names one in `artgan.tuning.tuners` (checked with the
    rest of the search by `artgan.tuning.check`); the other keys are some tuners' own."""

    type: str = "bayesian"
    objective: str = "val_accuracy"
    direction: Literal["min", "max"] | None = None
    hyperband_factor: int = Field(default=3, ge=2)
    #: Bayesian only (like hyperband_factor for hyperband): random trials before the
    #: Gaussian process steers; KerasTuner's default, 3 per hyperparameter, would spend a
    #: small budget entirely at random.
    initial_points: int | None = Field(default=None, ge=1)

    @property
    def resolved_direction(self):
        if self.direction:
            return self.direction
        return "min" if self.objective.endswith("loss") else "max"


class BudgetSpec(Strict):
    max_trials: int = Field(default=10, ge=1)
    epochs: int = Field(default=10, ge=1)
    executions_per_trial: int = Field(default=1, ge=1)
    max_train_images: int | None = Field(default=None, ge=1)
    max_val_images: int | None = Field(default=None, ge=1)
    #: Wall-clock minutes for the whole search: no trial starts after them (the running one
    #: finishes or is pruned). Counted from when this run started; a rerun gets them afresh.
    max_minutes: float | None = Field(default=None, gt=0)
    #: How often a trial that crashed (out of memory, any error but an impossible
    #: configuration, which fails at once) runs again before it counts as FAILED.
    max_retries: int = Field(default=1, ge=0)


class EarlyStoppingSpec(Strict):
    enabled: bool = True
    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class PruningSpec(Strict):
    """Stop a trial early when it trails the finished ones: after each epoch from
    `min_epochs` on, once `min_trials` trials have finished, the rule `type` names (one in
    `artgan.tuning.pruners`, e.g. `median`; `none`: no pruning) decides. Other keys are the
    rule's own settings (e.g. `percentile`), which the rule checks (`artgan.tuning.check`)."""

    model_config = ConfigDict(extra="allow")

    type: str = "none"
    min_epochs: int = Field(default=2, ge=1)
    min_trials: int = Field(default=3, ge=1)


class TrainingSpec(Strict):
    augment: bool = True
    batch_size: int = Field(default=32, ge=1)
    best_models: int = Field(default=3, ge=1)
    #: Also save the best models' class probabilities averaged, as `best/ensemble.keras`.
    ensemble: bool = True


class DistributionSpec(Strict):
    """How one trial uses this process's devices: `default` = one device, `mirrored` =
    `tf.distribute.MirroredStrategy` over every visible GPU (batches split across them)."""

    strategy: Literal["default", "mirrored"] = "default"


class ExperimentSpec(Strict):
    """A whole experiment, as written in `experiments/<task>.yaml`."""

    task: Task
    description: str = ""
    data: DataSpec
    search_space: str
    tuner: TunerSpec = TunerSpec()
    budget: BudgetSpec = BudgetSpec()
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    pruning: PruningSpec = PruningSpec()
    training: TrainingSpec = TrainingSpec()
    distribution: DistributionSpec = DistributionSpec()
    seed: int = Field(default=42, ge=0, lt=2**32)  # what numpy and TensorFlow accept
    output: str

    # Filled in by load_experiment; not part of the YAML.
    source: str | None = Field(default=None, exclude=True)
    space: SearchSpace | None = Field(default=None, exclude=True)

    def path(self, key):
        """A data path from the spec, with ${VARS} expanded, as an absolute Path."""
        raw = getattr(self.data, key)
        return resolve_path(expand_vars(raw, f"{self.source}: data.{key}"))

    @property
    def output_dir(self):
        return resolve_path(expand_vars(self.output, f"{self.source}: output"))

    def resolved(self):
        """The spec with its search space inlined: what a run really used (for provenance)."""
        spec = self.model_dump(mode="json")
        spec["search_space"] = {
            "file": self.search_space,
            **self.space.model_dump(mode="json", exclude_none=True),
        }
        return spec

    def comparable(self):
        """Everything that changes what a trial scores, as flat `key: value` pairs: the data
        (with a hash of each label file's contents, so the same paths with other rows differ),
        the search space, tuner, seed, training, early stopping, pruning (when on: it changes
        how long trials train), epochs and image subsets. Resuming a run folder and joining a chief's search both require it to match; the
        number of trials, the output path, devices and descriptions may differ."""
        spec = self.resolved()
        spec["search_space"].pop("description", None)
        kept = {
            k: spec[k]
            for k in (
                "task",
                "data",
                "search_space",
                "tuner",
                "seed",
                "training",
                "early_stopping",
            )
        }
        kept["budget"] = {k: spec["budget"][k] for k in SCORED_BUDGET}
        if self.pruning.type != "none":  # absent when off, so older run folders still match
            kept["pruning"] = spec["pruning"]
        kept["label_files"] = {
            k: content_sha256(self.path(k)) for k in ("train", "val", "classes")
        }
        return flatten(kept)

    def fingerprint(self):
        """A short hash of `comparable()`."""
        return hashlib.sha256(json.dumps(self.comparable(), sort_keys=True).encode()).hexdigest()[
            :16
        ]


#: Budget keys that change what a trial scores (max_trials and max_minutes only change how
#: many trials there are).
SCORED_BUDGET = ("epochs", "executions_per_trial", "max_train_images", "max_val_images")


def flatten(data, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}; a search space's `parameters` stay whole."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "parameters":
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def differences(mine, theirs, limit=6):
    """'key: there X, here Y' for each key where two `comparable()` dicts differ."""
    keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return [f"{k}: there {theirs.get(k)!r}, here {mine.get(k)!r}" for k in keys[:limit]]


def content_sha256(path):
    try:
        return file_sha256(path)
    except OSError:
        return "missing"


#: What an unset variable should point at, for the error message.
VARIABLE_HINTS = {
    "WIKIART_IMAGES": (
        "the unpacked WikiArt image folder (wikiart/ from the 25.4 GB ArtGAN download); "
        "no images with these labels ship with artgan"
    ),
    "ARTGAN_LABELS": "the folder holding the ArtGAN Style/, Genre/ and Artist/ label files",
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^{}]*))?\}")


def expand_vars(text, where):
    """Expand ${VAR} and ${VAR:-default}; ARTGAN_DATA defaults to the shared data root."""

    def substitute(match):
        name, default = match.group(1), match.group(2)
        if name == "ARTGAN_DATA":
            return str(data_root())
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        hint = VARIABLE_HINTS.get(name, "the folder it names")
        raise ArtganError(
            f"{where} uses ${{{name}}}, which is not set. Set the environment variable "
            f"{name} to {hint} (docs/data.md, 'Full WikiArt data'), e.g. {name}=/data/wikiart."
        )

    expanded = _VAR.sub(substitute, text)
    while expanded != text:  # inner ${...} in a default expand first
        text, expanded = expanded, _VAR.sub(substitute, expanded)
    return expanded


def resolve_path(text):
    path = Path(text).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def load_experiment(path, overrides=()):
    """Read, override (`key.sub=value`), and validate an experiment and its search space."""
    path = Path(path)
    raw = read_yaml(path)
    space_overrides = []
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("space."):
            space_overrides.append((key[len("space.") :], value))
        else:
            set_dotted(raw, key, value, path)
    spec = validate(ExperimentSpec, raw, path)
    space_file = (path.parent / spec.search_space).resolve()
    space = validate(SearchSpace, read_yaml(space_file), space_file)
    space.source = str(space_file)
    for name, value in space_overrides:
        space.fix(name, value)
    return spec.model_copy(update={"source": str(path), "space": space})


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        reason = f"not UTF-8 text (byte {error.start}); save it as UTF-8"
        raise ArtganError(f"{path}: {reason}") from None
    data = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise ArtganError(f"{path}: expected a mapping of keys at the top level")
    return data


def parse_yaml(text, where, plain_text=False):
    """YAML `text` read from `where` (a file or an override), every failure one line;
    `plain_text`: text that is not YAML syntax is returned as is (an override's value)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        if plain_text:
            return text
        mark = getattr(error, "problem_mark", None)
        where = f"{where}:{mark.line + 1}" if mark else str(where)
        raise ArtganError(
            f"{where}: not valid YAML ({getattr(error, 'problem', error)})"
        ) from None
    except ValueError as error:  # e.g. an integer longer than Python converts (4300 digits)
        reason = str(error).split(":")[0]
        raise ArtganError(f"{where}: not valid YAML ({reason[:1].lower()}{reason[1:]})") from None
    except RecursionError:
        raise ArtganError(f"{where}: not valid YAML (nested too deeply)") from None


def validate(model: type[Model], data: object, path: object, section: str = "") -> Model:
    """Pydantic validation with errors rewritten as `file: key.path: message` lines (`section`:
    where `data` sits in the file, e.g. "pruning")."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            key = ".".join(str(part) for part in [*filter(None, [section]), *item["loc"]])
            key = key or "(top level)"
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key"
            lines.append(f"{path}: {key}: {message}")
        raise ArtganError("\n".join(lines)) from None


def parse_override(item):
    if "=" not in item:
        raise ArtganError(f"`overrides` {item!r}: expected KEY=VALUE, e.g. budget.max_trials=3")
    key, _, text = item.partition("=")
    return key.strip(), parse_yaml(text, f"`overrides` {key.strip()}", plain_text=True)


def set_dotted(data, key, value, path):
    """Set data['a']['b'] for key 'a.b', creating sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ArtganError(f"`overrides` {key}: {path}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def experiment_names():
    """The experiments a task name can give (`experiments/<name>.yaml`), sorted."""
    return sorted(path.stem for path in EXPERIMENTS.glob("*.yaml"))


def experiment_file(task_or_path):
    """`genre` -> experiments/genre.yaml; a path is returned as is. A name with no
    experiment file is an `ArtganError` listing the names there are."""
    candidate = Path(task_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    path = EXPERIMENTS / f"{task_or_path}.yaml"
    if not path.is_file():
        names = experiment_names()
        close = difflib.get_close_matches(str(task_or_path), names, n=1)
        raise ArtganError(
            f"{task_or_path!r} is not a task or an experiment file; tasks: "
            f"{', '.join(names)}" + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    return path
