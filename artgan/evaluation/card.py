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

import numpy as np

from artgan.data.generators import model_input
from artgan.evaluation.metrics import (
    expected_calibration_error,
    named_scores,
    per_class_scores,
)

TIMED_BATCH = 32
TIMED_REPEATS = 3
NOT_MEASURED = "not measured in this run"


def inference_ms(model, pixels, batch=TIMED_BATCH, repeats=TIMED_REPEATS):
    """Median milliseconds per image of one forward pass over a batch of (up to `batch`)
    uint8 `pixels`, after one untimed warm-up pass; None for no pixels."""
    if len(pixels) == 0:
        return None
    images = model_input(np.asarray(pixels[:batch]))
    model([images], training=False)  # warm-up: graph tracing, memory allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(model([images], training=False))
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000 / len(images))


def card_facts(labels, probabilities, class_names, train_labels, milliseconds=None):
    """What a card reports that is measured rather than recorded, over the classes the
    training and validation labels have."""
    train_counts = np.bincount(np.asarray(train_labels, dtype=int), minlength=len(class_names))
    val_counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    classes = np.flatnonzero(train_counts + val_counts)
    return {"scores": named_scores(labels, probabilities, classes),
            "ece": expected_calibration_error(labels, probabilities),
            "per_class": per_class_scores(labels, probabilities.argmax(axis=1), class_names),
            "counts": {"train": train_counts.tolist(), "val": val_counts.tolist()},
            "inference_ms": milliseconds}


#: Characters that make Markdown (or the HTML it may hold) out of text inside a line.
MARKUP = re.compile(r"([\\`*_\[\]<>|~&])")


def text(value):
    """`value` as literal Markdown text: markup characters backslash-escaped, line breaks
    folded, so a class name or path cannot add links, HTML, emphasis or table cells."""
    return MARKUP.sub(r"\\\1", " ".join(str(value).split()))


def code(value):
    """`value` as a Markdown code span, fenced by more backticks than it holds."""
    value = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall("`+", value)), default=0) + 1)
    return f"{fence} {value} {fence}" if fence != "`" else f"`{value}`"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_card(metadata, facts, budget=None, trial=None):
    """The Markdown card of one saved model. `metadata`: what `save_model` stored;
    `facts`: `card_facts`; `budget`: the spec's budget as a dict; `trial`: its trials-table
    row as a dict (epochs, wall seconds, parameters)."""
    budget, trial = budget or {}, trial or {}
    names = metadata["class_names"]
    scores, counts = facts["scores"], facts["counts"]
    size = metadata["input_size"]
    backbone = metadata.get("backbone") or "scratch"
    weights = metadata.get("backbone_weights")
    milliseconds = facts.get("inference_ms")
    timing = (f"{milliseconds:.2f} ms per image (forward pass of a batch of {TIMED_BATCH}, "
              "median of 3, on the machine that saved the model)"
              if milliseconds is not None else NOT_MEASURED)
    labels = metadata.get("labels", {})
    hps = sorted((k, v) for k, v in (metadata.get("hyperparameters") or {}).items()
                 if not k.startswith("tuner/"))
    used = [n for n, tr in zip(names, counts["train"]) if tr > 0]
    lines = [
        f"# Model card: {metadata.get('task', 'artgan')} model {metadata.get('rank', '')}".rstrip(),
        "",
        f"Trial {metadata.get('trial_id')} of an artgan KerasTuner search, ranked "
        f"{metadata.get('rank')} by {metadata.get('objective')} "
        f"({_number(metadata.get('score'))}).",
        "",
        "## Data and splits",
        "",
        f"- train: {code(labels.get('train', '?'))} ({sum(counts['train'])} images used)",
        f"- validation: {code(labels.get('val', '?'))} ({sum(counts['val'])} images used)",
        f"- classes: {code(labels.get('classes', '?'))}; images: "
        f"{code(labels.get('images', '?'))}",
        "",
        table(["class", "train", "validation"],
              [(n, tr, va) for n, tr, va in zip(names, counts["train"], counts["val"])
               if tr or va]),
        "",
        "## Metrics (validation split, re-evaluated when the card was written)",
        "",
        f"accuracy {scores['accuracy']:.4f} · "
        + (f"top-5 accuracy {scores['top5_accuracy']:.4f} · "
           if scores["top5_accuracy"] is not None else "")
        + f"macro-F1 {scores['macro_f1']:.4f} · expected calibration error {facts['ece']:.4f}",
        "",
        table(["class", "precision", "recall", "F1", "support"],
              [(c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                c["support"]) for c in facts["per_class"] if c["support"]]),
        "",
        "## Input and preprocessing",
        "",
        f"- RGB image, {size} x {size} px, resized with `{metadata.get('resize')}` "
        "(letterbox: the whole painting, padded; crop: the centre square)",
        "- pixels scaled to [0, 1] (uint8 / 255); any backbone normalisation is inside the model",
        f"- inference time: {timing}",
        "",
        "## Model",
        "",
        f"- backbone: {code(backbone)}; weights: "
        + (text(weights) if weights
           else "none pretrained (trained from scratch on the train split)"),
        f"- parameters: {_number(trial.get('params'))}",
        f"- feature layers: {', '.join(metadata.get('feature_layers', []))}",
        "",
        table(["hyperparameter", "value"], hps),
        "",
        "## Training budget",
        "",
        f"- epochs run: {_number(trial.get('epochs'))} (budget {budget.get('epochs', '?')}, "
        f"early stopping on {metadata.get('objective')})",
        f"- wall time of the trial: {_seconds(trial.get('wall_seconds'))}",
        f"- search: {budget.get('max_trials', '?')} trials; images: "
        f"{budget.get('max_train_images') or 'all'} training, "
        f"{budget.get('max_val_images') or 'all'} validation",
        "",
        "## Known limits",
        "",
        f"- it only knows these {len(used)} classes: {', '.join(map(text, used))}; any "
        "painting gets one of them",
        f"- it sees the painting at {size} x {size} px: fine brushwork and small details are "
        "lost; very elongated paintings are padded or cropped",
        "- the scores above are on the validation split the search selected models with "
        "(optimistic: no separate test split)",
        "- labels come from WikiArt via ArtGAN; some paintings carry questionable or several "
        "labels (see the report's suspect-labels section)",
        "",
    ]
    return "\n".join(lines)


def _number(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "not recorded"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{int(value):,}"


def _seconds(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "not recorded"
    return f"{float(value):.1f} s"
