"""Pruning: stop a trial that trails the finished ones (`pruning:` in the spec).

The decision (a rule from `artgan.tuning.pruners`) is a pure function of curves;
`finished_curves` reads the finished trials' curves from the run folder (so a distributed
worker sees every worker's trials), and `TrialProgress` (a Keras callback, one per trial)
applies the rule after each epoch and records the trial's progress in its
`artgan_trial.json`.

KerasTuner has no PRUNED status: a pruned trial ends COMPLETED with the score of the epochs
it ran (so it still informs the Bayesian oracle); `pruned_at_epoch` in its artgan_trial.json
makes the trials table show it as PRUNED.
"""

import json
import logging
from pathlib import Path

import keras

from artgan.config.spec import PruningSpec
from artgan.files import read_json, write_text_atomic
from artgan.runfolder import RunFolder
from artgan.tuning.pruners import NONE, should_stop

log = logging.getLogger(__name__)


def finished_curves(output, objective, skip=()):
    """The objective's per-epoch curve of every finished trial in the run folder (from each
    trial's artgan_trial.json, written when the trial ends), except the trial ids in `skip`."""
    curves = []
    for path in RunFolder(output).trial_infos():
        trial_id = path.parent.name.removeprefix("trial_")
        info = read_json(path)
        if trial_id in skip or info.get("status") in ("RUNNING", "ERROR"):
            continue
        curve = (info.get("history") or {}).get(objective)
        if curve:
            curves.append([float(v) for v in curve])
    return curves


class TrialProgress(keras.callbacks.Callback):
    """One trial's epochs: appended to its artgan_trial.json after each (so a resumed trial
    continues its curves), and, with a pruning rule, the trial stopped when it trails.

    `marker` is what artgan_trial.json holds while the trial runs; `curves` the curves of
    epochs finished by an earlier, interrupted attempt (the backup resumes after them)."""

    def __init__(
        self,
        output: str | Path,
        trial_id: str,
        marker: dict,
        objective: str,
        direction: str,
        pruning: PruningSpec | None = None,
        curves: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.output, self.trial_id = str(output), str(trial_id)
        self.marker, self.objective, self.direction = dict(marker), objective, direction
        self.pruning = pruning  # a PruningSpec, or None
        self.curves = {k: list(v) for k, v in (curves or {}).items()}

    @property
    def path(self):
        return RunFolder(self.output).trial_info(self.trial_id)

    def on_epoch_begin(self, epoch, logs=None):
        # A resumed fit starts after the backup's epoch; curves kept beyond it are redone.
        for values in self.curves.values():
            del values[epoch:]

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            values = self.curves.setdefault(name, [])
            del values[epoch:]
            values.append(float(value))
        marker = dict(self.marker, progress=self.curves)
        earlier = read_json(self.path).get("pruned_at_epoch")  # by an earlier execution
        if earlier:
            marker["pruned_at_epoch"] = earlier
        if self.should_stop():
            self.model.stop_training = True
            marker["pruned_at_epoch"] = epoch + 1
            log.info(
                f"trial {self.trial_id}: pruned after epoch {epoch + 1} (its best "
                f"{self.objective} trails the finished trials: `pruning.type` "
                f"{self.pruning.type})"
            )
        write_text_atomic(self.path, json.dumps(marker))

    def should_stop(self) -> bool:
        rule = self.pruning
        curve = self.curves.get(self.objective) or []
        if rule is None or rule.type == NONE or len(curve) < rule.min_epochs:
            return False  # no rule, or still warming up: the run folder need not be read
        finished = finished_curves(self.output, self.objective, skip={self.trial_id})
        return should_stop(rule, curve, finished, self.direction)
