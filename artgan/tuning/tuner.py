"""The KerasTuner runner: spec -> tuner -> trials on cached images -> table and best models.

KerasTuner does the searching, checkpointing, resuming and TensorBoard/HParams logging;
this module only connects it to artgan's data and writes results a person can read:

    <output>/spec.yaml         the resolved spec (search space inlined)
    <output>/tuner/            KerasTuner's project (oracle + one folder per trial)
    <output>/tensorboard/      one log dir per trial, with an HParams summary
    <output>/trials.csv/.json  every trial: hyperparameters, metrics, epochs, time, size
    <output>/best/model_N.keras  best models with class names and preprocessing inside
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras
import keras_tuner as kt

from artgan.data.splits import TaskData
from artgan.errors import ArtganError
from artgan.files import read_json, write_text_atomic
from artgan.model.crnn import PARAMETERS
from artgan.runfolder import RunFolder
from artgan.tuning._kt_compat import (
    DeclaredSpace,
    adopt_oracle,
    install_atomic_state_writer,
    is_worker_process,
    repair_tuner_files,
    requeue_orphaned_trials,
    restore_trials,
)
from artgan.tuning.hypermodel import CRNNHyperModel
from artgan.tuning.output import run_folder
from artgan.tuning.parallel.strategy import distribution_strategy
from artgan.tuning.results import (
    count_finished,
    report_skipped,
    resident_memory_mb,
    save_best_models,
    write_trials_table,
)

log = logging.getLogger(__name__)


class TrialRecorder:
    """Tuner mixin: after each trial, save its size, time and curves, and refresh the table.

    `artgan_trial.json` is written when a trial starts too (worker id, pid, attempt), so a
    trial whose process died shows who held it, and a rerun counts as a further attempt.
    """

    def run_trial(self, trial, *args, **kwargs):
        started = time.perf_counter()
        path = RunFolder(Path(self.project_dir).parent).trial_info(trial.trial_id)
        attempts = int(read_json(path).get("attempts") or 0) + 1
        if attempts > 1:  # an interrupted attempt left half a TensorBoard run: start it over
            for callback in kwargs.get("callbacks") or []:
                if isinstance(callback, keras.callbacks.TensorBoard):
                    shutil.rmtree(Path(callback.log_dir) / str(trial.trial_id), ignore_errors=True)
        held = {"worker": self.tuner_id, "attempts": attempts, "pid": os.getpid()}
        write_text_atomic(path, json.dumps(dict(held, status="RUNNING")))
        try:
            result = super().run_trial(trial, *args, **kwargs)
        except Exception as error:  # KerasTuner records the trial as failed; say who ran it
            write_text_atomic(path, json.dumps(dict(held, status="ERROR", error=type(error).__name__)))
            raise
        info = dict(fit_statistics(result), wall_seconds=time.perf_counter() - started,
                    memory_mb=resident_memory_mb(), **held)
        write_text_atomic(path, json.dumps(info))
        return result

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        write_trials_table(self, Path(self.project_dir).parent)

    def pre_create_trial(self):
        # Asking twice without a trial in between means the oracle answered IDLE (Hyperband
        # waits for other workers' trials); KerasTuner would ask again at once, in a tight loop.
        super().pre_create_trial()
        if getattr(self, "_asked_in_vain", False):
            time.sleep(1)
        self._asked_in_vain = True

    def on_trial_begin(self, trial):
        self._asked_in_vain = False
        super().on_trial_begin(trial)


def fit_statistics(result):
    """A trial's size, epochs and curves from what `run_trial` returned: one History per
    execution (`executions_per_trial`). Curves and epochs are the executions' means, as
    KerasTuner averages their objective; `executions` keeps each execution's own."""
    histories = [h for h in (result if isinstance(result, list) else [result])
                 if isinstance(h, keras.callbacks.History)]
    if not histories:
        return {}
    executions = [{"epochs": len(h.epoch), **getattr(h, "artgan", {}),
                   "history": {k: [float(v) for v in vals] for k, vals in h.history.items()}}
                  for h in histories]
    first = executions[0]
    curves = {}
    for name in first["history"]:
        runs = [e["history"].get(name, []) for e in executions]
        length = min(len(r) for r in runs)  # early stopping may end executions apart
        curves[name] = [sum(r[i] for r in runs) / len(runs) for i in range(length)]
    stats = {k: v for k, v in first.items() if k not in ("history", "fit_seconds")}
    epochs = [e["epochs"] for e in executions]
    stats.update(epochs=epochs[0] if len(set(epochs)) == 1 else sum(epochs) / len(epochs),
                 fit_seconds=sum(e.get("fit_seconds", 0) for e in executions), history=curves)
    if len(executions) > 1:
        stats["executions"] = executions
    return stats


TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}


def make_tuner(spec, hypermodel, overwrite=False, distribute=True):
    """The KerasTuner tuner named in the spec, with trial recording mixed in.

    `distribute=False` skips the spec's tf.distribute strategy (for processes that only
    serve the oracle or read results, never train)."""
    base = TUNER_CLASSES[spec.tuner.type]
    install_atomic_state_writer()
    folder = RunFolder(spec.output_dir)
    project = folder.project
    # A worker reads the chief's folder: only the chief repairs it.
    skip_repair = overwrite or is_worker_process()
    repaired, rebuild = ([], False) if skip_repair else repair_tuner_files(project)
    if not overwrite:
        adopt_oracle(project)
    tuner_class = type(f"Artgan{base.__name__}", (TrialRecorder, DeclaredSpace, base), {})
    objective = kt.Objective(spec.tuner.objective, spec.tuner.resolved_direction)
    space = kt.HyperParameters()  # the YAML space, declared up front; nothing else is tuned
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
        max_consecutive_failed_trials=3,
        distribution_strategy=distribution_strategy(spec) if distribute else None,
    )
    if spec.tuner.type == "hyperband":
        tuner = tuner_class(
            max_epochs=spec.budget.epochs,
            factor=spec.tuner.hyperband_factor,
            hyperband_iterations=1,
            **common,
        )
    elif spec.tuner.type == "bayesian":
        tuner = tuner_class(max_trials=spec.budget.max_trials,
                            num_initial_points=spec.tuner.initial_points, **common)
    else:
        tuner = tuner_class(max_trials=spec.budget.max_trials, **common)
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


def run_search(spec, fresh=False):
    """Run (or resume) the search in `spec`; returns the trials table."""
    spec.space.check(PARAMETERS)  # a bad space, labels or paths stop us before anything is written
    data = TaskData.from_spec(spec)
    with run_folder(spec, fresh) as output:
        keras.utils.set_random_seed(spec.seed)
        log.info(
            f"{spec.task}: {len(data.train)} train / {len(data.val)} val images, "
            f"{len(data.class_names)} classes -> {output}"
        )
        hypermodel = CRNNHyperModel.from_spec(spec, data)
        tuner = make_tuner(spec, hypermodel)
        finished = count_finished(tuner)
        if finished:
            log.info(f"resuming: {finished} finished trial(s) kept in {RunFolder(output).project}")
        gave_up = None
        try:
            tuner.search(epochs=spec.budget.epochs, callbacks=callbacks(spec))
        except RuntimeError as error:  # KerasTuner stops after a few failed trials in a row
            if not str(error).startswith("Number of consecutive failures"):
                raise
            gave_up = str(error).strip().splitlines()
        save_best_models(tuner, spec, data, output)  # first: it times them for the table
        table = write_trials_table(tuner, output)
        report_skipped(data, output)
    if gave_up:
        raise ArtganError(
            f"KerasTuner stopped the search: {gave_up[0].rstrip('.').lower()} (last error: "
            f"{gave_up[-1]}); every trial's reason is in {RunFolder(output).trials_csv}"
        )
    return table
