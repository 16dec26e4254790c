"""A run folder's layout and its trials table rows: one definition for the search that
writes them and every reader (report, similar, the launcher).

    <output>/spec.yaml               the resolved spec (search space inlined)
    <output>/fingerprint             what makes a folder an artgan run folder (a hash of ...)
    <output>/comparable.json         ... what counts for "the same search"
    <output>/trials.csv, trials.json every trial (`TrialRow`); the JSON adds per-epoch curves
    <output>/best/model_N.keras      the best models, class names and preprocessing inside
    <output>/best/model_N.md         each one's model card (data, metrics, input, limits)
    <output>/best/ensemble.keras     the best models' probabilities averaged, as one model
    <output>/tensorboard/            one log dir per trial, with an HParams summary
    <output>/tuner/                  KerasTuner's project (oracle + one folder per trial)
    <output>/tuner/trial_ID/artgan_trial.json   artgan's record of one trial (size, time,
                                     curves so far, the epoch it was pruned at...)
    <output>/tuner/trial_ID/backup/  the running trial's last finished epoch (to resume it)
    <output>/search.json             this run's clock (start, deadline) and why it stopped
    <output>/skipped.txt             label rows left out, with reasons
    <output>/logs/, workers.json     a distributed search's process logs and their states
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Metrics recorded at the objective's best epoch, in table order.
METRICS = ("val_accuracy", "val_top5_accuracy", "val_loss", "accuracy", "loss")
HP_PREFIX = "hp/"
#: KerasTuner's own bookkeeping among a trial's values (Hyperband's `tuner/epochs`, ...).
TUNER_VALUES = "tuner/"
#: Table statuses of trials that trained and have a score (PRUNED: stopped early by the
#: pruning rule; KerasTuner itself records it as COMPLETED).
FINISHED = ("COMPLETED", "PRUNED")


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path
    project_name = "tuner"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint"

    @property
    def comparable(self) -> Path:
        return self.root / "comparable.json"

    @property
    def trials_csv(self) -> Path:
        return self.root / "trials.csv"

    @property
    def trials_json(self) -> Path:
        return self.root / "trials.json"

    @property
    def search_state(self) -> Path:
        return self.root / "search.json"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def project(self) -> Path:
        return self.root / self.project_name

    @property
    def oracle(self) -> Path:
        return self.project / "oracle.json"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped.txt"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def workers_state(self) -> Path:
        return self.root / "workers.json"

    def model(self, rank: int) -> Path:
        return self.best / f"model_{rank}.keras"

    def card(self, rank: int) -> Path:
        """The model card (Markdown) beside `model_N.keras`."""
        return self.best / f"model_{rank}.md"

    @property
    def ensemble(self) -> Path:
        """The mean of the best models' class probabilities, as one model."""
        return self.best / "ensemble.keras"

    @property
    def ensemble_card(self) -> Path:
        return self.best / "ensemble.md"

    def models(self) -> list[Path]:
        """The saved best models, best first."""
        return sorted(self.best.glob("model_[0-9]*.keras"), key=model_rank)

    def trial_dir(self, trial_id: str) -> Path:
        return self.project / f"trial_{trial_id}"

    def trial_info(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / "artgan_trial.json"

    def trial_backup(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / "backup"

    def trial_infos(self) -> list[Path]:
        """Every trial's `artgan_trial.json`, in id order."""
        return sorted(self.project.glob("trial_*/artgan_trial.json"))

    def trial_files(self) -> list[Path]:
        """Every trial's KerasTuner record (`trial_ID/trial.json`), in id order."""
        return sorted(self.project.glob("trial_*/trial.json"))


def model_rank(path: str | Path) -> int:
    """N of `model_N.keras` (unparsable names last)."""
    try:
        return int(Path(path).stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 10**6


def searched(name: str) -> bool:
    """Whether a trial's value `name` is a searched hyperparameter (not tuner bookkeeping)."""
    return not name.startswith(TUNER_VALUES)


def hp_columns(columns: Iterable[str]) -> list[str]:
    """The searched hyperparameters' columns (`hp/NAME`) of a trials table, in its order."""
    return [c for c in columns if c.startswith(HP_PREFIX) and searched(c.removeprefix(HP_PREFIX))]


@dataclass
class TrialRow:
    """One trial of the trials table: its outcome, cost and hyperparameters.

    `to_json` gives the flat row of trials.json (hyperparameters as `hp/NAME`, the curves as
    `history`); `from_json` reads it back, from this version or an older one.
    """

    trial_id: str
    status: str
    score: float | None = None
    best_epoch: int | None = None
    metrics: dict = field(default_factory=dict)  # METRICS at the best epoch
    epochs: int | None = None
    wall_seconds: float | None = None
    cache_seconds: float | None = None  # of wall_seconds, building the decode/embedding caches
    params: int | None = None
    memory_mb: float | None = None  # resident memory after the trial
    memory_before_mb: float | None = None  # ... and before it
    pruned_at_epoch: int | None = None  # status PRUNED: the epoch the rule stopped it at
    failure: str | None = None  # status FAILED/INVALID: the kind (`failure_kind`)
    inference_ms: float | None = None  # per image, measured when the best models are saved
    worker: str | None = None
    attempts: int | None = None
    message: str = ""
    hyperparameters: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)  # metric -> per-epoch values
    extra: dict = field(default_factory=dict)  # columns this version does not know

    def to_json(self) -> dict[str, Any]:
        row = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("metrics", "hyperparameters", "history", "extra")
        }
        head = {k: row.pop(k) for k in ("trial_id", "status", "score", "best_epoch")}
        return {
            **head,
            **{m: self.metrics.get(m) for m in METRICS},
            **row,
            **self.extra,
            **{HP_PREFIX + k: v for k, v in self.hyperparameters.items()},
            "history": self.history,
        }

    def flat(self) -> dict[str, Any]:
        """The row of trials.csv: `to_json` without the curves."""
        row = self.to_json()
        row.pop("history")
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> TrialRow:
        row = dict(row)
        known = {
            f for f in cls.__dataclass_fields__ if f not in ("metrics", "hyperparameters", "extra")
        }
        values = {k: row.pop(k) for k in list(row) if k in known}
        values["trial_id"] = str(values.get("trial_id"))
        values["message"] = values.get("message") or ""
        values["history"] = values.get("history") or {}
        metrics = {m: row.pop(m) for m in METRICS if m in row}
        hps = {k.removeprefix(HP_PREFIX): row.pop(k) for k in list(row) if k.startswith(HP_PREFIX)}
        return cls(**values, metrics=metrics, hyperparameters=hps, extra=row)
