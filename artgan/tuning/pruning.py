"""Pruning: stop a trial that trails the finished ones (`pruning:` in the spec).

The decision (`median_stop`) is a pure function of curves; `finished_curves` reads the
finished trials' curves from the run folder (so a distributed worker sees every worker's
trials), and `TrialProgress` (a Keras callback, one per trial) applies the rule after each
epoch and records the trial's progress in its `artgan_trial.json`.

KerasTuner has no PRUNED status: a pruned trial ends COMPLETED with the score of the epochs
it ran (so it still informs the Bayesian oracle); `pruned_at_epoch` in its artgan_trial.json
makes the trials table show it as PRUNED.
"""

import json
import logging
import statistics

import keras

from artgan.files import read_json, write_text_atomic
from artgan.runfolder import RunFolder

log = logging.getLogger(__name__)


def running_best(curve, direction="max"):
    """[best of the first 1, first 2, ... values] of a curve."""
    pick = max if direction == "max" else min
    best, result = None, []
    for value in curve:
        best = value if best is None else pick(best, value)
        result.append(best)
    return result


def median_stop(curve, finished, min_epochs=2, min_trials=3, direction="max"):
    """The median-stopping rule: True when the trial should stop now.

    `curve` is the trial's objective per epoch so far; `finished` the finished trials'
    curves. After `min_epochs` epochs, and once `min_trials` trials have finished, the trial
    stops when its best value so far is worse than the median of the finished trials' best
    values up to the same epoch (a finished trial that ran fewer epochs counts with its best
    over all it ran). Ties go on."""
    epoch = len(curve)
    finished = [c for c in finished if c]
    if epoch < min_epochs or len(finished) < min_trials:
        return False
    mine = running_best(curve, direction)[-1]
    theirs = [running_best(c, direction)[min(epoch, len(c)) - 1] for c in finished]
    median = statistics.median(theirs)
    return mine < median if direction == "max" else mine > median


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

    def __init__(self, output, trial_id, marker, objective, direction, pruning=None,
                 curves=None):
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
            log.info(f"trial {self.trial_id}: pruned after epoch {epoch + 1} (its best "
                     f"{self.objective} trails the median of the finished trials)")
        write_text_atomic(self.path, json.dumps(marker))

    def should_stop(self):
        rule = self.pruning
        curve = self.curves.get(self.objective)
        if rule is None or rule.type != "median" or len(curve or ()) < rule.min_epochs:
            return False  # no rule, or still warming up: the run folder need not be read
        finished = finished_curves(self.output, self.objective, skip={self.trial_id})
        return median_stop(curve, finished, rule.min_epochs, rule.min_trials, self.direction)
