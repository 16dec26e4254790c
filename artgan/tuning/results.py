"""What a search leaves for people: the trials table (`trials.csv`/`trials.json`, one
`TrialRow` per trial), the leaderboard, skipped rows and the best models with metadata."""

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from artgan.data.labels import skipped_report
from artgan.data.splits import load_split_images
from artgan.errors import ArtganError
from artgan.evaluation.card import card_facts, inference_ms, model_card
from artgan.evaluation.predict import predict_split
from artgan.files import csv_text, read_json, write_text_atomic
from artgan.model.backbones import SCRATCH, get_backbone
from artgan.model.crnn import (
    backbone_name,
    default_feature_layer,
    feature_layers,
    input_size,
    with_class_ids,
)
from artgan.model.ensemble import ensemble_model
from artgan.model.saved import save_model
from artgan.runfolder import (
    FINISHED,
    METRICS,
    RunFolder,
    TrialRow,
    hp_columns,
    model_rank,
)
from artgan.tuning._kt_compat import all_trials

log = logging.getLogger(__name__)


def check_produced(table, output):
    """Refuse (ArtganError) a search that produced nothing: no trial finished."""
    if table.get("status", pd.Series(dtype=str)).isin(FINISHED).any():
        return
    reasons = [m for m in table.get("message", []) if isinstance(m, str) and m]
    example = f", e.g. {reasons[0]}" if reasons else ""
    raise ArtganError(
        f"no trial finished ({len(table)} failed{example}), so no model was saved; every trial's "
        f"reason is in {RunFolder(output).trials_csv}"
    )


def count_finished(tuner):
    return sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


def trial_rows(tuner):
    """One `TrialRow` per trial: outcome, metrics at the best epoch, cost, hyperparameters."""
    folder = RunFolder(Path(tuner.project_dir).parent)
    rows = []
    for trial in all_trials(tuner):
        info = read_json(folder.trial_info(trial.trial_id))
        message = (getattr(trial, "message", None) or "").strip().splitlines()
        message = message[-1] if message else ""
        pruned = info.get("pruned_at_epoch") if trial.status == "COMPLETED" else None
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status="PRUNED" if pruned else trial.status,
                score=trial.score,
                best_epoch=None if trial.best_step is None else int(trial.best_step) + 1,
                metrics={name: metric_at(trial, name, trial.best_step) for name in METRICS},
                epochs=info.get("epochs"),
                wall_seconds=info.get("wall_seconds"),
                cache_seconds=info.get("cache_seconds"),
                params=info.get("params"),
                memory_mb=info.get("memory_mb"),
                inference_ms=info.get("inference_ms"),
                memory_before_mb=info.get("memory_before_mb"),
                pruned_at_epoch=pruned,
                failure=failure_kind(trial.status, message),
                worker=info.get("worker"),
                attempts=info.get("attempts"),
                message=message,
                hyperparameters=dict(trial.hyperparameters.values),
                history=info.get("history", {}),
            )
        )
    return rows


def failure_kind(status, message):
    """What kind of failure ended a trial (None if it did not fail): a configuration no
    network can be built from (never retried), a worker that was lost or timed out (retried
    up to `max_restarts` first), or any other error."""
    if status not in ("FAILED", "INVALID"):
        return None
    text = (message or "").lower()
    if "impossible configuration" in text or "oversized model" in text:
        return "impossible configuration"
    if "trial time-out" in text:
        return "timed out"
    if "was killed by" in text or "exited with status" in text:
        return "worker lost"
    if "unreadable" in text:
        return "lost record"
    return "error"


def resident_memory_mb():
    """This process's resident memory (MB), recorded before and after each trial: it must
    stay flat trial after trial (KerasTuner clears the Keras session before each build)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):  # not Linux
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


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
    folder = RunFolder(output)
    write_text_atomic(
        folder.trials_json, json.dumps([r.to_json() for r in rows], indent=1, default=str)
    )
    table = pd.DataFrame([r.flat() for r in rows])
    if not table.empty:
        ascending = tuner.oracle.objective.direction == "min"
        table = table.sort_values("score", ascending=ascending, na_position="last")
    write_text_atomic(folder.trials_csv, csv_text(table))
    return table


#: Prefix of a best model or card written beside the one it replaces (`save_best_models`).
STAGED = "saving."
#: What an ensemble's metadata and card give as its trial id and rank.
ENSEMBLE_RANK = "ensemble"


def save_best_models(tuner, spec, data, output):
    """Save the best finished trials as `best/model_N.keras` with their preprocessing and
    model cards (`model_N.md`). The new set is written beside the old one (`saving.model_N.*`)
    and then renamed over it, so a kill at any moment leaves every `model_N` whole in best/:
    the old set while the new one is written (seconds), then the new one."""
    finished = count_finished(tuner)
    count = min(spec.training.best_models, finished)
    folder = RunFolder(output)
    for leftover in [
        *folder.best.glob(f"{STAGED}model_[0-9]*"),
        *folder.best.glob(f"{STAGED}{folder.ensemble.stem}.*"),
    ]:  # a killed save's
        leftover.unlink()
    if count:
        trials = tuner.oracle.get_best_trials(count)
        with warnings.catch_warnings():  # checkpoints hold optimizer state inference never needs
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            models = tuner.get_best_models(count)
        for rank, (trial, model) in enumerate(zip(trials, models), start=1):
            model = tuner.hypermodel.deployable(trial.hyperparameters, model)
            metadata = model_metadata(tuner, trial, spec, data, rank, model)
            save_model(model, staged(folder.model(rank)), metadata)
            write_card(model, metadata, spec, data, folder, staged(folder.card(rank)))
        if spec.training.ensemble and count > 1:
            save_ensemble(tuner, trials, models, spec, data, folder)
    paths = swap_in(folder, count)
    if paths:
        log.info(f"saved {len(paths)} best model(s) and their model cards in {folder.best}")
    return paths


def save_ensemble(tuner, trials, models, spec, data, folder):
    """Stage `best/ensemble.keras` (and its card): the mean of the class probabilities of
    the best trials that read the best one's input size, when there are two or more."""
    values = [trial.hyperparameters for trial in trials]
    size = input_size(values[0])
    members = [
        (trial, hp, model)
        for trial, hp, model in zip(trials, values, models)
        if input_size(hp) == size
    ]
    if len(members) < 2:
        log.info(f"no ensemble: only the best trial reads {size} px images")
        return None
    model = with_class_ids(
        ensemble_model([(hp, model) for _, hp, model in members]),
        data.classes,
        len(data.class_names),
    )
    metadata = model_metadata(tuner, trials[0], spec, data, ENSEMBLE_RANK, model)
    metadata.update(
        trial_id=ENSEMBLE_RANK,
        members=[trial.trial_id for trial, _, _ in members],
        hyperparameters={},
        score=None,
        val_accuracy=None,
        default_feature_layer=None,
    )
    facts = write_card(model, metadata, spec, data, folder, staged(folder.ensemble_card))
    if facts is not None:
        metadata["val_accuracy"] = facts["scores"]["accuracy"]
        if spec.tuner.objective == "val_accuracy":
            metadata["score"] = metadata["val_accuracy"]
    return save_model(model, staged(folder.ensemble), metadata)


def staged(path):
    return path.with_name(STAGED + path.name)


def swap_in(folder, count):
    """Rename the staged best models and cards over the old ones (each rename is atomic), then
    remove the old ranks beyond `count` (ours only: other files in best/ stay)."""
    paths = []
    ensemble = staged(folder.ensemble).is_file()
    for path in (folder.ensemble_card, folder.ensemble):  # an old one averaged other trials
        if ensemble and staged(path).is_file():
            staged(path).replace(path)
        else:
            path.unlink(missing_ok=True)
    for rank in range(1, count + 1):
        card = folder.card(rank)
        if staged(card).is_file():
            staged(card).replace(card)
        else:  # no validation image: no card for the new model
            card.unlink(missing_ok=True)
        staged(folder.model(rank)).replace(folder.model(rank))
        paths.append(folder.model(rank))
    for stale in folder.models():
        if model_rank(stale) > count:
            stale.unlink()
            folder.card(model_rank(stale)).unlink(missing_ok=True)
    return paths


def model_metadata(tuner, trial, spec, data, rank, model):
    """What a saved best model carries besides its weights (`artgan.json`)."""
    values = trial.hyperparameters
    backbone = backbone_name(values)
    return {
        "task": spec.task,
        "class_names": list(data.class_names),
        "classes": [int(i) for i in data.classes],
        "input_size": int(input_size(values)),
        "backbone": backbone,
        "backbone_weights": None if backbone == SCRATCH else get_backbone(backbone).origin,
        "resize": spec.data.resize,
        "feature_layers": feature_layers(model),
        "default_feature_layer": default_feature_layer(model),
        "trial_id": trial.trial_id,
        "rank": rank,
        "objective": spec.tuner.objective,
        "score": trial.score,
        "hyperparameters": trial.hyperparameters.values,
        "labels": {
            "train": str(spec.path("train")),
            "val": str(spec.path("val")),
            "classes": str(spec.path("classes")),
            "images": str(spec.path("images")),
        },
        "experiment": spec.source,
    }


def write_card(model, metadata, spec, data, folder, path):
    """Re-run a saved model on the validation split, time it, write its model card to `path`
    and record the inference time (ms per image) in the trial's `artgan_trial.json`, from
    which the trials table takes it. Returns the card's `card_facts` (None: no validation
    image)."""
    split = load_split_images(
        data.val, metadata["input_size"], spec.data.resize, spec.data.on_error, progress=False
    )
    milliseconds = inference_ms(model, split.pixels)
    info_path = folder.trial_info(metadata["trial_id"])
    info = read_json(info_path) if info_path.is_file() else {}  # an ensemble has no trial
    if info:
        info["inference_ms"] = milliseconds
        write_text_atomic(info_path, json.dumps(info, indent=1, default=str))
    probabilities = predict_split(model, split, metadata=metadata) if len(split) else None
    if probabilities is None:
        log.info(f"no validation image for the model card of {folder.model(metadata['rank'])}")
        return None
    facts = card_facts(
        split.labels, probabilities, metadata["class_names"], data.train.labels(), milliseconds
    )
    trial = {
        "epochs": info.get("epochs"),
        "wall_seconds": info.get("wall_seconds"),
        "params": info.get("params"),
    }
    write_text_atomic(path, model_card(metadata, facts, spec.budget.model_dump(), trial))
    return facts


def report_skipped(data, output):
    skipped = data.skipped()
    if skipped:
        report = skipped_report(skipped)
        path = RunFolder(output).skipped
        write_text_atomic(path, report + "\n")
        log.info(f"skipped {len(skipped)} row(s); see {path}")


def leaderboard(table, top=10):
    """A compact text leaderboard of the best trials."""
    if table.empty:
        return "no trials"
    columns = [
        "trial_id",
        "status",
        "score",
        "val_accuracy",
        "val_top5_accuracy",
        "epochs",
        "wall_seconds",
        "cache_seconds",
        "params",
    ]
    if "failure" in table and table["failure"].notna().any():
        columns.append("failure")
    columns += hp_columns(table.columns)
    view = table[[c for c in columns if c in table.columns]].head(top).copy()
    view = view.dropna(axis=1, how="all")  # e.g. top-5 accuracy on 4 classes, unused params
    view.columns = [c.removeprefix("hp/") for c in view.columns]
    view.insert(0, "rank", range(1, len(view) + 1))
    return view.to_string(index=False, float_format=lambda v: f"{v:.4g}")
