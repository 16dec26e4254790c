"""Model cards: `best/model_N.md` beside each saved model, saying what it was trained on,
how well it does overall and per class, what input it expects, where its backbone's
weights come from, what training cost, and what it does not cover.

`card_facts` measures (scores of the model's probabilities on its validation split, its
inference time per image); `model_card` writes the Markdown from metadata and facts, so
the search (when it saves models) and the report (for older run folders) write the same
card. `inference_ms` times the bare forward pass of a batch, after a warm-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
from numpy.typing import ArrayLike

from artgan.data.generators import model_input
from artgan.evaluation.metrics import (
    expected_calibration_error,
    named_scores,
    per_class_scores,
)
from artgan.formatting import duration, number
from artgan.model.backbones import SCRATCH
from artgan.runfolder import searched

if TYPE_CHECKING:
    import keras

TIMED_BATCH = 32
TIMED_REPEATS = 3
NOT_RECORDED = "not recorded"


def inference_ms(
    model: keras.Model, pixels: np.ndarray, batch: int = TIMED_BATCH, repeats: int = TIMED_REPEATS
) -> float | None:
    """Median milliseconds per image of `model.predict_on_batch` (the compiled forward pass
    that `predict` runs) over a batch of (up to `batch`) uint8 `pixels`, after one untimed
    warm-up pass; None for no pixels."""
    if len(pixels) == 0:
        return None
    images = model_input(np.asarray(pixels[:batch]))
    model.predict_on_batch(images)  # warm-up: graph tracing, memory allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(model.predict_on_batch(images))
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000 / len(images))


def card_facts(
    labels: ArrayLike,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    train_labels: ArrayLike,
    milliseconds: float | None = None,
) -> dict[str, Any]:
    """What a card reports that is measured rather than recorded, over the classes the
    training and validation labels have."""
    train_counts = np.bincount(np.asarray(train_labels, dtype=int), minlength=len(class_names))
    val_counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    classes = np.flatnonzero(train_counts + val_counts)
    return {
        "scores": named_scores(labels, probabilities, classes),
        "ece": expected_calibration_error(labels, probabilities),
        "per_class": per_class_scores(labels, probabilities.argmax(axis=1), class_names),
        "counts": {"train": train_counts.tolist(), "val": val_counts.tolist()},
        "inference_ms": milliseconds,
    }


TEMPLATES = Path(__file__).parent / "templates"
#: Characters that make Markdown (or the HTML it may hold) out of text inside a line.
MARKUP = re.compile(r"([\\`*_\[\]<>|~&])")


class Markdown(str):
    """Text that is Markdown already (a code span), written into the card as it is."""


def text(value: object) -> str:
    """`value` as literal Markdown text: markup characters backslash-escaped, line breaks
    folded, so a class name or path cannot add links, HTML, emphasis or table cells."""
    if isinstance(value, Markdown):
        return value
    return MARKUP.sub(r"\\\1", " ".join(str(value).split()))


def code(value: object) -> Markdown:
    """`value` as a Markdown code span, fenced by more backticks than it holds."""
    value = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall("`+", value)), default=0) + 1)
    return Markdown(f"{fence} {value} {fence}" if fence != "`" else f"`{value}`")


def model_card(
    metadata: dict[str, Any],
    facts: dict[str, Any],
    budget: dict | None = None,
    trial: dict | None = None,
) -> str:
    """The Markdown card of one saved model (`templates/model_card.md.j2`). `metadata`:
    what `save_model` stored; `facts`: `card_facts`; `budget`: the spec's budget as a dict;
    `trial`: its trials-table row as a dict (epochs, wall seconds, parameters)."""
    names, counts = metadata["class_names"], facts["counts"]
    context = {
        "task": metadata.get("task") or "artgan",
        "rank": metadata.get("rank") or "",
        "trial_id": metadata.get("trial_id"),
        "members": metadata.get("members"),  # an ensemble's trials, best first
        "objective": metadata.get("objective"),
        "score": metadata.get("score"),
        "files": {
            role: metadata.get("labels", {}).get(role, "?")
            for role in ("train", "val", "classes", "images")
        },
        "counts": counts,
        "class_counts": [
            (n, tr, va) for n, tr, va in zip(names, counts["train"], counts["val"]) if tr or va
        ],
        "scores": facts["scores"],
        "ece": facts["ece"],
        "per_class": [c for c in facts["per_class"] if c["support"]],
        "size": metadata["input_size"],
        "resize": metadata.get("resize"),
        "milliseconds": facts.get("inference_ms"),
        "timed_batch": TIMED_BATCH,
        "timed_repeats": TIMED_REPEATS,
        "backbone": metadata.get("backbone") or SCRATCH,
        "weights": metadata.get("backbone_weights"),
        "feature_layers": metadata.get("feature_layers", []),
        "hyperparameters": sorted(
            (k, v) for k, v in (metadata.get("hyperparameters") or {}).items() if searched(k)
        ),
        "trial": {"epochs": None, "wall_seconds": None, "params": None, **(trial or {})},
        "budget": {
            "epochs": "?",
            "max_trials": "?",
            "max_train_images": None,
            "max_val_images": None,
            **(budget or {}),
        },
        "used": [n for n, tr in zip(names, counts["train"]) if tr > 0],
    }
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=text,
    )
    environment.filters.update(
        code=code,
        number=lambda v: number(v, blank=NOT_RECORDED),
        duration=lambda v: duration(v, blank=NOT_RECORDED),
    )
    return environment.get_template("model_card.md.j2").render(context)
