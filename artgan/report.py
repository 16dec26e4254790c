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
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from PIL import Image

from artgan import __version__
from artgan.errors import ArtganError
from artgan.paths import REPO_ROOT

TEMPLATES = Path(__file__).parent / "templates"
MIN_TRIALS_FOR_IMPORTANCE = 3
NEIGHBOURS = 5  # k of the k-NN accuracy and of the neighbour thumbnails
MAX_TSNE_POINTS = 2000
MAX_QUERIES = 8
EXAMPLES_PER_KIND = 3
THUMBNAIL_SIZE = 96
UNFINISHED = {"RUNNING": "still running", "IDLE": "not started",
              "INVALID": "invalid hyperparameters", "STOPPED": "stopped early by the tuner"}
PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "pandas", "scikit-learn",
            "matplotlib", "jinja2", "pillow", "opencv-python-headless")
MATPLOTLIB_STYLE = {
    "text.parse_math": False,  # a class name with "$" is text, not TeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "artgan",  # identical SVGs for identical figures
}


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


# ----------------------------------------------------------------------------- output


class Writer:
    """Writes the report's files and remembers them, so a rerun can remove stale ones."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        self._remove_previous()

    def _remove_previous(self):
        manifest = self.folder / "metrics.json"
        try:
            previous = json.loads(manifest.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            return
        for name in previous:
            if isinstance(name, str) and "/" not in name and "\\" not in name:
                (self.folder / name).unlink(missing_ok=True)

    def path(self, name):
        self.files.append(name)
        return self.folder / name

    def figure(self, figure, name, alt):
        """Save PNG and SVG; return what the template needs, PNG embedded as a data URI."""
        FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        self.path(f"{name}.png").write_bytes(buffer.getvalue())
        figure.savefig(self.path(f"{name}.svg"), format="svg")
        return {"src": data_uri(buffer.getvalue(), "image/png"), "png": f"{name}.png",
                "svg": f"{name}.svg", "alt": alt}

    def csv(self, frame, name):
        frame.to_csv(self.path(name), index=False)
        return name

    def text(self, text, name):
        self.path(name).write_text(text, encoding="utf-8")
        return self.folder / name


def data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


class Thumbnails:
    """Small JPEG data URIs of the original image files (decoded once per path)."""

    def __init__(self, resize):
        self.resize = resize
        self._uris = {}

    def __call__(self, path):
        from artgan.images import ImageError, decode_image

        path = str(path)
        if path not in self._uris:
            try:
                pixels = decode_image(path, THUMBNAIL_SIZE, self.resize)
            except ImageError:
                self._uris[path] = None
            else:
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=82)
                self._uris[path] = data_uri(buffer.getvalue(), "image/jpeg")
        return self._uris[path]


# ----------------------------------------------------------------------------- formatting


def missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(value):
    return "–" if missing(value) else f"{100 * value:.1f}%"


def decimal(value, digits=3):
    return "–" if missing(value) else f"{value:.{digits}f}"


def duration(seconds):
    if missing(seconds):
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def count(value):
    if missing(value):
        return "–"
    value = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def hp_text(value):
    if missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def cell(text, sort=None, title=None):
    """A table cell: shown text, the value the leaderboard sorts by, and a tooltip."""
    if sort is not None and (isinstance(sort, bool) or missing(sort)):
        sort = None
    return {"text": text, "sort": sort, "title": title}


def plain(value):
    """numpy / pandas scalars -> JSON-friendly Python values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


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
    from artgan.evaluate import predictions_frame, score
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
        model_scores = dict(zip(("accuracy", "top5_accuracy", "macro_f1"),
                                score(split.labels, probabilities, len(names))))
        evaluated.append(Evaluated(rank, path, metadata, split, probabilities,
                                   predictions_frame(split, probabilities, names), features,
                                   {k: float(v) for k, v in model_scores.items()}))
    return evaluated


# ----------------------------------------------------------------------------- 1. leaderboard


def baselines_section(run, data, size):
    """Majority class and handcrafted features + logistic regression, on the same split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from artgan.baselines import handcrafted_features
    from artgan.dataset import load_split_images
    from artgan.evaluate import score

    on_error, resize = run.spec.data.on_error, run.spec.data.resize
    train, val = (load_split_images(t, size, resize, on_error, progress=False)
                  for t in (data.train, data.val))
    num_classes = len(data.class_names)
    frequencies = np.bincount(train.labels, minlength=num_classes) / len(train)
    majority = np.tile(frequencies, (len(val), 1))
    rows = [{"name": "majority class",
             "detail": f"always predicts {data.class_names[int(frequencies.argmax())]}",
             **dict(zip(("accuracy", "top5_accuracy", "macro_f1"),
                        map(float, score(val.labels, majority, num_classes))))}]

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
                     **dict(zip(("accuracy", "top5_accuracy", "macro_f1"),
                                map(float, score(val.labels, probabilities, num_classes))))})
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
        note = trial.get("message") if isinstance(trial.get("message"), str) else ""
        note = note or ("" if finished else UNFINISHED.get(trial["status"], "did not finish"))
        cells = [cell(str(rank) if rank else "–", rank), cell(trial["trial_id"]),
                 cell(trial["status"], title=note or None),
                 cell(decimal(trial.get("score"), 4), trial.get("score")),
                 *[cell(percent(trial.get(m)), trial.get(m))
                   for m in ("val_accuracy", "val_top5_accuracy")],
                 cell(decimal(trial.get("val_loss")), trial.get("val_loss")),
                 cell(percent(trial.get("accuracy")), trial.get("accuracy")),
                 cell(hp_text(trial.get("best_epoch")) if finished else "–",
                      trial.get("best_epoch") if finished else None),
                 cell(hp_text(trial.get("epochs")), trial.get("epochs")),
                 cell(duration(trial.get("wall_seconds")), trial.get("wall_seconds")),
                 cell(count(trial.get("params")), trial.get("params")),
                 *[cell(hp_text(trial.get(c)), trial.get(c) if _is_number(trial.get(c)) else None)
                   for c in hp_columns],
                 cell(note)]
        rows.append({"cells": cells, "kind": "finished" if finished else "failed"})
        records.append({"rank": rank, **{k: v for k, v in trial.items()}})
    for reference in baselines["rows"]:
        cells = [cell("ref"), cell(reference["name"]), cell("REFERENCE"),
                 cell("–"), cell(percent(reference["accuracy"]), reference["accuracy"]),
                 cell(percent(reference["top5_accuracy"]), reference["top5_accuracy"]),
                 *[cell("–")] * (len(headers) - 7),
                 cell(reference["detail"])]
        rows.append({"cells": cells, "kind": "reference"})
        records.append({"status": "REFERENCE", "trial_id": reference["name"],
                        "val_accuracy": reference["accuracy"],
                        "val_top5_accuracy": reference["top5_accuracy"],
                        "message": reference["detail"]})
    writer.csv(pd.DataFrame(records), "leaderboard.csv")
    return {"headers": headers, "rows": rows, "baselines": baselines["rows"],
            "baseline_size": baselines["size"], "train_images": baselines["train_images"]}


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


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


def importance_figure(importance):
    figure = new_figure(5.5, 0.3 * len(importance) + 1.0)
    axes = figure.add_subplot()
    names = [n.removeprefix("hp/") for n in importance.index][::-1]
    axes.barh([shorten(n) for n in names], importance.to_numpy()[::-1], color="#4c72b0")
    axes.set_xlabel("random-forest importance (share of explained variance)")
    return figure


def hp_figure(finished, columns, objective, space=None):
    """One small panel per hyperparameter: objective against the value for ranges (log axis
    for log-sampled ones), points per choice (with a box once a choice has 3+ trials)."""
    per_row = min(4, len(columns))
    rows = -(-len(columns) // per_row)
    figure = new_figure(3.0 * per_row, 2.4 * rows)
    y = pd.to_numeric(finished[objective]).to_numpy(float)
    margin = 0.05 * (np.ptp(y) or 1.0)
    rng = np.random.default_rng(0)
    for index, column in enumerate(columns, start=1):
        axes = figure.add_subplot(rows, per_row, index)
        axes.set_ylim(y.min() - margin, y.max() + margin)  # one scale for every panel
        values = finished[column]
        numeric = numeric_values(values)
        parameter = space.parameters.get(column.removeprefix("hp/")) if space else None
        if numeric is not None and is_range(parameter, numeric):
            axes.scatter(numeric, y, s=18, color="#4c72b0")
            log = parameter is not None and parameter.distribution == "log_uniform_values"
            if log or (numeric.min() > 0 and numeric.max() / numeric.min() >= 10):
                axes.set_xscale("log")  # plain labels: parse_math is off, so no 10^x mathtext
                axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                axes.xaxis.set_minor_formatter(NullFormatter())
            else:
                integers = bool((numeric.dropna() % 1 == 0).all())
                axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=integers))
        else:
            text = values.map(lambda v: "n/a" if missing(v) else hp_text(v))
            labels = sorted(text.unique(), key=_natural)
            groups = [y[(text == label).to_numpy()] for label in labels]
            if min(map(len, groups)) >= 3:
                axes.boxplot(groups, widths=0.5, showfliers=False)
            for position, group in enumerate(groups, start=1):
                jitter = rng.uniform(-0.12, 0.12, len(group))
                axes.scatter(position + jitter, group, s=14, color="#4c72b0", zorder=3)
            axes.set_xticks(range(1, len(labels) + 1), labels)
            axes.set_xlim(0.5, len(labels) + 0.5)
        axes.set_title(column.removeprefix("hp/"))
        if (index - 1) % per_row == 0:
            axes.set_ylabel(objective)
    return figure


def is_range(parameter, numeric):
    """Plot as a range: declared with min/max in the search space, else many distinct values."""
    if parameter is not None:
        return parameter.min is not None
    return numeric.nunique() > 3


def numeric_values(values):
    """The column as floats (missing -> NaN) if every present value is a number, else None."""
    present = values[values.map(lambda v: not missing(v))]
    if present.empty or not present.map(_is_number).all():
        return None
    return pd.to_numeric(values, errors="coerce").astype(float)


def _natural(text):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


# ----------------------------------------------------------------------------- learning curves


def curves_section(run, top, writer):
    """Train/val loss and accuracy per epoch for the best `top` finished trials."""
    trials = [t for t in run.finished["trial_id"].head(top) if run.histories.get(t)]
    if not trials:
        return {"figure": None, "note": "No per-epoch history was recorded for the finished "
                "trials (trials.json has no `history`)."}
    figure = new_figure(9, 3.2)
    longest = max(len(v) for t in trials for v in run.histories[t].values())
    panels = (("loss", "loss"), ("accuracy", "accuracy"))
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for index, (metric, title) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, index)
        for rank, trial_id in enumerate(trials, start=1):
            history = run.histories[trial_id]
            colour = colours[(rank - 1) % len(colours)]
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + metric)
                if values:
                    epochs = range(1, len(values) + 1)
                    axes.plot(epochs, values, style, marker="o", markersize=3, color=colour,
                              label=f"#{rank} trial {trial_id} {'val' if prefix else 'train'}")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        if longest <= 12:
            axes.set_xticks(range(1, longest + 1))
        else:
            axes.xaxis.get_major_locator().set_params(integer=True)
    figure.axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
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
    per_class = pd.DataFrame({"label": shown, "class": [names[i] for i in shown],
                              "precision": precision, "recall": recall, "f1": f1,
                              "support": support})
    suffix = f"model_{evaluated.rank}"
    writer.csv(per_class, f"per_class_{suffix}.csv")
    writer.csv(evaluated.predictions, f"predictions_{suffix}.csv")
    trial = run.trials[run.trials["trial_id"] == evaluated.trial_id]
    search_score = float(trial["val_accuracy"].iloc[0]) if len(trial) else None
    figure = confusion_figure(matrix, normalised, [names[i] for i in shown])
    return {
        "rank": evaluated.rank,
        "file": evaluated.path.name,
        "trial_id": evaluated.trial_id,
        "images": int(len(truth)),
        "search_val_accuracy": search_score,
        **evaluated.scores,
        "labels": shown.tolist(),
        "label_names": [names[i] for i in shown],
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


def confusion_figure(matrix, normalised, labels):
    short = [shorten(label) for label in labels]
    side = max(3.4, 0.38 * len(labels) + 0.07 * max(map(len, short)) + 1.2)
    figure = new_figure(2 * side, side)
    for index, (values, title, fmt) in enumerate(
        ((matrix, "counts", "{:.0f}"), (normalised, "row-normalised (recall)", "{:.2f}")), start=1
    ):
        axes = figure.add_subplot(1, 2, index)
        image = axes.imshow(values, cmap="Blues", vmin=0)
        threshold = values.max() / 2 if values.max() else 1
        if len(labels) <= 15:  # numbers in the cells; a colour bar only when they would not fit
            for (i, j), value in np.ndenumerate(values):
                axes.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                          color="white" if value > threshold else "black")
        else:
            figure.colorbar(image, ax=axes, shrink=0.6)
        axes.set_xticks(range(len(labels)), short, rotation=45, ha="right")
        axes.set_yticks(range(len(labels)), short if index == 1 else [])
        axes.set_xlabel("predicted")
        if index == 1:
            axes.set_ylabel("true")
        axes.set_title(title)
    return figure


def shorten(name, limit=24):
    """Class names in figures are cut to `limit` characters (tables keep them whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


# ----------------------------------------------------------------------------- 4. similarity


def l2_normalise(features):
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def nearest_neighbours(features, k):
    """(indices, cosine distances) of each row's k nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

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
    from artgan.features import save_features

    save_features(writer.path(f"features_model_1_{layer}.npz"), features, labels,
                  best.split.paths, names, layer)
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
            "features_file": f"features_model_1_{layer}.npz"}


def tsne(features, labels):
    """2-D t-SNE of L2-normalised features (a random MAX_TSNE_POINTS of them, if more)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

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


def class_colours(count):
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


def tsne_figure(coordinates, labels, names):
    figure = new_figure(7.5, 5.2)
    axes = figure.add_subplot()
    present = np.unique(labels)
    for colour, label in zip(class_colours(len(present)), present):
        chosen = labels == label
        axes.scatter(coordinates[chosen, 0], coordinates[chosen, 1], s=12, color=colour,
                     alpha=0.8, label=shorten(names[label], 32), linewidths=0)
    axes.set_axis_off()
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.6)
    return figure


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
        reason = trial.get("message")
        if not (isinstance(reason, str) and reason):
            reason = UNFINISHED.get(trial["status"], "no reason recorded")
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
    size = (evaluated[0].metadata["input_size"] if evaluated
            else int(run.finished.iloc[0].get("hp/input_size", 64)))
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
    drop = {"figure", "figures", "queries", "thumbnail"}
    metrics = {
        "task": run.spec.task, "run": str(run.folder), "objective": run.objective,
        "generated": context["provenance"]["date"], "seconds": context["provenance"]["seconds"],
        "class_names": list(data.class_names), "val_images": len(data.val),
        "trials": {s: int(n) for s, n in Counter(run.trials["status"]).items()},
        "baselines": context["leaderboard"]["baselines"],
        "importance": context["mattered"]["importance"],
        "importance_note": context["mattered"]["note"],
        "models": [{k: v for k, v in m.items() if k not in drop} for m in context["models"]],
        "similarity": {k: v for k, v in context["similarity"].items() if k not in drop},
        "notes": context["notes"],
    }
    writer.files.append("metrics.json")
    metrics["files"] = sorted(set(writer.files))
    (writer.folder / "metrics.json").write_text(json.dumps(plain(metrics), indent=1))


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
