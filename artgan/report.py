"""One self-contained HTML report per search: what won, why, where it errs, what it sees.

`build_report(target)` reads a run folder written by `artgan.search` (`spec.yaml`,
`trials.json`/`trials.csv`, `best/model_N.keras`), re-evaluates the best models on the
search's own validation split and writes, under `reports/<run>/`:

    report.html                 everything below, figures and thumbnails embedded (data URIs)
    leaderboard.csv             every trial plus the two reference rows
    metrics.json                every number shown in the report
    predictions_model_N.csv     per-image predictions of the N-th best model
    per_class_model_N.csv       precision / recall / F1 / support per class
    features_model_1_LAYER.npz  validation-image features (see `artgan.features`)
    *.png, *.svg                the figures

Each section is built by one `*_section` function that returns plain data for the
template (`templates/report.html.j2`, autoescaped: class names, paths and spec values are
text, never markup). A section that cannot be computed says what is missing and why.
The figures are drawn in `artgan.report_figures`, values are formatted for the page by
`artgan.report_format`, and files are written (and embedded) by `artgan.report_output`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata as package_metadata
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml
from matplotlib import rc_context

from artgan import __version__
from artgan.errors import ArtganError
from artgan.paths import REPO_ROOT
from artgan.report_figures import (MATPLOTLIB_STYLE, confusion_figure, curves_figure,
                                   hp_figure, importance_figure, tsne_figure)
from artgan.report_format import (BLANK, cell, count, decimal, duration, hp_text, is_number,
                                  numeric_values, percent, plain, value_cell)
from artgan.report_output import Thumbnails, Writer

TEMPLATES = Path(__file__).parent / "templates"
MIN_TRIALS_FOR_IMPORTANCE = 3
NEIGHBOURS = 5  # k of the k-NN accuracy and of the neighbour thumbnails
MAX_TSNE_POINTS = 2000
MAX_QUERIES = 8
EXAMPLES_PER_KIND = 3
SCORES = ("accuracy", "top5_accuracy", "macro_f1")
UNFINISHED = {"RUNNING": "still running", "IDLE": "not started",
              "INVALID": "invalid hyperparameters", "STOPPED": "stopped early by the tuner"}
EMBEDDED = {"figure", "figures", "queries", "thumbnail"}  # left out of metrics.json
PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "pandas", "scikit-learn",
            "matplotlib", "jinja2", "pillow", "opencv-python-headless")


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """A finished (or partly finished) search, as read back from its folder."""

    folder: Path
    spec: object  # artgan.spec.ExperimentSpec, rebuilt from spec.yaml
    spec_text: str
    trials: pd.DataFrame  # one row per trial, best first; hp/<name> columns
    histories: dict  # trial_id -> {metric: [per-epoch values]}
    models: list  # best/model_N.keras, best first

    @property
    def objective(self):
        return self.spec.tuner.objective

    @property
    def finished(self):
        return self.trials[self.trials["status"] == "COMPLETED"]

    @property
    def hp_columns(self):
        """Searched hyperparameters (KerasTuner's own hp/tuner/* bookkeeping left out)."""
        return [c for c in self.trials.columns
                if c.startswith("hp/") and not c.startswith("hp/tuner/")]


def find_run_folder(target):
    """A run folder from a run folder path, an experiment YAML or a task name."""
    from artgan.spec import TASKS, experiment_file, load_experiment

    path = Path(target)
    if path.is_dir():
        return path.resolve()
    experiment = experiment_file(target)
    if not Path(experiment).is_file():
        raise ArtganError(
            f"{target}: not a run folder, an experiment YAML or a task ({', '.join(TASKS)})"
        )
    return load_experiment(experiment).output_dir


def open_run(target):
    """Read a run folder; no folder, no table or no finished trial is an `ArtganError`."""
    folder = find_run_folder(target)
    hint = ("finish the search that writes there first" if Path(target).is_dir()
            else f"run `python -m artgan search {target}` first")
    if not folder.is_dir():
        raise ArtganError(f"{folder}: no run folder; {hint}")
    if not (folder / "trials.json").is_file() and not (folder / "trials.csv").is_file():
        raise ArtganError(f"{folder}: no trials.csv or trials.json (no trial has ended yet); "
                          f"{hint}")
    if not (folder / "spec.yaml").is_file():
        raise ArtganError(f"{folder}: no spec.yaml; is this a folder written by `artgan search`?")
    spec_text = (folder / "spec.yaml").read_text(encoding="utf-8")
    trials, histories = read_trials(folder)
    spec = run_spec(folder / "spec.yaml", spec_text)
    run = Run(folder, spec, spec_text, sort_trials(trials, spec), histories,
              sorted((folder / "best").glob("model_*.keras"), key=model_rank))
    if run.finished.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in Counter(run.trials["status"]).items())
        raise ArtganError(f"{folder}: no finished trial to report on ({statuses or 'no trials'})")
    return run


def read_trials(folder):
    """(table, histories): trials.json when present (it has the curves), else trials.csv."""
    try:  # trials.json is rewritten in place while a search runs; trials.csv atomically
        rows = json.loads((folder / "trials.json").read_text())
    except (OSError, ValueError):
        rows = None
    if rows is not None:
        histories = {str(r["trial_id"]): r.get("history") or {} for r in rows}
        table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in rows])
    else:
        table = pd.read_csv(folder / "trials.csv", dtype={"trial_id": str})
        histories = {}
    if table.empty:
        table = pd.DataFrame(columns=["trial_id", "status", "score"])
    table["trial_id"] = table["trial_id"].astype(str)
    return table, histories


def run_spec(path, text):
    """The run's resolved spec (search space inlined) as an `ExperimentSpec` again."""
    from artgan.spec import ExperimentSpec, SearchSpace, validate

    raw = yaml.safe_load(text)
    space = dict(raw.get("search_space") or {})
    space_file = space.pop("file", "")
    spec = validate(ExperimentSpec, {**raw, "search_space": space_file}, path)
    space = validate(SearchSpace, space, path)
    return spec.model_copy(update={"source": str(path), "space": space})


def sort_trials(trials, spec):
    """Finished trials best first, then the others in trial order."""
    trials = trials.copy()
    trials["score"] = pd.to_numeric(trials["score"], errors="coerce")
    finished = trials["status"] == "COMPLETED"
    ascending = spec.tuner.resolved_direction == "min"
    best = trials[finished].sort_values("score", ascending=ascending, kind="stable")
    return pd.concat([best, trials[~finished]], ignore_index=True)


def model_rank(path):
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 10**6


# ----------------------------------------------------------------------------- models


@dataclass
class Evaluated:
    """A saved best model re-run on the search's validation split."""

    rank: int
    path: Path
    metadata: dict
    split: object  # SplitImages at the model's input size
    probabilities: np.ndarray
    predictions: pd.DataFrame
    features: dict  # layer name -> (N, D) float32
    scores: dict = field(default_factory=dict)  # accuracy, top5_accuracy, macro_f1

    @property
    def trial_id(self):
        return str(self.metadata.get("trial_id"))


def evaluate_models(run, data, top, layer):
    """Predictions and features of the best `top` saved models, best first."""
    from artgan.dataset import load_split_images
    from artgan.evaluate import predictions_frame
    from artgan.features import predict_with_features
    from artgan.model import FEATURE_LAYERS
    from artgan.saved import load_model

    evaluated = []
    for rank, path in enumerate(run.models[:top], start=1):
        model, metadata = load_model(path)
        chosen = layer or metadata.get("default_feature_layer") or FEATURE_LAYERS[0]
        layers = list(dict.fromkeys([chosen, *metadata.get("feature_layers", FEATURE_LAYERS)]))
        split = load_split_images(data.val, metadata["input_size"], metadata["resize"],
                                  run.spec.data.on_error, progress=False)
        probabilities, features = predict_with_features(model, split, layers)
        names = metadata["class_names"]
        evaluated.append(Evaluated(rank, path, metadata, split, probabilities,
                                   predictions_frame(split, probabilities, names), features,
                                   named_scores(split.labels, probabilities, len(names))))
    return evaluated


def named_scores(labels, probabilities, num_classes):
    """`artgan.evaluate.score` as floats under the names metrics.json and the template use."""
    from artgan.evaluate import score

    return dict(zip(SCORES, map(float, score(labels, probabilities, num_classes))))


# ----------------------------------------------------------------------------- 1. leaderboard


def baselines_section(run, data, size):
    """Majority class and handcrafted features + logistic regression, on the same split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from artgan.baselines import handcrafted_features
    from artgan.dataset import load_split_images

    on_error, resize = run.spec.data.on_error, run.spec.data.resize
    train, val = (load_split_images(t, size, resize, on_error, progress=False)
                  for t in (data.train, data.val))
    num_classes = len(data.class_names)
    frequencies = np.bincount(train.labels, minlength=num_classes) / len(train)
    majority = np.tile(frequencies, (len(val), 1))
    rows = [{"name": "majority class",
             "detail": f"always predicts {data.class_names[int(frequencies.argmax())]}",
             **named_scores(val.labels, majority, num_classes)}]

    started = time.perf_counter()
    train_features = handcrafted_features(train.pixels)
    val_features = handcrafted_features(val.pixels)
    if len(np.unique(train.labels)) > 1:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        classifier.fit(train_features, train.labels)
        probabilities = np.zeros((len(val), num_classes))
        probabilities[:, classifier.classes_] = classifier.predict_proba(val_features)
        rows.append({"name": "colour+texture LR",
                     "detail": f"logistic regression on {train_features.shape[1]} "
                               f"training-free colour/texture features, {size} px",
                     "seconds": time.perf_counter() - started,
                     **named_scores(val.labels, probabilities, num_classes)})
    return {"rows": rows, "size": size, "train_images": len(train), "val_images": len(val),
            "val_features": val_features, "val_labels": val.labels}


def leaderboard_section(run, baselines, writer):
    """Every trial (rank, scores, cost, hyperparameters, failure reason) + reference rows."""
    hp_columns = run.hp_columns
    headers = ["rank", "trial", "status", f"score ({run.objective})", "val accuracy",
               "val top-5", "val loss", "train accuracy", "best epoch", "epochs", "wall time",
               "params", *[c.removeprefix("hp/") for c in hp_columns], "note"]
    rows, records = [], []
    for position, trial in enumerate(run.trials.to_dict("records"), start=1):
        finished = trial["status"] == "COMPLETED"
        rank = position if finished else None
        note = trial_reason(trial, "" if finished else "did not finish")
        get = trial.get
        cells = [cell(str(rank) if rank else BLANK, rank), cell(trial["trial_id"]),
                 cell(trial["status"], title=note or None),
                 cell(decimal(get("score"), 4), get("score")),
                 value_cell(percent, get("val_accuracy")),
                 value_cell(percent, get("val_top5_accuracy")),
                 value_cell(decimal, get("val_loss")), value_cell(percent, get("accuracy")),
                 value_cell(hp_text, get("best_epoch")) if finished else cell(BLANK),
                 value_cell(hp_text, get("epochs")), value_cell(duration, get("wall_seconds")),
                 value_cell(count, get("params")),
                 *[cell(hp_text(get(c)), get(c) if is_number(get(c)) else None)
                   for c in hp_columns],
                 cell(note)]
        rows.append({"cells": cells, "kind": "finished" if finished else "failed"})
        records.append({"rank": rank, **trial})
    for reference in baselines["rows"]:
        cells = [cell("ref"), cell(reference["name"]), cell("REFERENCE"), cell(BLANK),
                 value_cell(percent, reference["accuracy"]),
                 value_cell(percent, reference["top5_accuracy"]),
                 *[cell(BLANK)] * (len(headers) - 7),
                 cell(reference["detail"])]
        rows.append({"cells": cells, "kind": "reference"})
        records.append({"status": "REFERENCE", "trial_id": reference["name"],
                        "val_accuracy": reference["accuracy"],
                        "val_top5_accuracy": reference["top5_accuracy"],
                        "message": reference["detail"]})
    writer.csv(pd.DataFrame(records), "leaderboard.csv")
    return {"headers": headers, "rows": rows, "baselines": baselines["rows"],
            "baseline_size": baselines["size"], "train_images": baselines["train_images"]}


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
    result = {"trials": len(finished), "importance": [], "figures": [], "note": None}
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE:
        result["note"] = (f"Only {len(finished)} finished trial(s): relating hyperparameters to "
                          f"{run.objective} needs at least {MIN_TRIALS_FOR_IMPORTANCE}.")
        return result
    if not varying:
        result["note"] = "Every finished trial used the same hyperparameters."
        return result
    importance = hp_importance(finished, varying, run.objective)
    result["importance"] = [{"name": n.removeprefix("hp/"), "value": float(v)}
                            for n, v in importance.items()]
    result["figures"] = [
        writer.figure(importance_figure(importance), "importance",
                      "random-forest importance of each hyperparameter"),
        writer.figure(hp_figure(finished, list(importance.index), run.objective, run.spec.space),
                      "hyperparameters",
                      f"{run.objective} against each hyperparameter"),
    ]
    return result


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


# ----------------------------------------------------------------------------- learning curves


def curves_section(run, top, writer):
    """Train/val loss and accuracy per epoch for the best `top` finished trials."""
    trials = [t for t in run.finished["trial_id"].head(top) if run.histories.get(t)]
    if not trials:
        return {"figure": None, "note": "No per-epoch history was recorded for the finished "
                "trials (trials.json has no `history`)."}
    figure = curves_figure(run.histories, trials)
    shown = ", ".join(f"trial {t}" for t in trials)
    return {"figure": writer.figure(figure, "learning_curves", f"learning curves of {shown}"),
            "note": None, "trials": len(trials)}


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

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=shown, zero_division=0)
    present = np.unique(truth)
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            truth, predicted, labels=present, average=average, zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(len(truth))}
    per_class = pd.DataFrame({"label": shown, "class": label_names,
                              "precision": precision, "recall": recall, "f1": f1,
                              "support": support})
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
        "figure": writer.figure(figure, f"confusion_{suffix}",
                                f"confusion matrices of model {evaluated.rank}"),
    }


def most_confused(matrix, shown, names, limit=5):
    """The largest off-diagonal cells: (true, predicted, count, share of the true class)."""
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, 0)
    totals = matrix.sum(axis=1)
    pairs = []
    for flat in np.argsort(-off, axis=None, kind="stable")[:limit]:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] <= 0:
            break
        pairs.append({"true": names[shown[i]], "predicted": names[shown[j]],
                      "count": int(matrix[i, j]), "share": float(matrix[i, j] / totals[i])})
    return pairs


# ----------------------------------------------------------------------------- 4. similarity


def nearest_neighbours(features, k):
    """(indices, cosine distances) of each row's k nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    from artgan.similarity import l2_normalise

    unit = l2_normalise(features)
    k = min(k, len(unit) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k + 1).fit(unit).kneighbors(unit)
    keep = indices != np.arange(len(unit))[:, None]
    keep[keep.all(axis=1), -1] = False  # a duplicate took the row's own place: drop the last
    indices = indices[keep].reshape(len(unit), k)
    distances = distances[keep].reshape(len(unit), k) ** 2 / 2  # euclidean on unit -> cosine
    return indices, distances


def feature_scores(features, labels, k=NEIGHBOURS):
    """k-NN accuracy (leave-one-out vote), neighbour agreement, k-means purity and NMI."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from artgan.similarity import l2_normalise

    indices, _ = nearest_neighbours(features, k)
    neighbour_labels = labels[indices]
    votes = [Counter(row).most_common(1)[0][0] for row in neighbour_labels.tolist()]
    clusters = KMeans(n_clusters=len(np.unique(labels)), n_init=4, random_state=0).fit_predict(
        l2_normalise(features))
    purity = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters))
    return {"dim": int(features.shape[1]), "k": int(indices.shape[1]),
            "knn_accuracy": float(np.mean(np.asarray(votes) == labels)),
            "neighbour_agreement": float(np.mean(neighbour_labels == labels[:, None])),
            "kmeans_purity": float(purity / len(labels)),
            "nmi": float(normalized_mutual_info_score(labels, clusters))}


def similarity_section(evaluated, layer, baselines, writer, thumbnails):
    """Features of the best model: t-SNE map, neighbours of sample paintings, scores per
    layer and model (handcrafted features as the reference)."""
    from artgan.features import save_features

    if not evaluated:
        return {"note": "No saved model, so no learned features (best/ is empty).", "rows": []}
    best = evaluated[0]
    labels = best.split.labels
    if len(labels) < 2 * NEIGHBOURS or len(np.unique(labels)) < 2:
        return {"note": f"Only {len(labels)} validation image(s) in "
                f"{len(np.unique(labels))} class(es): too few to compare features.", "rows": []}
    layer = layer or next(iter(best.features))
    rows = [{"source": f"model {m.rank} (trial {m.trial_id})", "layer": name,
             **feature_scores(values, m.split.labels)}
            for m in evaluated for name, values in m.features.items()]
    rows.append({"source": "colour + texture (training-free)", "layer": "handcrafted",
                 **feature_scores(baselines["val_features"], baselines["val_labels"])})
    names = best.metadata["class_names"]
    features = best.features[layer]
    features_file = f"features_model_1_{layer}.npz"
    save_features(writer.path(features_file), features, labels, best.split.paths, names, layer)
    coordinates, sampled = tsne(features, labels)
    writer.csv(pd.DataFrame({"path": np.asarray(best.split.paths)[sampled],
                             "label": labels[sampled], "x": coordinates[:, 0],
                             "y": coordinates[:, 1]}), f"tsne_model_1_{layer}.csv")
    figure = tsne_figure(coordinates, labels[sampled], names)
    return {"note": None, "layer": layer, "rows": rows, "k": rows[0]["k"],
            "chance": float(np.bincount(labels).max() / len(labels)),
            "tsne_points": int(len(sampled)), "images": int(len(labels)),
            "figure": writer.figure(figure, f"tsne_model_1_{layer}",
                                    f"t-SNE map of {layer} features, coloured by class"),
            "queries": neighbour_queries(best, features, thumbnails),
            "features_file": features_file}


def tsne(features, labels):
    """2-D t-SNE of L2-normalised features (a random MAX_TSNE_POINTS of them, if more)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from artgan.similarity import l2_normalise

    rows = np.arange(len(labels))
    if len(rows) > MAX_TSNE_POINTS:
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(rows, MAX_TSNE_POINTS, replace=False))
    unit = l2_normalise(features[rows])
    if unit.shape[1] > 50 and len(rows) > 50:
        unit = PCA(50, random_state=0).fit_transform(unit)
    perplexity = float(min(30, max(2, (len(rows) - 1) // 3)))
    coordinates = TSNE(2, perplexity=perplexity, init="pca", max_iter=500,
                       random_state=0).fit_transform(unit)
    return coordinates, rows


def neighbour_queries(best, features, thumbnails):
    """One random query painting per class (at most MAX_QUERIES) and its nearest neighbours."""
    indices, distances = nearest_neighbours(features, NEIGHBOURS)
    labels, names = best.split.labels, best.metadata["class_names"]
    paths, root = best.split.paths, best.split.table.image_root
    rng = np.random.default_rng(0)
    queries = []
    for label in np.unique(labels)[:MAX_QUERIES]:
        query = int(rng.choice(np.flatnonzero(labels == label)))
        neighbours = [{"path": paths[j], "label": names[labels[j]],
                       "same": bool(labels[j] == label), "distance": float(d),
                       "thumbnail": thumbnails(root / paths[j])}
                      for j, d in zip(indices[query], distances[query])]
        queries.append({"path": paths[query], "label": names[label],
                        "thumbnail": thumbnails(root / paths[query]), "neighbours": neighbours})
    return queries


# ----------------------------------------------------------------------------- 5. examples


def examples_section(evaluated, thumbnails):
    """Per class: the most confident correct and the most confident wrong predictions."""
    if not evaluated:
        return {"note": "No saved model, so no predictions to show.", "classes": []}
    best = evaluated[0]
    frame = best.predictions
    root = best.split.table.image_root
    classes = []
    for label in sorted(frame["label"].unique()):
        own = frame[frame["label"] == label].sort_values("confidence", ascending=False)
        kinds = {}
        for kind, chosen in (("correct", own[own["predicted"] == label]),
                             ("wrong", own[own["predicted"] != label])):
            kinds[kind] = [{"path": r.path, "predicted": r.predicted_name,
                            "confidence": float(r.confidence),
                            "thumbnail": thumbnails(root / r.path)}
                           for r in chosen.head(EXAMPLES_PER_KIND).itertuples()]
        classes.append({"name": best.metadata["class_names"][label], "images": len(own), **kinds})
    return {"note": None, "classes": classes, "rank": best.rank}


# ----------------------------------------------------------------------------- 6. provenance


def provenance_section(run, data, seconds=None):
    """Resolved spec, label files with row counts, package versions, date."""
    from artgan.labels import load_labels, read_class_file

    files = []
    for key, table in (("train", data.train), ("val", data.val)):
        path = run.spec.path(key)
        whole = load_labels(path, data.class_names, on_error="skip", check_files=False)
        files.append({"role": key, "path": str(path), "rows": len(whole) + len(whole.skipped),
                      "used": len(table), "skipped": len(table.skipped)})
    classes = run.spec.path("classes")
    files.append({"role": "classes", "path": str(classes),
                  "rows": len(read_class_file(classes)), "used": len(data.class_names),
                  "skipped": 0})
    versions = {"python": platform.python_version(), "artgan": __version__}
    for name in PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"spec": run.spec_text, "files": files, "images": str(run.spec.path("images")),
            "versions": versions, "commit": git_commit(),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "run": str(run.folder), "seconds": seconds}


def git_commit():
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# ----------------------------------------------------------------------------- assembly


@dataclass
class Report:
    html: Path
    folder: Path
    seconds: float
    notes: list


def default_output(run):
    return Path("reports") / run.folder.name


def run_notes(run, evaluated, top):
    """What the report cannot show, in words (shown at the top of the report)."""
    notes = []
    failed = run.trials[run.trials["status"] != "COMPLETED"]
    for trial in failed.to_dict("records"):
        reason = trial_reason(trial, "no reason recorded")
        notes.append(f"Trial {trial['trial_id']} is {trial['status']} ({reason}): it has no "
                     "scores, so it is listed without a rank and left out of every figure.")
    if not run.models:
        notes.append(f"{run.folder / 'best'} holds no saved model (the search stopped before "
                     "saving them; rerun the same search command to finish): confusion matrices, "
                     "features and examples are missing.")
    elif len(run.models) < top:
        notes.append(f"{len(run.models)} saved model(s) in best/, {top} requested with --top: "
                     f"showing {len(evaluated)}.")
    return notes


def first_input_size(run, default=64):
    """The input size of the first finished trial that has one (scratch CNNs do)."""
    sizes = run.finished.get("hp/input_size", pd.Series(dtype=float)).dropna()
    return int(sizes.iloc[0]) if len(sizes) else default


def build_report(target, top=3, layer=None, out=None, log=print):
    """Write the report for `target` (run folder, experiment YAML or task); returns `Report`."""
    started = time.perf_counter()
    if top < 1:
        raise ArtganError(f"--top must be at least 1, got {top}")
    run = open_run(target)
    from artgan.search import TaskData  # TensorFlow: only once there is something to report

    writer = Writer(out or default_output(run))
    data = TaskData.from_spec(run.spec)
    log(f"{run.folder}: {len(run.trials)} trial(s), {len(run.finished)} finished; "
        f"{len(data.val)} validation images")
    evaluated = evaluate_models(run, data, top, layer)
    size = evaluated[0].metadata["input_size"] if evaluated else first_input_size(run)
    baselines = baselines_section(run, data, size)
    thumbnails = Thumbnails(run.spec.data.resize)
    with rc_context(MATPLOTLIB_STYLE):
        context = {
            "leaderboard": leaderboard_section(run, baselines, writer),
            "mattered": what_mattered_section(run, writer),
            "curves": curves_section(run, top, writer),
            "models": [confusion_section(m, run, writer) for m in evaluated],
            "similarity": similarity_section(evaluated, layer, baselines, writer, thumbnails),
            "examples": examples_section(evaluated, thumbnails),
        }
    seconds = time.perf_counter() - started
    context.update(
        title=f"artgan report: {run.spec.task}" + (
            f" ({run.folder.name})" if run.folder.name != run.spec.task else ""),
        spec=run.spec, run=run, top=top, notes=run_notes(run, evaluated, top),
        summary=summary(run, data, context),
        provenance=provenance_section(run, data, seconds),
    )
    html = writer.text(render(context), "report.html")
    write_metrics(writer, run, data, context)
    return Report(html, writer.folder, time.perf_counter() - started, context["notes"])


def summary(run, data, context):
    statuses = Counter(run.trials["status"])
    best = context["models"][0] if context["models"] else None
    return {"task": run.spec.task, "description": run.spec.description,
            "classes": len(np.unique(data.val.labels())), "val_images": len(data.val),
            "train_images": len(data.train), "finished": statuses.get("COMPLETED", 0),
            "trials": len(run.trials),
            "other": {s: n for s, n in statuses.items() if s != "COMPLETED"},
            "best_accuracy": (best["accuracy"] if best
                              else float(run.finished["val_accuracy"].iloc[0])),
            "best_trial": best["trial_id"] if best else run.finished["trial_id"].iloc[0],
            "baselines": context["leaderboard"]["baselines"]}


def write_metrics(writer, run, data, context):
    """Every number of the report as JSON (figures and thumbnails left out)."""
    metrics = {
        "task": run.spec.task, "run": str(run.folder), "objective": run.objective,
        "generated": context["provenance"]["date"], "seconds": context["provenance"]["seconds"],
        "class_names": list(data.class_names), "val_images": len(data.val),
        "trials": {s: int(n) for s, n in Counter(run.trials["status"]).items()},
        "baselines": context["leaderboard"]["baselines"],
        "importance": context["mattered"]["importance"],
        "importance_note": context["mattered"]["note"],
        "models": [numbers_only(m) for m in context["models"]],
        "similarity": numbers_only(context["similarity"]),
        "notes": context["notes"],
    }
    writer.manifest(plain(metrics))


def numbers_only(section):
    """A section without its embedded images (data URIs are for the page, not the JSON)."""
    return {k: v for k, v in section.items() if k not in EMBEDDED}


def csp_hash(script):
    """The Content-Security-Policy source allowing exactly this inline script."""
    digest = hashlib.sha256(str(script).encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def render(context):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, decimal=decimal, duration=duration,
                               csp_hash=csp_hash)
    return environment.get_template("report.html.j2").render(**context)
