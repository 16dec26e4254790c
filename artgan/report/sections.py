"""One self-contained HTML report per search: what won, why, where it errs, what it sees.

`build_report(target)` reads a run folder written by a search (`artgan.tuning`; `spec.yaml`,
`trials.json`/`trials.csv`, `best/model_N.keras`), re-evaluates the best models on the
search's own validation split and writes, under `reports/<run>/`:

    report.html                 everything below, figures and thumbnails embedded (data URIs)
    leaderboard.csv             every trial plus the two reference rows
    metrics.json                every number shown in the report
    predictions_model_N.csv     per-image predictions of the N-th best model
    per_class_model_N.csv       precision / recall / F1 / support per class
    features_model_1_LAYER.npz  validation-image features (see `artgan.model.features`)
    suspect_labels.csv          paintings whose label the model and their neighbours doubt
    model_N.md                  the model card of the N-th best model
    *.png, *.svg                the figures

Each section is built by one `*_section` function that returns plain data for the
template (`templates/report.html.j2`, autoescaped: class names, paths and spec values are
text, never markup). A section that cannot be computed says what is missing and why.
The figures are drawn in `artgan.report.figures` (and `insight_figures`), values are
formatted for the page by `artgan.formatting`, and files are written (and embedded) by
`artgan.report.output`. The trade-off, calibration, examples (Grad-CAM) and suspect-label
sections are in `artgan.report.insights`; the comparison of runs in `artgan.report.compare`.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from artgan import __version__
from artgan.data.labels import load_labels, read_class_file
from artgan.evaluation.metrics import (
    correlation,
    most_confused,
    per_class_scores,
)
from artgan.formatting import (
    BLANK,
    cell,
    count,
    decimal,
    duration,
    hp_text,
    is_number,
    missing,
    natural_key,
    numeric_values,
    percent,
    value_cell,
)
from artgan.model.saved import read_metadata
from artgan.paths import checkout
from artgan.report.figures import (
    confusion_figure,
    curves_figure,
    hp_figure,
    importance_figure,
)
from artgan.report.insight_figures import parallel_figure
from artgan.report.run import UNFINISHED
from artgan.runfolder import FINISHED

if TYPE_CHECKING:
    pass

MIN_TRIALS_FOR_IMPORTANCE = 3


# ----------------------------------------------------------------------------- models


PACKAGES = (
    "tensorflow",
    "keras",
    "keras-tuner",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "jinja2",
    "pillow",
    "opencv-python-headless",
)


def wall_time_cell(seconds, cache_seconds):
    """A trial's wall time, saying how much of it built the caches that later trials read."""
    if missing(seconds) or missing(cache_seconds):
        return value_cell(duration, seconds)
    return cell(
        f"{duration(seconds)} (caches {duration(cache_seconds)})",
        seconds,
        title="includes decoding and embedding the paintings into the caches later trials read",
    )


def leaderboard_section(run, baselines, writer):
    """Every trial (rank, scores, cost, hyperparameters, failure reason) + reference rows."""
    hp_columns = run.hp_columns
    headers = [
        "rank",
        "trial",
        "status",
        f"score ({run.objective})",
        "val accuracy",
        "val top-5",
        "val loss",
        "train accuracy",
        "best epoch",
        "epochs",
        "wall time",
        "params",
        *[c.removeprefix("hp/") for c in hp_columns],
        "note",
    ]
    rows, records = [], []
    for position, trial in enumerate(run.trials.to_dict("records"), start=1):
        finished = trial["status"] in FINISHED
        rank = position if finished else None
        note = trial_reason(trial, "" if finished else "did not finish")
        get = trial.get
        cells = [
            cell(str(rank) if rank else BLANK, rank),
            cell(trial["trial_id"]),
            cell(trial["status"], title=note or None),
            cell(decimal(get("score"), 4), get("score")),
            value_cell(percent, get("val_accuracy")),
            value_cell(percent, get("val_top5_accuracy")),
            value_cell(decimal, get("val_loss")),
            value_cell(percent, get("accuracy")),
            value_cell(hp_text, get("best_epoch")) if finished else cell(BLANK),
            value_cell(hp_text, get("epochs")),
            wall_time_cell(get("wall_seconds"), get("cache_seconds")),
            value_cell(count, get("params")),
            *[cell(hp_text(get(c)), get(c) if is_number(get(c)) else None) for c in hp_columns],
            cell(note),
        ]
        rows.append({"cells": cells, "kind": "finished" if finished else "failed"})
        records.append({"rank": rank, **trial})
    ensemble = read_metadata(run.ensemble) if run.ensemble.is_file() else None
    if ensemble:  # `best/ensemble.keras`: the best models' probabilities averaged
        members = ", ".join(ensemble.get("members", []))
        note = f"{run.ensemble.name}: the class probabilities of trials {members} averaged"
        cells = [
            cell("ens"),
            cell("ensemble"),
            cell("ENSEMBLE"),
            cell(decimal(ensemble.get("score"), 4), ensemble.get("score")),
            value_cell(percent, ensemble.get("val_accuracy")),
            *[cell(BLANK)] * (len(headers) - 6),
            cell(note),
        ]
        rows.append({"cells": cells, "kind": "ensemble"})
        records.append(
            {
                "status": "ENSEMBLE",
                "trial_id": "ensemble",
                "score": ensemble.get("score"),
                "val_accuracy": ensemble.get("val_accuracy"),
                "message": note,
            }
        )
    for reference in baselines["rows"]:
        cells = [
            cell("ref"),
            cell(reference["name"]),
            cell("REFERENCE"),
            cell(BLANK),
            value_cell(percent, reference["accuracy"]),
            value_cell(percent, reference["top5_accuracy"]),
            *[cell(BLANK)] * (len(headers) - 7),
            cell(reference["detail"]),
        ]
        rows.append({"cells": cells, "kind": "reference"})
        records.append(
            {
                "status": "REFERENCE",
                "trial_id": reference["name"],
                "val_accuracy": reference["accuracy"],
                "val_top5_accuracy": reference["top5_accuracy"],
                "message": reference["detail"],
            }
        )
    writer.csv(pd.DataFrame(records), "leaderboard.csv")
    if all(missing(r.get("val_top5_accuracy")) for r in records):  # 5 classes or fewer
        top5 = headers.index("val top-5")
        headers = headers[:top5] + headers[top5 + 1 :]
        for row in rows:
            del row["cells"][top5]
    return {
        "headers": headers,
        "rows": rows,
        "baselines": baselines["rows"],
        "baseline_size": baselines["size"],
        "train_images": baselines["train_images"],
    }


def trial_reason(trial, fallback):
    """The trial's own message, else what its status means, else `fallback`."""
    message = trial.get("message")
    if isinstance(message, str) and message:
        return message
    return UNFINISHED.get(trial["status"], fallback)


# ----------------------------------------------------------------------------- 2. what mattered


def what_mattered_section(run, writer):
    """Objective against each varying hyperparameter, and a random-forest importance."""
    finished = run.finished
    varying = [c for c in run.hp_columns if finished[c].astype(str).nunique() > 1]
    result = {
        "trials": len(finished),
        "importance": [],
        "figures": [],
        "note": None,
        "parallel": None,
    }
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE:
        result["note"] = (
            f"Only {len(finished)} finished trial(s): relating hyperparameters to "
            f"{run.objective} needs at least {MIN_TRIALS_FOR_IMPORTANCE}."
        )
        return result
    if not varying:
        result["note"] = "Every finished trial used the same hyperparameters."
        return result
    importance = hp_importance(finished, varying, run.objective)
    correlations = hp_correlations(finished, varying, run.objective)
    result["importance"] = [
        {"name": n.removeprefix("hp/"), "value": float(v), **correlations[n]}
        for n, v in importance.items()
    ]
    result["parallel"] = writer.figure(
        parallel_figure(finished, list(importance.index), run.objective, run.spec.space),
        "parallel_coordinates",
        f"parallel coordinates: hyperparameters to {run.objective}",
    )
    result["figures"] = [
        writer.figure(
            importance_figure(importance),
            "importance",
            "random-forest importance of each hyperparameter",
        ),
        writer.figure(
            hp_figure(finished, list(importance.index), run.objective, run.spec.space),
            "hyperparameters",
            f"{run.objective} against each hyperparameter",
        ),
    ]
    return result


# ----------------------------------------------------------------------------- learning curves


def hp_importance(finished, columns, objective):
    """Impurity importance (summed over one-hot columns) of a random forest fitted to the
    objective; with a handful of trials this is a hint, not a measurement."""
    from sklearn.ensemble import RandomForestRegressor

    encoded, owners = [], []
    for column in columns:
        values = finished[column]
        numeric = numeric_values(values)
        if numeric is not None:  # a conditional parameter's "absent" becomes below-minimum
            encoded.append(numeric.fillna(numeric.min() - 1).to_numpy(float)[:, None])
            owners.append(column)
        else:
            dummies = pd.get_dummies(values.astype(str)).to_numpy(float)
            encoded.append(dummies)
            owners += [column] * dummies.shape[1]
    forest = RandomForestRegressor(n_estimators=300, random_state=0)
    forest.fit(np.hstack(encoded), pd.to_numeric(finished[objective]).to_numpy(float))
    importance = pd.Series(forest.feature_importances_, index=owners).groupby(level=0).sum()
    return importance.sort_values(ascending=False)


def hp_correlations(finished, columns, objective):
    """Pearson correlation of each hyperparameter with the objective, as W&B shows beside
    the importance: numbers as they are (absent conditional values left out), a choice by
    the indicator of its value correlating most strongly (`of` names that value)."""
    score = pd.to_numeric(finished[objective]).to_numpy(float)
    result = {}
    for column in columns:
        values = finished[column]
        numeric = numeric_values(values)
        if numeric is not None:
            result[column] = {
                "correlation": correlation(numeric.to_numpy(float), score),
                "of": None,
            }
            continue
        text = values.map(lambda v: "n/a" if missing(v) else hp_text(v))
        best = {"correlation": None, "of": None}
        for value in sorted(text.unique(), key=natural_key):
            r = correlation((text == value).to_numpy(float), score)
            if r is not None and (
                best["correlation"] is None or abs(r) > abs(best["correlation"]) + 1e-12
            ):
                best = {"correlation": r, "of": value}
        result[column] = best
    return result


def curves_section(run, top, writer):
    """Train/val loss and accuracy per epoch for the best `top` finished trials."""
    trials = [t for t in run.finished["trial_id"].head(top) if run.histories.get(t)]
    if not trials:
        return {
            "figure": None,
            "note": "No per-epoch history was recorded for the finished "
            "trials (trials.json has no `history`).",
        }
    figure = curves_figure(run.histories, trials)
    shown = ", ".join(f"trial {t}" for t in trials)
    return {
        "figure": writer.figure(figure, "learning_curves", f"learning curves of {shown}"),
        "note": None,
        "trials": len(trials),
    }


# ----------------------------------------------------------------------------- 3. confusion


def confusion_section(evaluated, run, writer):
    """Confusion matrices, per-class metrics and most-confused pairs of one model."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    names = evaluated.metadata["class_names"]
    truth = evaluated.split.labels
    predicted = evaluated.probabilities.argmax(axis=1)
    shown = np.union1d(truth, predicted)
    label_names = [names[i] for i in shown]
    matrix = confusion_matrix(truth, predicted, labels=shown)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)

    present = np.unique(truth)
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            truth, predicted, labels=present, average=average, zero_division=0
        )
        averages[average] = {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(len(truth)),
        }
    per_class = pd.DataFrame(per_class_scores(truth, predicted, names, shown))
    suffix = f"model_{evaluated.rank}"
    writer.csv(per_class, f"per_class_{suffix}.csv")
    writer.csv(evaluated.predictions, f"predictions_{suffix}.csv")
    trial = run.trials[run.trials["trial_id"] == evaluated.trial_id]
    search_score = float(trial["val_accuracy"].iloc[0]) if len(trial) else None
    figure = confusion_figure(matrix, normalised, label_names)
    return {
        "rank": evaluated.rank,
        "file": evaluated.path.name,
        "trial_id": evaluated.trial_id,
        "images": int(len(truth)),
        "search_val_accuracy": search_score,
        **evaluated.scores,
        "labels": shown.tolist(),
        "label_names": label_names,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class.to_dict("records"),
        "averages": averages,
        "most_confused": most_confused(matrix, shown, names),
        "predictions": f"predictions_{suffix}.csv",
        "figure": writer.figure(
            figure, f"confusion_{suffix}", f"confusion matrices of model {evaluated.rank}"
        ),
    }


# ----------------------------------------------------------------------------- 6. provenance


def provenance_section(run, data, seconds=None):
    """Resolved spec, label files with row counts, package versions, date."""
    files = []
    for key, table in (("train", data.train), ("val", data.val)):
        path = run.spec.path(key)
        whole = load_labels(path, data.class_names, on_error="skip", check_files=False)
        files.append(
            {
                "role": key,
                "path": str(path),
                "rows": len(whole) + len(whole.skipped),
                "used": len(table),
                "skipped": len(table.skipped),
            }
        )
    classes = run.spec.path("classes")
    files.append(
        {
            "role": "classes",
            "path": str(classes),
            "rows": len(read_class_file(classes)),
            "used": len(data.classes),
            "skipped": 0,
        }
    )
    versions = {"python": platform.python_version(), "artgan": __version__}
    for name in PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "spec": run.spec_text,
        "files": files,
        "images": str(run.spec.path("images")),
        "versions": versions,
        "commit": git_commit(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "run": str(run.folder),
        "seconds": seconds,
    }


def git_commit():
    if checkout() is None:  # installed from a wheel: no commit to name
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=checkout(),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
