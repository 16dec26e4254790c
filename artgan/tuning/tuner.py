"""The KerasTuner runner: spec -> tuner -> trials on cached images -> table and best models.

KerasTuner does the searching, checkpointing, resuming and TensorBoard/HParams logging;
this module only connects it to artgan's data and writes results a person can read:

    <output>/spec.yaml         the resolved spec (search space inlined)
    <output>/tuner/            KerasTuner's project (oracle + one folder per trial)
    <output>/tensorboard/      one log dir per trial, with an HParams summary
    <output>/trials.csv/.json  every trial: hyperparameters, metrics, epochs, time, size
    <output>/best/model_N.keras  best models with class names and preprocessing inside
    <output>/search.json       this run's clock and why it stopped

and spends the budget well: a trial that trails the finished ones is pruned (`pruning`), no
trial starts after `budget.max_minutes`, and an interrupted trial resumes after its last
finished epoch.
"""

import gc
import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras
import keras_tuner as kt
import pandas as pd

from artgan.config.spec import ExperimentSpec
from artgan.data.splits import TaskData
from artgan.errors import ArtganError
from artgan.files import as_disk_full, read_json, write_text_atomic
from artgan.model._tf_compat import releasing_graphs, slow_cpu_kernels
from artgan.progress import spending, time_spent
from artgan.runfolder import RunFolder
from artgan.tuning._kt_compat import (
    adopt_oracle,
    checkpoint_file,
    gave_up_after_failures,
    install_atomic_state_writer,
    is_worker_process,
    repair_tuner_files,
    requeue_orphaned_trials,
    restore_trials,
)
from artgan.tuning.budget import (
    SearchDeadline,
    cache_seconds,
    past_deadline,
    record_stop,
    record_time,
    start_clock,
    stop_reason,
)
from artgan.tuning.check import check_search
from artgan.tuning.hypermodel import CRNNHyperModel
from artgan.tuning.output import run_folder
from artgan.tuning.parallel.strategy import distribution_strategy
from artgan.tuning.pruning import TrialProgress
from artgan.tuning.results import (
    count_finished,
    report_skipped,
    resident_memory_mb,
    save_best_models,
    write_trials_table,
)
from artgan.tuning.tuners import get_tuner

log = logging.getLogger(__name__)


class SearchStopped(kt.errors.FatalError):
    """Raised from a trial to stop the whole search without ending the trial: KerasTuner
    lets a `FatalError` through, so the trial stays RUNNING (not FAILED, not counted) and
    the rerun runs it again. `error` is the reason (a full disk: `DiskFull`)."""

    def __init__(self, error, trial_id):
        super().__init__(str(error))
        self.error, self.trial_id = error, trial_id

    def one_line(self):
        """The reason as the user's error (its own class, e.g. `DiskFull`), naming the trial."""
        return type(self.error)(
            f"{self.error} (trial {self.trial_id} was stopped, not counted: the rerun runs it)"
        )


class TrialRecorder:
    """Tuner mixin: record each trial (size, time, curves), prune it, resume it, refresh the
    table, and start no trial once the time budget is spent.

    `artgan_trial.json` is written when a trial starts too (worker id, pid, attempt), so a
    trial whose process died shows who held it, and a rerun counts as a further attempt; it
    then holds the curves so far, and `backup/` beside it the last finished epoch, so an
    interrupted trial resumes there (one execution per trial; else it starts over).
    """

    pruning = None  # the spec's PruningSpec (set by `make_tuner`)

    def run_trial(self, trial, *args, **kwargs):
        started, spent_before = time.perf_counter(), time_spent()
        folder = RunFolder(Path(self.project_dir).parent)
        path = folder.trial_info(trial.trial_id)
        earlier = read_json(path)
        attempts = int(earlier.get("attempts") or 0) + 1
        backup = folder.trial_backup(trial.trial_id)
        resumable = self.executions_per_trial == 1
        resume = attempts > 1 and resumable and any(backup.glob("training_metadata.json*"))
        if attempts > 1 and not resume:  # half a TensorBoard run and no backup: start over
            shutil.rmtree(backup, ignore_errors=True)
            for callback in kwargs.get("callbacks") or []:
                if isinstance(callback, keras.callbacks.TensorBoard):
                    shutil.rmtree(Path(callback.log_dir) / str(trial.trial_id), ignore_errors=True)
        curves = (earlier.get("progress") or {}) if resume else {}
        held = {
            "worker": self.tuner_id,
            "attempts": attempts,
            "pid": os.getpid(),
            "memory_before_mb": resident_memory_mb(),
        }
        marker = dict(held, status="RUNNING")
        write_text_atomic(path, json.dumps(dict(marker, progress=curves)))
        objective = self.oracle.objective
        # Progress is written before the backup, so it never lags the epoch a resume starts at.
        extra = [
            TrialProgress(
                folder.root,
                trial.trial_id,
                marker,
                objective.name,
                objective.direction,
                self.pruning,
                curves,
            )
        ]
        if resumable:
            extra.append(keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True))
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *extra]
        checkpoint = Path(checkpoint_file(self, trial.trial_id))
        kept = checkpoint.with_name("resumed_from." + checkpoint.name)
        if resume:
            log.info(
                f"trial {trial.trial_id}: resuming after its last finished epoch "
                f"(attempt {attempts})"
            )
            if checkpoint.is_file():  # the best epoch before the interruption
                shutil.copyfile(checkpoint, kept)
        try:
            with releasing_graphs():  # or each fitted model's graphs stay in memory
                result = super().run_trial(trial, *args, **kwargs)
        except Exception as error:  # KerasTuner records the trial as failed; say who ran it
            full = as_disk_full(error)
            if full is not None:  # no fault of the trial's: stop the search, spend no trial
                raise SearchStopped(full, trial.trial_id) from None
            write_text_atomic(
                path, json.dumps(dict(held, status="ERROR", error=type(error).__name__))
            )
            raise
        if resume:
            continue_histories(result, curves, objective, kept, checkpoint)
        kept.unlink(missing_ok=True)
        progress = read_json(path)
        info = dict(
            fit_statistics(result),
            wall_seconds=time.perf_counter() - started,
            cache_seconds=cache_seconds(spent_before, time_spent()),
            memory_mb=resident_memory_mb(),
            **held,
        )
        if progress.get("pruned_at_epoch"):
            info["pruned_at_epoch"] = progress["pruned_at_epoch"]
        log_leaderboard_score(
            kwargs["callbacks"], trial.trial_id, leaderboard_score(info, objective)
        )
        write_text_atomic(path, json.dumps(info))
        shutil.rmtree(backup, ignore_errors=True)
        return result

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        write_trials_table(self, Path(self.project_dir).parent)
        gc.collect()  # free the trial's model now that its graphs are released

    def pre_create_trial(self):
        # A worker's clock may differ from the chief's: the chief keeps the time budget.
        if not is_worker_process() and past_deadline(Path(self.project_dir).parent):
            raise SearchDeadline()
        # Asking twice without a trial in between means the oracle answered IDLE (Hyperband
        # waits for other workers' trials); KerasTuner would ask again at once, in a tight loop.
        super().pre_create_trial()
        if getattr(self, "_asked_in_vain", False):
            time.sleep(1)
        self._asked_in_vain = True

    def on_trial_begin(self, trial):
        self._asked_in_vain = False
        super().on_trial_begin(trial)


def continue_histories(result, curves, objective, kept, checkpoint):
    """A resumed trial's History holds only the epochs after the backup: put the earlier
    ones (`curves`, from artgan_trial.json) in front, so the score, best epoch and table
    cover the whole trial; and when its best epoch came before the interruption, put that
    epoch's checkpoint (`kept`) back (KerasTuner's checkpointing restarted at the resume)."""
    for history in result if isinstance(result, list) else [result]:
        if not isinstance(history, keras.callbacks.History):
            continue
        # No epoch left (killed after the last one's backup): the curves are the whole trial.
        start = history.epoch[0] if history.epoch else len(curves.get(objective.name, []))
        for name in set(history.history) | (set(curves) if not history.epoch else set()):
            history.history[name] = curves.get(name, [])[:start] + list(
                history.history.get(name, [])
            )
        history.epoch = list(range(start)) + list(history.epoch)
        values = history.history.get(objective.name) or []
        if not values or not kept.is_file() or start == 0:
            continue
        pick = max if objective.direction == "max" else min
        best = values.index(pick(values))
        if best < start:
            partial = checkpoint.with_name("saving." + checkpoint.name)
            shutil.copyfile(kept, partial)
            partial.replace(checkpoint)


def leaderboard_score(stats, objective):
    """The trial's score as KerasTuner ranks it and the leaderboard shows it: the objective
    at its best epoch, averaged over executions (None without curves)."""
    pick = max if objective.direction == "max" else min
    runs = [e["history"] for e in stats.get("executions", [])] or [stats.get("history", {})]
    values = [pick(run[objective.name]) for run in runs if run.get(objective.name)]
    return sum(values) / len(values) if values else None


#: The TensorBoard scalar (HParams tab column) holding `leaderboard_score`: that tab shows
#: each curve's last epoch, the leaderboard the best one.
SCORE_TAG = "leaderboard_score"


def log_leaderboard_score(callbacks, trial_id, score):
    """Write `score` into each HParams session (execution) of the trial's TensorBoard logs,
    as run `leaderboard`, tag `SCORE_TAG`."""
    import tensorflow as tf

    boards = [c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
    if score is None or not boards:
        return
    for session in sorted(Path(boards[0].log_dir, str(trial_id)).glob("execution*")):
        with tf.summary.create_file_writer(str(session / "leaderboard")).as_default():
            tf.summary.scalar(
                SCORE_TAG,
                score,
                step=0,
                description=(
                    "the trial's score as the leaderboard shows it: the objective at its best epoch"
                ),
            )


def fit_statistics(result):
    """A trial's size, epochs and curves from what `run_trial` returned: one History per
    execution (`executions_per_trial`). Curves and epochs are the executions' means, as
    KerasTuner averages their objective; `executions` keeps each execution's own."""
    histories = [
        h
        for h in (result if isinstance(result, list) else [result])
        if isinstance(h, keras.callbacks.History)
    ]
    if not histories:
        return {}
    executions = [
        {
            "epochs": len(h.epoch),
            **getattr(h, "artgan", {}),
            "history": {k: [float(v) for v in vals] for k, vals in h.history.items()},
        }
        for h in histories
    ]
    first = executions[0]
    curves = {}
    for name in first["history"]:
        runs = [e["history"].get(name, []) for e in executions]
        length = min(len(r) for r in runs)  # early stopping may end executions apart
        curves[name] = [sum(r[i] for r in runs) / len(runs) for i in range(length)]
    stats = {k: v for k, v in first.items() if k not in ("history", "fit_seconds")}
    epochs = [e["epochs"] for e in executions]
    stats.update(
        epochs=epochs[0] if len(set(epochs)) == 1 else sum(epochs) / len(epochs),
        fit_seconds=sum(e.get("fit_seconds", 0) for e in executions),
        history=curves,
    )
    if len(executions) > 1:
        stats["executions"] = executions
    return stats


def make_tuner(
    spec: ExperimentSpec,
    hypermodel: CRNNHyperModel,
    overwrite: bool = False,
    distribute: bool = True,
) -> kt.Tuner:
    """The tuner the spec names (`artgan.tuning.tuners`), with trial recording mixed in.

    `distribute=False` skips the spec's tf.distribute strategy (for processes that only
    serve the oracle or read results, never train)."""
    kind = get_tuner(spec.tuner.type)
    base = kind.tuner_class()
    install_atomic_state_writer()
    folder = RunFolder(spec.output_dir)
    project = folder.project
    # A worker reads the chief's folder: only the chief repairs it.
    skip_repair = overwrite or is_worker_process()
    repaired, rebuild = ([], False) if skip_repair else repair_tuner_files(project)
    if not overwrite:
        adopt_oracle(project)
    tuner_class = type(f"Artgan{base.__name__}", (TrialRecorder, base), {})
    objective = kt.Objective(spec.tuner.objective, spec.tuner.resolved_direction)
    space = kt.HyperParameters()  # the YAML space, declared up front; nothing else is tuned
    assert spec.space is not None  # load_experiment always resolves it
    spec.space.register(space)
    common = dict(
        hypermodel=hypermodel,
        hyperparameters=space,
        tune_new_entries=False,
        objective=objective,
        executions_per_trial=spec.budget.executions_per_trial,
        seed=spec.seed,
        directory=str(spec.output_dir),
        project_name=folder.project_name,
        overwrite=overwrite,
        max_retries_per_trial=spec.budget.max_retries,
        max_consecutive_failed_trials=3,
        distribution_strategy=distribution_strategy(spec) if distribute else None,
    )
    with hypermodel.declaring():
        tuner = tuner_class(**kind.arguments(spec), **common)
    tuner.pruning = spec.pruning
    if rebuild:
        restore_trials(tuner.oracle, project)
    requeue_orphaned_trials(tuner.oracle, skip=repaired)
    return tuner


def callbacks(spec):
    """TensorBoard (KerasTuner adds a per-trial dir and the HParams summary) + early stop."""
    result = [keras.callbacks.TensorBoard(str(RunFolder(spec.output_dir).tensorboard))]
    if spec.early_stopping.enabled:
        result.append(
            keras.callbacks.EarlyStopping(
                monitor=spec.tuner.objective,
                mode=spec.tuner.resolved_direction,
                patience=spec.early_stopping.patience,
                min_delta=spec.early_stopping.min_delta,
            )
        )
    return result


def run_search(spec: ExperimentSpec, fresh: bool = False) -> pd.DataFrame:
    """Run (or resume) the search in `spec`; returns the trials table."""
    check_search(spec)  # a bad search, labels or paths stop us before anything is written
    data = TaskData.from_spec(spec)
    with run_folder(spec, fresh) as output:
        keras.utils.set_random_seed(spec.seed)
        log.info(
            f"{spec.task}: {len(data.train)} train / {len(data.val)} val images, "
            f"{len(data.classes)} classes -> {output}"
        )
        if slow_cpu_kernels():
            log.warning(
                "TensorFlow's oneDNN kernels are off, so CPU training runs about 2.5x "
                "slower: set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported"
            )
        hypermodel = CRNNHyperModel.from_spec(spec, data)
        tuner = make_tuner(spec, hypermodel)
        finished = count_finished(tuner)
        if finished:
            log.info(f"resuming: {finished} finished trial(s) kept in {RunFolder(output).project}")
        gave_up = None
        start_clock(spec)
        started, spent_before = time.perf_counter(), time_spent()
        try:
            tuner.search(epochs=spec.budget.epochs, callbacks=callbacks(spec))
        except SearchDeadline:
            pass  # no new trial after the time budget: the table says so
        except SearchStopped as stop:
            error = stop.one_line()
            record_stop(output, str(error))  # on a full disk this may fail, saying so itself
            raise error from None
        except RuntimeError as error:  # KerasTuner stops after a few failed trials in a row
            gave_up = gave_up_after_failures(error)
            if gave_up is None:
                raise
        with spending("saving best models"):
            save_best_models(tuner, spec, data, output)  # first: it times them for the table
        table = write_trials_table(tuner, output)
        ended = len(tuner.oracle.trials)
        record_stop(
            output,
            f"KerasTuner gave up: {gave_up[0]}"
            if gave_up
            else stop_reason(output, ended, spec.budget.max_trials),
        )
        spent = {
            kind: seconds - spent_before.get(kind, 0.0) for kind, seconds in time_spent().items()
        }
        record_time(output, spent, time.perf_counter() - started)
        report_skipped(data, output)
    if gave_up:
        raise ArtganError(
            f"KerasTuner stopped the search: {gave_up[0].rstrip('.').lower()} (last error: "
            f"{gave_up[-1]}); every trial's reason is in {RunFolder(output).trials_csv}"
        )
    return table
