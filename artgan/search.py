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
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pandas as pd
import yaml

from artgan.backbones import SCRATCH, get_backbone
from artgan.dataset import EmbeddingGenerator, ImageLabelGenerator, load_split_images
from artgan.embeddings import embed_split
from artgan.errors import ArtganError
from artgan.files import (
    check_removable, clear_folder, clear_write_errors, folder_lock, read_json, write_text_atomic,
)
from artgan.labels import load_labels, skipped_report
from artgan.model import (
    DEFAULT_FEATURE_LAYER,
    FEATURE_LAYERS,
    PARAMETERS,
    backbone_name,
    build_model,
    deployable_model,
    input_size,
    uses_cache,
    with_class_ids,
)
from artgan.saved import save_model
from artgan.spec import differences

PROJECT = "tuner"
log = logging.getLogger(__name__)


def _save_json_atomically(path, obj):
    """KerasTuner writes trial.json, oracle.json and its tuner state in place, so a full disk
    left them truncated and every resume failed; through atomic_path the old file survives
    and the error is a one-line "disk full"."""
    text = json.dumps(obj)
    write_text_atomic(path, text)
    return text


kt.src.utils.save_json = _save_json_atomically  # KerasTuner-private: its one JSON writer
TRIAL_INFO = "artgan_trial.json"
FINGERPRINT = "fingerprint"  # what makes a folder an artgan run folder
COMPARABLE = "comparable.json"  # what the fingerprint hashes, to say what differs
METRICS = ("val_accuracy", "val_top5_accuracy", "val_loss", "accuracy", "loss")


@dataclass
class TaskData:
    """A task's label tables, and their cached pixels per input size (decoded once)."""

    spec: object
    train: object
    val: object

    def __post_init__(self):
        self._splits = {}
        self._embeddings = {}

    @classmethod
    def from_spec(cls, spec):
        classes = spec.path("classes")
        images = spec.path("images")
        on_error = spec.data.on_error
        train = load_labels(spec.path("train"), classes, images, on_error=on_error)
        val = load_labels(spec.path("val"), classes, images, on_error=on_error)
        budget = spec.budget
        if budget.max_train_images:
            train = train.sample(budget.max_train_images, seed=spec.seed)
        if budget.max_val_images:
            val = val.sample(budget.max_val_images, seed=spec.seed)
        return cls(spec, train, val)

    @property
    def class_names(self):
        return self.train.class_names

    @property
    def classes(self):
        """The class ids the task's labels really use, sorted: a model's outputs, in order."""
        return np.union1d(self.train.labels(), self.val.labels())

    def embeddings(self, backbone, flip):
        """(train, val) cached activations of `backbone`'s bottom; `flip` adds mirrored
        training images. Computed once per process and cached on disk for all others."""
        key = (backbone.name, bool(flip))
        if key not in self._embeddings:
            train, val = self.splits(backbone.input_size)
            self._embeddings[key] = (embed_split(backbone, train, flip), embed_split(backbone, val))
        return self._embeddings[key]

    def splits(self, size):
        """(train, val) `SplitImages` at `size`, decoding only on the first request."""
        if size not in self._splits:
            self._splits[size] = tuple(
                load_split_images(table, size, self.spec.data.resize, self.spec.data.on_error)
                for table in (self.train, self.val)
            )
        return self._splits[size]

    def skipped(self):
        rows = list(self.train.skipped) + list(self.val.skipped)
        for train, val in self._splits.values():
            rows += train.skipped + val.skipped
        return rows


class SpaceValues:
    """The `hp` a model builder sees in a search: a name the search space declares takes
    the trial's value; any other takes the builder's default and is not searched (like
    KerasTuner's `tune_new_entries=False`, matched by name whatever conditional scope the
    builder opens, so builder and space never hold two parameters of one name)."""

    def __init__(self, hp, names):
        self.hp, self.names = hp, frozenset(names)

    def _value(self, name, default):
        if name in self.names and self.hp.is_active(name):
            return self.hp.get(name)
        return default

    def Choice(self, name, values, ordered=None, default=None, **_):
        return self._value(name, values[0] if default is None else default)

    def Int(self, name, min_value, max_value, step=None, sampling="linear", default=None, **_):
        return self._value(name, min_value if default is None else default)

    Float = Int

    def Boolean(self, name, default=False, **_):
        return self._value(name, default)

    def Fixed(self, name, value, **_):
        return self._value(name, value)

    @contextmanager
    def conditional_scope(self, parent_name, parent_values):
        yield


class CRNNHyperModel(kt.HyperModel):
    """Registers the spec's search space, then builds `build_model` and fits it on cached
    pixels, or on cached backbone activations when the trial's backbone is frozen."""

    def __init__(self, space, data, augment=True, seed=42, batch_size=32):
        super().__init__(name="crnn")
        self.space = space
        self.data = data
        self.augment = augment
        self.seed = seed
        self.batch_size = batch_size  # used when the space has no `batch_size` parameter
        self.last_fit = {}

    @classmethod
    def from_spec(cls, spec, data):
        training = spec.training
        return cls(spec.space, data, training.augment, spec.seed, training.batch_size)

    def values(self, hp):
        """What the builder reads: the search space's parameters only."""
        return SpaceValues(hp, self.space.parameters)

    def build(self, hp):
        self.space.register(hp)
        return build_model(self.values(hp), num_classes=len(self.data.classes))

    def fit(self, hp, model, *args, **kwargs):
        values = self.values(hp)
        batch_size = values.Int("batch_size", 1, 1024, default=self.batch_size)
        train, val = self.generators(values, batch_size, [t.name for t in model.inputs])
        kwargs.setdefault("verbose", 1 if sys.stdout.isatty() else 2)
        started = time.perf_counter()
        history = model.fit(train, validation_data=val, **kwargs)
        self.last_fit = {
            "params": int(model.count_params()),
            "epochs": len(history.epoch),
            "fit_seconds": time.perf_counter() - started,
            "train_images": len(train.labels),
            "val_images": len(val.labels),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        }
        return history

    def generators(self, values, batch_size, inputs):
        """(train, val) batches for a trial: cached activations for a frozen pretrained
        bottom (`inputs` names the taps the model reads), else cached pixels."""
        common = dict(batch_size=batch_size, classes=self.data.classes)
        training = dict(common, shuffle=True, augment=self.augment, seed=self.seed)
        if uses_cache(values):
            backbone = get_backbone(backbone_name(values))
            train, val = self.data.embeddings(backbone, flip=self.augment)
            splits = self.data.splits(backbone.input_size)
            return (EmbeddingGenerator(train, splits[0].labels, inputs, **training),
                    EmbeddingGenerator(val, splits[1].labels, inputs, **common))
        train, val = self.data.splits(input_size(values))
        return ImageLabelGenerator(train, **training), ImageLabelGenerator(val, **common)

    def deployable(self, hp, model):
        """The trained trial `model` as the image -> ArtGAN class model that is saved."""
        values = self.values(hp)
        model = deployable_model(values, model, len(self.data.classes))
        return with_class_ids(model, self.data.classes, len(self.data.class_names))


class TrialRecorder:
    """Tuner mixin: after each trial, save its size, time and curves, and refresh the table.

    `artgan_trial.json` is written when a trial starts too (worker id, pid, attempt), so a
    trial whose process died shows who held it, and a rerun counts as a further attempt.
    """

    def run_trial(self, trial, *args, **kwargs):
        started = time.perf_counter()
        self.hypermodel.last_fit = {}
        path = Path(self.get_trial_dir(trial.trial_id)) / TRIAL_INFO
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
        info = dict(self.hypermodel.last_fit, wall_seconds=time.perf_counter() - started,
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
    from artgan.distributed import adopt_oracle, distribution_strategy

    project = spec.output_dir / PROJECT
    roles = kt.src.distribute.utils  # a worker reads the chief's folder: only the chief repairs
    worker = roles.has_chief_oracle() and not roles.is_chief_oracle()
    repaired, rebuild = ([], False) if overwrite or worker else repair_tuner_files(project)
    if not overwrite:
        adopt_oracle(project)
    tuner_class = type(f"Artgan{base.__name__}", (TrialRecorder, base), {})
    objective = kt.Objective(spec.tuner.objective, spec.tuner.resolved_direction)
    common = dict(
        hypermodel=hypermodel,
        objective=objective,
        executions_per_trial=spec.budget.executions_per_trial,
        seed=spec.seed,
        directory=str(spec.output_dir),
        project_name=PROJECT,
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


def _unreadable(path):
    try:
        return not isinstance(json.loads(Path(path).read_text()), dict)
    except ValueError:
        return True


def repair_tuner_files(project):
    """Make a project KerasTuner can reload after a crash or a full disk truncated its files
    (older versions wrote them in place). An unreadable trial.json becomes a FAILED trial
    under the same id (ids count trials, so dropping one would reuse a folder); an unreadable
    oracle.json is set aside with the tuner state files, so KerasTuner starts a fresh oracle
    and `restore_trials` refills it. Returns (repaired trial ids, whether to restore)."""
    repaired = []
    for path in sorted(Path(project).glob("trial_*/trial.json")):
        if not _unreadable(path):
            continue
        trial_id = path.parent.name.removeprefix("trial_")
        message = f"{path} was unreadable (truncated by a full disk?); the trial's result is lost"
        write_text_atomic(path, json.dumps({
            "trial_id": trial_id, "hyperparameters": {"space": [], "values": {}},
            "metrics": {"metrics": {}}, "score": None, "best_step": None,
            "status": kt.engine.trial.TrialStatus.FAILED, "message": message}))
        log.warning("%s; marked failed", message)
        repaired.append(trial_id)
    oracle = Path(project) / "oracle.json"
    if not oracle.is_file() or not _unreadable(oracle):
        return repaired, False
    for state in [oracle, *(p for p in Path(project).glob("*.json") if p != oracle)]:
        state.replace(state.with_name(state.name + ".unreadable"))
    log.warning("%s was unreadable (truncated by a full disk?); set aside as %s.unreadable, "
                "the oracle is rebuilt from the trial files", oracle, oracle.name)
    return repaired, True


def restore_trials(oracle, project):
    """Refill a fresh oracle with the trials on disk (after `repair_tuner_files` set aside an
    unreadable oracle.json). KerasTuner-private: its trial orders and tried-values record."""
    for path in sorted(Path(project).glob("trial_*/trial.json")):
        trial = kt.engine.trial.Trial.load(str(path))
        oracle.trials[trial.trial_id] = trial
        oracle.start_order.append(trial.trial_id)
        if trial.status != kt.engine.trial.TrialStatus.RUNNING:
            oracle.end_order.append(trial.trial_id)
        if trial.hyperparameters.values:
            oracle._record_values(trial)  # so the same values are not tried again
    oracle.save()


def requeue_orphaned_trials(oracle, skip=()):
    """Queue for retry every reloaded trial still marked RUNNING.

    KerasTuner's reload retries the trials its oracle.json lists as ongoing, but a process
    killed after a new trial's trial.json was written and before oracle.json was saved
    leaves a RUNNING trial that nothing would ever finish. (A distributed worker's oracle
    lives in the chief: it has no queue here.) Trials in `skip` (repaired, their values
    lost) are never retried.
    """
    queue = getattr(oracle, "_retry_queue", None)
    if queue is None:
        return
    queue[:] = [trial_id for trial_id in queue if trial_id not in skip]
    for trial_id, trial in oracle.trials.items():
        if trial.status == kt.engine.trial.TrialStatus.RUNNING and trial_id not in queue:
            queue.append(trial_id)


def callbacks(spec):
    """TensorBoard (KerasTuner adds a per-trial dir and the HParams summary) + early stop."""
    result = [keras.callbacks.TensorBoard(str(spec.output_dir / "tensorboard"))]
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


@contextmanager
def run_folder(spec, fresh):
    """The prepared run folder, locked while the block runs: a second search on it is
    refused. `fresh` refuses a folder artgan did not make before writing anything there."""
    if fresh:
        check_removable(spec.output_dir, FINGERPRINT)
    with folder_lock(spec.output_dir):
        yield prepare_output(spec, fresh)


def prepare_output(spec, fresh):
    """Create (or, with `fresh`, empty) the run folder; refuse to resume a different search.
    Only `fresh` deletes, and only in a folder artgan made (see `clear_folder`)."""
    output = spec.output_dir
    fingerprint_file = output / FINGERPRINT
    if fresh:
        clear_folder(output, FINGERPRINT)
    with clear_write_errors(output):
        output.mkdir(parents=True, exist_ok=True)
    comparable = spec.comparable()
    fingerprint = spec.fingerprint()
    if fingerprint_file.exists() and fingerprint_file.read_text().strip() != fingerprint:
        details = differences(comparable, read_json(output / COMPARABLE))
        raise ArtganError(
            f"{output} holds a search whose trials were scored differently "
            f"({'; '.join(details) or 'other data, search space, tuner, seed or budget'}). "
            "Rerun with --fresh to start over there, or set output: to a new folder."
        )
    write_text_atomic(fingerprint_file, fingerprint + "\n")
    write_text_atomic(output / COMPARABLE, json.dumps(comparable, indent=1, default=str))
    write_text_atomic(output / "spec.yaml", yaml.safe_dump(spec.resolved(), sort_keys=False))
    return output


def run_search(spec, fresh=False):
    """Run (or resume) the search in `spec`; returns the trials table."""
    spec.space.check(PARAMETERS)  # a bad space, labels or paths stop us before anything is written
    data = TaskData.from_spec(spec)
    with run_folder(spec, fresh) as output:
        keras.utils.set_random_seed(spec.seed)
        print(
            f"{spec.task}: {len(data.train)} train / {len(data.val)} val images, "
            f"{len(data.class_names)} classes -> {output}"
        )
        hypermodel = CRNNHyperModel.from_spec(spec, data)
        tuner = make_tuner(spec, hypermodel)
        finished = count_finished(tuner)
        if finished:
            print(f"resuming: {finished} finished trial(s) kept in {output / PROJECT}")
        gave_up = None
        try:
            tuner.search(epochs=spec.budget.epochs, callbacks=callbacks(spec))
        except RuntimeError as error:  # KerasTuner stops after a few failed trials in a row
            if not str(error).startswith("Number of consecutive failures"):
                raise
            gave_up = str(error).strip().splitlines()
        table = write_trials_table(tuner, output)
        report_skipped(data, output)
        save_best_models(tuner, spec, data, output)
    if gave_up:
        raise ArtganError(
            f"KerasTuner stopped the search: {gave_up[0].rstrip('.').lower()} (last error: "
            f"{gave_up[-1]}); every trial's reason is in {output / 'trials.csv'}"
        )
    return table


def check_produced(table, output):
    """Refuse (ArtganError) a search that produced nothing: no trial finished."""
    if (table.get("status", pd.Series(dtype=str)) == "COMPLETED").any():
        return
    reasons = [m for m in table.get("message", []) if isinstance(m, str) and m]
    example = f", e.g. {reasons[0]}" if reasons else ""
    raise ArtganError(
        f"no trial finished ({len(table)} failed{example}), so no model was saved; every trial's "
        f"reason is in {output / 'trials.csv'}"
    )


def count_finished(tuner):
    return sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


def trial_rows(tuner):
    """One dict per trial: id, status, score, metrics at the best epoch, cost, hyperparameters."""
    rows = []
    for trial in all_trials(tuner):
        info = read_json(Path(tuner.get_trial_dir(trial.trial_id)) / TRIAL_INFO)
        row = {
            "trial_id": trial.trial_id,
            "status": trial.status,
            "score": trial.score,
            "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1,
        }
        for name in METRICS:
            row[name] = metric_at(trial, name, trial.best_step)
        row.update(
            epochs=info.get("epochs"),
            wall_seconds=info.get("wall_seconds"),
            params=info.get("params"),
            memory_mb=info.get("memory_mb"),
            worker=info.get("worker"),
            attempts=info.get("attempts"),
            message=(getattr(trial, "message", None) or "").strip().splitlines()[-1:] or None,
        )
        row["message"] = row["message"][0] if row["message"] else ""
        row.update({f"hp/{k}": v for k, v in trial.hyperparameters.values.items()})
        row["history"] = info.get("history", {})
        rows.append(row)
    return rows


def resident_memory_mb():
    """This process's resident memory after a trial: it must stay flat trial after trial
    (KerasTuner clears the Keras session before each build)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):  # not Linux
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def all_trials(tuner):
    """Every trial of the search. A distributed worker's oracle lives in the chief process,
    so a worker reads the trial files the chief saves instead."""
    if not tuner._is_worker():
        return list(tuner.oracle.trials.values())
    trials = []
    for path in sorted(Path(tuner.project_dir).glob("trial_*/trial.json")):
        try:
            trials.append(kt.engine.trial.Trial.load(str(path)))
        except (OSError, ValueError, KeyError):  # being rewritten right now: next refresh
            continue
    return trials


def metric_at(trial, name, step):
    """The metric's value at `step` (the objective's best epoch), else its best value."""
    if not trial.metrics.exists(name):
        return None
    history = trial.metrics.get_history(name)
    for observation in history:
        if step is not None and observation.step == step:
            return float(np.mean(observation.value))
    return trial.metrics.get_best_value(name)


def write_trials_table(tuner, output):
    """trials.csv (flat, for spreadsheets) and trials.json (with per-epoch curves)."""
    rows = trial_rows(tuner)
    output = Path(output)
    write_text_atomic(output / "trials.json", json.dumps(rows, indent=1, default=str))
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in rows])
    if not table.empty:
        ascending = tuner.oracle.objective.direction == "min"
        table = table.sort_values("score", ascending=ascending, na_position="last")
    write_text_atomic(output / "trials.csv", table.to_csv(index=False))
    return table


def save_best_models(tuner, spec, data, output):
    """Save the best finished trials as `best/model_N.keras` with their preprocessing."""
    finished = count_finished(tuner)
    count = min(spec.training.best_models, finished)
    best_dir = output / "best"
    for stale in best_dir.glob("model_[0-9]*.keras"):  # ours only: other files there stay
        stale.unlink()
    if not count:
        return []
    trials = tuner.oracle.get_best_trials(count)
    with warnings.catch_warnings():  # checkpoints hold optimizer state inference never needs
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        models = tuner.get_best_models(count)
    paths = []
    for rank, (trial, model) in enumerate(zip(trials, models), start=1):
        model = tuner.hypermodel.deployable(trial.hyperparameters, model)
        values = tuner.hypermodel.values(trial.hyperparameters)
        hp = trial.hyperparameters.values
        backbone = backbone_name(values)
        metadata = {
            "task": spec.task,
            "class_names": list(data.class_names),
            "input_size": int(input_size(values)),
            "backbone": backbone,
            "backbone_weights": None if backbone == SCRATCH else get_backbone(backbone).origin,
            "resize": spec.data.resize,
            "feature_layers": list(FEATURE_LAYERS),
            "default_feature_layer": DEFAULT_FEATURE_LAYER,
            "trial_id": trial.trial_id,
            "rank": rank,
            "objective": spec.tuner.objective,
            "score": trial.score,
            "hyperparameters": hp,
            "labels": {"train": str(spec.path("train")), "val": str(spec.path("val")),
                       "classes": str(spec.path("classes")), "images": str(spec.path("images"))},
            "experiment": spec.source,
        }
        paths.append(save_model(model, best_dir / f"model_{rank}.keras", metadata))
    print(f"saved {len(paths)} best model(s) in {best_dir}")
    return paths


def report_skipped(data, output):
    skipped = data.skipped()
    if skipped:
        report = skipped_report(skipped)
        write_text_atomic(output / "skipped.txt", report + "\n")
        print(f"skipped {len(skipped)} row(s); see {output / 'skipped.txt'}")


def leaderboard(table, top=10):
    """A compact text leaderboard of the best trials."""
    if table.empty:
        return "no trials"
    hp_columns = [c for c in table.columns if c.startswith("hp/") and not c.startswith("hp/tuner/")]
    columns = ["trial_id", "status", "score", "val_accuracy", "val_top5_accuracy", "epochs",
               "wall_seconds", "params"] + hp_columns
    view = table[[c for c in columns if c in table.columns]].head(top).copy()
    view.columns = [c.removeprefix("hp/") for c in view.columns]
    view.insert(0, "rank", range(1, len(view) + 1))
    return view.to_string(index=False, float_format=lambda v: f"{v:.4g}")
