"""Compare searches: one self-contained HTML page over several run folders.

`compare_runs(targets)` reads each run folder (as the report does) and writes, under
`reports/compare-<run>-<run>/` by default:

    compare.html        best-so-far curves (against trial id and summed trial time),
                        best scores with their spread, per-class F1 of each run's best
                        model on the shared validation split, and what differs between specs
    metrics.json        the same numbers
    *.png, *.svg        the figures

Runs whose tasks or class sets differ are refused (`ArtganError`) unless
`allow_mismatch` is set: their scores do not measure the same thing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml
from matplotlib import rc_context

from artgan.data.splits import TaskData
from artgan.errors import ArtganError
from artgan.evaluation.metrics import per_class_scores
from artgan.evaluation.predict import predict_split
from artgan.formatting import decimal, duration, hp_text, percent, plain
from artgan.model.saved import load_model
from artgan.report.figures import MATPLOTLIB_STYLE
from artgan.report.insight_figures import best_so_far_figure, per_class_figure
from artgan.report.output import Writer
from artgan.report.run import Run, open_run
from artgan.runfolder import FINISHED

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
IGNORED_KEYS = ("output", "description")  # differ between any two runs, mean nothing


def run_label(run, others):
    """A short name for a run: its folder name, with its parent's when names collide."""
    name = run.folder.name
    if sum(r.folder.name == name for r in others) > 1:
        name = f"{run.folder.parent.name}/{name}"
    return name


def check_comparable(runs, labels, data, allow_mismatch):
    """Refuse runs whose tasks or class sets (the classes their labels have; `data`: each
    run's `TaskData`) differ, unless `allow_mismatch`; returns the differences found, as
    sentences."""
    problems = []
    tasks = {label: run.spec.task for label, run in zip(labels, runs)}
    if len(set(tasks.values())) > 1:
        problems.append("tasks differ: " + ", ".join(f"{k} is {v}" for k, v in tasks.items()))
    classes = {label: tuple(d.class_names[i] for i in d.classes) for label, d in zip(labels, data)}
    if len(set(classes.values())) > 1:
        problems.append(
            "class sets differ: "
            + ", ".join(
                f"{k} has {len(v)} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
                for k, v in classes.items()
            )
        )
    if problems and not allow_mismatch:
        raise ArtganError(
            "cannot compare these runs: "
            + "; ".join(problems)
            + " (their scores measure different things; set `allow_mismatch` "
            "to compare them anyway)"
        )
    return problems


def trial_order(run):
    """Every trial in the order it was created (`trial`: its id as a number), with its score
    (finished trials, pruned ones included), the best so far (carried over failed trials)
    and the summed wall time of the trials up to it (failed trials cost time, score nothing)."""
    trials = run.trials.copy()
    trials["order"] = pd.to_numeric(trials["trial_id"], errors="coerce")
    trials = trials.sort_values(["order", "trial_id"], kind="stable").reset_index(drop=True)
    score = pd.to_numeric(trials["score"], errors="coerce")
    score = score.where(trials["status"].isin(FINISHED))
    if run.spec.tuner.resolved_direction == "max":
        best = score.cummax()
    else:
        best = score.cummin()
    seconds = pd.to_numeric(trials.get("wall_seconds"), errors="coerce").fillna(0).cumsum()
    number = trials["order"].where(trials["order"].notna(), pd.Series(np.arange(len(trials))))
    return pd.DataFrame(
        {
            "trial": number,
            "trial_id": trials["trial_id"],
            "score": score,
            "best": best.ffill(),
            "seconds": seconds,
        }
    )


def summary_row(run, label):
    scores = pd.to_numeric(run.finished["score"], errors="coerce").dropna().to_numpy(float)
    order = trial_order(run)
    best = order.loc[order["best"] == scores[0]].iloc[0]  # the first trial to reach the best
    return {
        "run": label,
        "folder": str(run.folder),
        "tuner": run.spec.tuner.type,
        "trials": len(run.trials),
        "finished": int(len(scores)),
        "best": float(scores[0]),
        "best_trial": str(best["trial_id"]),
        "median": float(np.median(scores)),
        "mean": float(scores.mean()),
        "std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
        "top3_mean": float(scores[:3].mean()),
        "seconds": float(order["seconds"].iloc[-1]),
    }


def flatten(value, prefix=""):
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(flatten(inner, f"{prefix}{key}."))
        return items
    return {prefix.rstrip("."): value}


def spec_differences(runs, labels):
    """Resolved-spec keys (dotted) whose values differ between runs."""
    flat = [flatten(yaml.safe_load(run.spec_text)) for run in runs]
    keys = sorted(set().union(*flat))
    rows = []
    for key in keys:
        if key.split(".")[0] in IGNORED_KEYS or key.endswith(".description"):
            continue
        values = [f.get(key, "absent") for f in flat]
        if len({repr(v) for v in values}) > 1:
            rows.append(
                {
                    "key": key,
                    "values": [
                        hp_text(v) if not isinstance(v, (list, dict)) else str(v) for v in values
                    ],
                }
            )
    return rows


def shared_split(data):
    """The `TaskData` whose validation split all runs share (same files, same labels), else
    None."""
    first = data[0].val
    for other in data[1:]:
        if list(map(str, other.val.image_paths())) != list(
            map(str, first.image_paths())
        ) or not np.array_equal(other.val.labels(), first.labels()):
            return None
    return data[0]


def per_class_f1(runs, labels, data):
    """Per-class F1 of each run's best saved model on the shared validation split."""
    columns, names = {}, None
    for run, label in zip(runs, labels):
        if not run.models:
            continue
        model, metadata = load_model(run.models[0])
        split = run.val_split(data, metadata)
        probabilities = predict_split(model, split, metadata=metadata)
        names = metadata["class_names"]
        scores = per_class_scores(split.labels, probabilities.argmax(axis=1), names)
        columns[label] = {s["class"]: s["f1"] for s in scores if s["support"]}
    if not columns:
        return None
    classes = [n for n in names if any(n in c for c in columns.values())]
    return pd.DataFrame(
        {label: [c.get(n) for n in classes] for label, c in columns.items()}, index=classes
    )


def compare_runs(
    targets: Sequence[str | Path | Run],
    out: str | Path | None = None,
    allow_mismatch: bool = False,
) -> Path:
    """Write the comparison page of `targets` (run folders, experiment YAMLs, tasks or opened
    `Run`s)."""
    started = time.perf_counter()
    if len(targets) < 2:
        raise ArtganError(f"`runs`: compare needs at least two runs, got {len(targets)}")
    runs = [t if isinstance(t, Run) else open_run(t) for t in targets]
    labels = [run_label(r, runs) for r in runs]
    if len(set(labels)) < len(labels):
        raise ArtganError("`runs`: the same run folder is named twice")
    data = [TaskData.from_spec(run.spec) for run in runs]
    mismatches = check_comparable(runs, labels, data, allow_mismatch)
    writer = Writer(out or Path("reports") / ("compare-" + "-".join(r.folder.name for r in runs)))
    with writer.discarded_on_failure():
        return write_comparison(runs, labels, data, mismatches, writer, started)


def write_comparison(runs, labels, data, mismatches, writer, started):
    objective = runs[0].objective
    orders = {label: trial_order(run) for label, run in zip(labels, runs)}
    rows = [summary_row(run, label) for label, run in zip(labels, runs)]
    shared = shared_split(data) if not mismatches else None
    with rc_context(MATPLOTLIB_STYLE):
        curves = writer.figure(
            best_so_far_figure(orders, objective),
            "best_so_far",
            f"best {objective} so far against trial id and summed trial time",
        )
        f1 = per_class_f1(runs, labels, shared) if shared is not None else None
        f1_figure = (
            writer.figure(
                per_class_figure(f1), "per_class_f1", "per-class F1 of each run's best model"
            )
            if f1 is not None
            else None
        )
    notes = [f"Compared anyway (`allow_mismatch`): {m}." for m in mismatches]
    if shared is None:
        notes.append(
            "The runs do not share one validation split (different files, labels "
            "or sampling), so their best models' per-class F1 is not compared."
        )
    elif f1 is None:
        notes.append("No run has a saved best model: no per-class F1.")
    context = {
        "title": "artgan: compare " + ", ".join(labels),
        "objective": objective,
        "rows": rows,
        "curves": curves,
        "f1_figure": f1_figure,
        "notes": notes,
        "f1": None
        if f1 is None
        else {
            "classes": list(f1.index),
            "runs": list(f1.columns),
            "values": f1.to_numpy().tolist(),
        },
        "differences": spec_differences(runs, labels),
        "labels": labels,
        "direction": runs[0].spec.tuner.resolved_direction,
        "seconds": time.perf_counter() - started,
    }
    for label, order in orders.items():
        writer.csv(order, f"best_so_far_{label.replace('/', '_')}.csv")
    html = writer.text(render(context), "compare.html")
    writer.manifest(plain({k: v for k, v in context.items() if k not in ("curves", "f1_figure")}))
    log.info(f"compared {len(runs)} runs in {time.perf_counter() - started:.1f} s")
    return html


def render(context):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, decimal=decimal, duration=duration)
    return environment.get_template("compare.html.j2").render(**context)
