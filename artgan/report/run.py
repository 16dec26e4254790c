"""A run folder read back for the report: its spec, trials table and saved models."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from artgan.config.space import SearchSpace
from artgan.config.spec import (
    ExperimentSpec,
    experiment_file,
    experiment_names,
    load_experiment,
    parse_yaml,
    validate,
)
from artgan.data.splits import SplitImages, TaskData, load_split_images
from artgan.errors import ArtganError
from artgan.runfolder import FINISHED, RunFolder, TrialRow, hp_columns

UNFINISHED = {
    "RUNNING": "still running",
    "IDLE": "not started",
    "INVALID": "invalid hyperparameters",
    "STOPPED": "stopped early by the tuner",
}


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """A finished (or partly finished) search, as read back from its folder."""

    folder: Path
    spec: ExperimentSpec  # rebuilt from spec.yaml
    spec_text: str
    trials: pd.DataFrame  # one row per trial, best first; hp/<name> columns
    histories: dict[str, dict[str, list[float]]]  # trial_id -> {metric: per-epoch values}
    models: list[Path]  # best/model_N.keras, best first

    @property
    def objective(self) -> str:
        return self.spec.tuner.objective

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"].isin(FINISHED)]

    def val_split(self, data: TaskData, metadata: dict[str, Any]) -> SplitImages:
        """`data`'s validation paintings as the saved model with `metadata` reads them."""
        return load_split_images(
            data.val,
            metadata["input_size"],
            metadata["resize"],
            self.spec.data.on_error,
            progress=False,
        )

    @property
    def ensemble(self) -> Path:
        """`best/ensemble.keras` (it may not exist)."""
        return RunFolder(self.folder).ensemble

    @property
    def hp_columns(self) -> list[str]:
        """Searched hyperparameters (KerasTuner's own hp/tuner/* bookkeeping left out)."""
        return hp_columns(self.trials.columns)


def find_run_folder(target: str | Path) -> Path:
    """A run folder from a run folder path, an experiment YAML or a task name."""
    path = Path(target)
    if path.is_dir():
        return path.resolve()
    try:
        experiment = experiment_file(target)
        if not Path(experiment).is_file():
            raise ArtganError(f"{experiment}: file not found")
    except ArtganError:
        raise ArtganError(
            f"{target}: not a run folder, an experiment YAML or a task "
            f"({', '.join(experiment_names())})"
        ) from None
    return load_experiment(experiment).output_dir


def open_run(target: str | Path) -> Run:
    """Read a run folder; no folder, no table or no finished trial is an `ArtganError`."""
    folder = find_run_folder(target)
    hint = (
        "finish the search that writes there first"
        if Path(target).is_dir()
        else f"run `python -m artgan search {target}` first"
    )
    if not folder.is_dir():
        raise ArtganError(f"{folder}: no run folder; {hint}")
    layout = RunFolder(folder)
    if not layout.trials_json.is_file() and not layout.trials_csv.is_file():
        raise ArtganError(
            f"{folder}: no trials.csv or trials.json (no trial has ended yet); {hint}"
        )
    if not layout.spec.is_file():
        raise ArtganError(f"{folder}: no spec.yaml; is this a folder written by `artgan search`?")
    spec_text = layout.spec.read_text(encoding="utf-8")
    trials, histories = read_trials(folder)
    spec = run_spec(layout.spec, spec_text)
    run = Run(folder, spec, spec_text, sort_trials(trials, spec), histories, layout.models())
    if run.finished.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in Counter(run.trials["status"]).items())
        raise ArtganError(f"{folder}: no finished trial to report on ({statuses or 'no trials'})")
    return run


def read_trials(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(table, histories): trials.json when present (it has the curves), else trials.csv."""
    layout = RunFolder(folder)
    try:  # trials.json of older versions was rewritten in place; trials.csv atomically
        rows = [TrialRow.from_json(row) for row in json.loads(layout.trials_json.read_text())]
    except (OSError, ValueError, TypeError, AttributeError):
        rows = None
    if rows is not None:
        histories = {row.trial_id: row.history for row in rows}
        table = pd.DataFrame([row.flat() for row in rows])
    else:
        table = pd.read_csv(layout.trials_csv, dtype={"trial_id": str})
        histories = {}
    if table.empty:
        table = pd.DataFrame(columns=["trial_id", "status", "score"])
    table["trial_id"] = table["trial_id"].astype(str)
    return table, histories


def run_spec(path: Path, text: str) -> ExperimentSpec:
    """The run's resolved spec (search space inlined) as an `ExperimentSpec` again."""
    raw = parse_yaml(text, path)
    inlined = dict(raw.get("search_space") or {})
    space_file = inlined.pop("file", "")
    spec = validate(ExperimentSpec, {**raw, "search_space": space_file}, path)
    space = validate(SearchSpace, inlined, path)
    return spec.model_copy(update={"source": str(path), "space": space})


def sort_trials(trials: pd.DataFrame, spec: ExperimentSpec) -> pd.DataFrame:
    """Finished trials best first, then the others in trial order."""
    trials = trials.copy()
    trials["score"] = pd.to_numeric(trials["score"], errors="coerce")
    finished = trials["status"].isin(FINISHED)
    ascending = spec.tuner.resolved_direction == "min"
    best = trials[finished].sort_values("score", ascending=ascending, kind="stable")
    return pd.concat([best, trials[~finished]], ignore_index=True)
