"""Build one self-contained HTML report per search: evaluate the best models, assemble
the sections, write the page, its figures and `metrics.json`."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib import rc_context

from artgan.data.splits import TaskData
from artgan.errors import ArtganError
from artgan.evaluation.card import card_facts, model_card
from artgan.files import folder_in_use
from artgan.formatting import (
    count,
    decimal,
    duration,
    missing,
    percent,
    plain,
)
from artgan.report.evaluated import baselines_section, evaluate_models
from artgan.report.features import similarity_section
from artgan.report.figures import (
    MATPLOTLIB_STYLE,
)
from artgan.report.insights import (
    calibration_section,
    examples_section,
    suspect_section,
    tradeoff_section,
)
from artgan.report.output import Thumbnails, Writer
from artgan.report.run import Run, open_run
from artgan.report.sampling import sampling_notes
from artgan.report.sections import (
    confusion_section,
    curves_section,
    leaderboard_section,
    provenance_section,
    trial_reason,
    what_mattered_section,
)
from artgan.runfolder import FINISHED, RunFolder

TEMPLATES = Path(__file__).parent / "templates"
EMBEDDED = {"figure", "figures", "queries", "thumbnail"}  # left out of metrics.json


# ----------------------------------------------------------------------------- assembly


@dataclass
class Report:
    html: Path
    folder: Path
    seconds: float
    notes: list[str]


def default_output(run):
    return Path("reports") / run.folder.name


def run_notes(run, evaluated, top):
    """What the report cannot show, in words (shown at the top of the report)."""
    notes = []
    failed = run.trials[~run.trials["status"].isin(FINISHED)]
    for trial in failed.to_dict("records"):
        reason = trial_reason(trial, "no reason recorded")
        notes.append(
            f"Trial {trial['trial_id']} is {trial['status']} ({reason}): it has no "
            "scores, so it is listed without a rank and left out of every figure."
        )
    live = folder_in_use(run.folder)
    if not run.models and live:
        notes.append(
            f"{RunFolder(run.folder).best} holds no saved model yet: a search is still "
            f"running in this folder ({live}) and saves them when it ends; confusion "
            "matrices, features and examples are missing until then."
        )
    elif not run.models:
        notes.append(
            f"{RunFolder(run.folder).best} holds no saved model (the search stopped before "
            "saving them; rerun the same search command to finish): confusion matrices, "
            "features and examples are missing."
        )
    elif len(run.models) < top:
        notes.append(
            f"{len(run.models)} saved model(s) in best/, {top} requested: "
            f"showing {len(evaluated)}."
        )
    return notes


def first_input_size(run, default=64):
    """The input size of the first finished trial that has one (scratch CNNs do)."""
    sizes = run.finished.get("hp/input_size", pd.Series(dtype=float)).dropna()
    return int(sizes.iloc[0]) if len(sizes) else default


def build_report(
    target: str | Path | Run,
    top: int = 3,
    layer: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], object] = print,
) -> Report:
    """Write the report for `target` (run folder, experiment YAML, task, or an opened `Run`);
    returns `Report`."""
    started = time.perf_counter()
    if top < 1:
        raise ArtganError(f"`top` must be at least 1, got {top}")
    run = target if isinstance(target, Run) else open_run(target)
    writer = Writer(out or default_output(run))
    with writer.discarded_on_failure():
        return write_report(run, writer, top, layer, log, started)


def write_report(run, writer, top, layer, log, started):
    data = TaskData.from_spec(run.spec)
    log(
        f"{run.folder}: {len(run.trials)} trial(s), {len(run.finished)} finished; "
        f"{len(data.val)} validation images"
    )
    evaluated = evaluate_models(run, data, top, layer)
    size = evaluated[0].metadata["input_size"] if evaluated else first_input_size(run)
    baselines = baselines_section(run, data, size)
    thumbnails = Thumbnails(run.spec.data.resize)
    with rc_context(MATPLOTLIB_STYLE):
        context = {
            "leaderboard": leaderboard_section(run, baselines, writer),
            "tradeoff": tradeoff_section(run, writer),
            "mattered": what_mattered_section(run, writer),
            "curves": curves_section(run, top, writer),
            "models": [confusion_section(m, run, writer) for m in evaluated],
            "calibration": calibration_section(evaluated, writer),
            "similarity": similarity_section(evaluated, layer, baselines, writer, thumbnails),
            "examples": examples_section(evaluated, thumbnails),
            "suspects": suspect_section(evaluated, layer, writer, thumbnails, data),
            "cards": cards_section(run, data, evaluated, writer),
        }
    seconds = time.perf_counter() - started
    context.update(
        title=f"artgan report: {run.spec.task}"
        + (f" ({run.folder.name})" if run.folder.name != run.spec.task else ""),
        spec=run.spec,
        run=run,
        top=top,
        notes=run_notes(run, evaluated, top),
        sampling=sampling_notes(evaluated, baselines, run.spec.seed),
        summary=summary(run, data, context),
        provenance=provenance_section(run, data, seconds),
    )
    html = writer.text(render(context), "report.html")
    write_metrics(writer, run, data, context)
    return Report(html, writer.folder, time.perf_counter() - started, context["notes"])


def cards_section(run, data, evaluated, writer):
    """A model card per evaluated model (`model_N.md` here, from this re-evaluation), with
    the inference time the search measured, if it did."""
    cards = []
    for m in evaluated:
        row = run.trials[run.trials["trial_id"] == m.trial_id]
        trial = {
            k: (row[k].iloc[0] if k in row and len(row) else None)
            for k in ("epochs", "wall_seconds", "params", "inference_ms")
        }
        milliseconds = None if missing(trial["inference_ms"]) else float(trial["inference_ms"])
        facts = card_facts(
            m.split.labels,
            m.probabilities,
            m.metadata["class_names"],
            data.train.labels(),
            milliseconds,
        )
        name = f"model_{m.rank}.md"
        writer.text(model_card(m.metadata, facts, run.spec.budget.model_dump(), trial), name)
        saved = RunFolder(run.folder).card(m.rank)
        cards.append(
            {
                "rank": m.rank,
                "file": name,
                "timed": milliseconds is not None,
                "in_run": str(saved) if saved.is_file() else None,
            }
        )
    return cards


def summary(run, data, context):
    statuses = Counter(run.trials["status"])
    best = context["models"][0] if context["models"] else None
    return {
        "task": run.spec.task,
        "description": run.spec.description,
        "classes": len(data.classes),
        "val_images": len(data.val),
        "train_images": len(data.train),
        "finished": sum(statuses.get(s, 0) for s in FINISHED),
        "trials": len(run.trials),
        "other": {s: n for s, n in statuses.items() if s not in FINISHED},
        "best_accuracy": (
            best["accuracy"] if best else float(run.finished["val_accuracy"].iloc[0])
        ),
        "best_trial": best["trial_id"] if best else run.finished["trial_id"].iloc[0],
        "baselines": context["leaderboard"]["baselines"],
    }


def write_metrics(writer, run, data, context):
    """Every number of the report as JSON (figures and thumbnails left out)."""
    metrics = {
        "task": run.spec.task,
        "run": str(run.folder),
        "objective": run.objective,
        "generated": context["provenance"]["date"],
        "seconds": context["provenance"]["seconds"],
        "class_names": [data.class_names[i] for i in data.classes],
        "val_images": len(data.val),
        "trials": {s: int(n) for s, n in Counter(run.trials["status"]).items()},
        "baselines": context["leaderboard"]["baselines"],
        "importance": context["mattered"]["importance"],
        "importance_note": context["mattered"]["note"],
        "models": [numbers_only(m) for m in context["models"]],
        "similarity": numbers_only(context["similarity"]),
        "pareto": numbers_only(context["tradeoff"]),
        "calibration": numbers_only(context["calibration"]),
        "suspect_labels": {
            **numbers_only(context["suspects"]),
            "classes": [
                {"name": c["name"], "count": c["count"]} for c in context["suspects"]["classes"]
            ],
        },
        "notes": context["notes"],
        "sampling": context["sampling"],
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
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=percent, decimal=decimal, duration=duration, count=count, csp_hash=csp_hash
    )
    return environment.get_template("report.html.j2").render(**context)
