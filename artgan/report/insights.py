"""The report's sections that answer the next question: accuracy against cost (Pareto
fronts), calibration of the best model, where it looks (examples with Grad-CAM), and
paintings whose label looks wrong.

Each `*_section` returns plain data for the template and says, in `note`, what it cannot
show and why (old run folders have no inference times, a run without saved models has no
predictions)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from artgan.errors import ArtganError
from artgan.evaluation.metrics import (
    NEIGHBOURS,
    SUSPECT_AGREEMENT,
    SUSPECT_PROBABILITY,
    expected_calibration_error,
    label_suspicion,
    nearest_neighbours,
    pareto_front,
    reliability_bins,
)
from artgan.report.insight_figures import reliability_figure, tradeoff_figure
from artgan.report.output import image_uri

PARAMS = "parameters"
TIME = "inference ms / image"
EXAMPLES_PER_KIND = 3
SUSPECTS_PER_CLASS = 6
SUSPECTS_FILE = "suspect_labels.csv"
NOT_MEASURED = (
    "Inference time per image: not measured in this run (artgan measures it when "
    "it saves the best models; this run folder predates that), so only the "
    "parameter-count front is shown."
)


def numbers(frame, column):
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(float)


# ----------------------------------------------------------------------------- accuracy vs cost


def tradeoff_section(run, writer):
    """Objective against parameter count and measured inference time, non-dominated trials
    highlighted and listed (per cost, and on both costs together)."""
    finished = run.finished.reset_index(drop=True)
    maximise = run.spec.tuner.resolved_direction == "max"
    score = numbers(finished, "score")
    costs = {PARAMS: numbers(finished, "params"), TIME: numbers(finished, "inference_ms")}
    timed = int((~np.isnan(costs[TIME])).sum())
    note = None if timed else NOT_MEASURED
    if not timed:
        costs.pop(TIME)
    if np.isnan(costs[PARAMS]).all():
        return {
            "note": "No trial recorded its parameter count: no trade-off to show.",
            "rows": [],
            "figure": None,
            "timed": 0,
        }
    fronts = {name: pareto_front(score, values, maximise) for name, values in costs.items()}
    both = (
        pareto_front(score, np.column_stack(list(costs.values())), maximise)
        if len(costs) > 1
        else fronts[PARAMS]
    )
    rows = []
    for i, trial in enumerate(finished.to_dict("records")):
        if not any(front[i] for front in fronts.values()) and not both[i]:
            continue
        rows.append(
            {
                "trial_id": trial["trial_id"],
                "score": score[i],
                "params": costs[PARAMS][i],
                "inference_ms": (
                    costs[TIME][i] if TIME in costs and not np.isnan(costs[TIME][i]) else None
                ),
                "on": [name for name, front in fronts.items() if front[i]],
                "both": bool(both[i] and len(costs) > 1),
            }
        )
    rows.sort(key=lambda r: np.nan_to_num(r["params"], nan=np.inf))
    figure = tradeoff_figure(score, costs, fronts, run.objective, finished["trial_id"])
    return {
        "note": note,
        "rows": rows,
        "timed": timed,
        "trials": len(finished),
        "costs": list(costs),
        "figure": writer.figure(
            figure, "pareto", f"{run.objective} against " + " and ".join(costs)
        ),
    }


# ----------------------------------------------------------------------------- calibration


def calibration_section(evaluated, writer):
    """Reliability diagram and expected calibration error of the best model (and the ECE of
    the others)."""
    if not evaluated:
        return {
            "note": "No saved model, so no predicted probabilities to calibrate.",
            "models": [],
        }
    models = [
        {
            "rank": m.rank,
            "trial_id": m.trial_id,
            "accuracy": m.scores["accuracy"],
            "ece": expected_calibration_error(m.split.labels, m.probabilities),
            "mean_confidence": float(m.probabilities.max(axis=1).mean()),
        }
        for m in evaluated
    ]
    best = evaluated[0]
    table = reliability_bins(best.split.labels, best.probabilities)
    figure = reliability_figure(table, models[0]["ece"])
    bins = [
        {"low": float(lo), "high": float(hi), "images": int(n), "confidence": c, "accuracy": a}
        for lo, hi, n, c, a in zip(
            table["edges"][:-1],
            table["edges"][1:],
            table["count"],
            table["confidence"],
            table["accuracy"],
        )
    ]
    return {
        "note": None,
        "models": models,
        "ece": models[0]["ece"],
        "bins": bins,
        "figure": writer.figure(figure, "calibration_model_1", "reliability diagram of model 1"),
    }


# ----------------------------------------------------------------------------- examples, Grad-CAM


def examples_section(evaluated, thumbnails):
    """Per class: the most confident correct and the most confident wrong predictions, each
    with the Grad-CAM heat map of its predicted class overlaid."""
    if not evaluated:
        return {"note": "No saved model, so no predictions to show.", "classes": []}
    best = evaluated[0]
    frame = best.predictions
    root = best.split.table.image_root
    chosen_rows, classes = [], []
    for label in sorted(frame["label"].unique()):
        own = frame[frame["label"] == label].sort_values("confidence", ascending=False)
        kinds = {}
        for kind, chosen in (
            ("correct", own[own["predicted"] == label]),
            ("wrong", own[own["predicted"] != label]),
        ):
            kinds[kind] = [
                {
                    "path": r.path,
                    "predicted": r.predicted_name,
                    "confidence": float(r.confidence),
                    "row": int(r.Index),
                    "thumbnail": thumbnails(root / r.path),
                    "heat": None,
                }
                for r in chosen.head(EXAMPLES_PER_KIND).itertuples()
            ]
            chosen_rows += kinds[kind]
        classes.append({"name": best.metadata["class_names"][label], "images": len(own), **kinds})
    layer, note = heat_maps(best, chosen_rows)
    return {"note": None, "classes": classes, "rank": best.rank, "layer": layer, "heat_note": note}


def heat_maps(best, examples):
    """Fill each example's `heat` with its Grad-CAM overlay; (layer, None) or (layer, why
    there are none)."""
    from artgan.model.crnn import CONV_FEATURES
    from artgan.model.gradcam import gradcam, overlay

    layer = CONV_FEATURES
    if best.model is None or not examples:
        return layer, "No model or no example to explain."
    rows = np.array([e["row"] for e in examples])
    pixels = np.asarray(best.split.pixels[rows])
    try:
        heat, _ = gradcam(
            best.model, pixels, layer, classes=best.probabilities[rows].argmax(axis=1)
        )
    except ArtganError as error:
        return layer, f"No Grad-CAM heat maps: {error}"
    for example, image, cam in zip(examples, pixels, heat):
        example["heat"] = image_uri(overlay(image, cam))
    return layer, None


# ----------------------------------------------------------------------------- suspect labels


TWO_LABELS = re.compile(r"\(label (\d+), here (\d+)\)")


def paintings_with_two_labels(tables, class_names):
    """Paths listed with different labels: twice in one label file (the later row was left
    out, its reason says both labels) or in two of the `tables` ({role: LabelTable})."""
    found = {}

    def add(path, labels, where):
        entry = found.setdefault(path, {"path": path, "labels": [], "where": []})
        for label in labels:
            name = class_names[label] if 0 <= label < len(class_names) else str(label)
            if name not in entry["labels"]:
                entry["labels"].append(name)
        entry["where"].append(where)

    for role, table in tables.items():
        for row in table.skipped:
            match = TWO_LABELS.search(row.reason) if row.kind == "duplicate path" else None
            if match and match[1] != match[2]:
                add(row.path, [int(match[1]), int(match[2])], f"{role} line {row.line}")
    roles = list(tables)
    for i, first in enumerate(roles):
        for second in roles[i + 1 :]:
            both = tables[first].frame.merge(tables[second].frame, on="path")
            for row in both[both["label_x"] != both["label_y"]].itertuples():
                add(
                    row.path,
                    [int(row.label_x), int(row.label_y)],
                    f"{first} line {row.line_x}, {second} line {row.line_y}",
                )
    return sorted(found.values(), key=lambda entry: entry["path"])


def suspect_section(evaluated, layer, writer, thumbnails, data=None):
    """Paintings whose label both the best model and their feature neighbours disagree with,
    per class; all of them in `suspect_labels.csv`. Also the paths the label files list
    with two labels."""
    two = (
        []
        if data is None
        else paintings_with_two_labels({"train": data.train, "val": data.val}, data.class_names)
    )
    if not evaluated:
        return {
            "note": "No saved model, so no predictions to question the labels with.",
            "classes": [],
            "two_labels": two,
        }
    sampled_from = len(evaluated[0].split)
    best = evaluated[0].sampled()
    labels, names = best.split.labels, best.metadata["class_names"]
    if len(labels) <= NEIGHBOURS:
        return {
            "note": f"Only {len(labels)} validation image(s): too few for neighbours.",
            "classes": [],
            "two_labels": two,
        }
    layer = layer if layer in best.features else next(iter(best.features))
    indices, _ = nearest_neighbours(best.features[layer], NEIGHBOURS)
    verdict = label_suspicion(labels, best.probabilities, labels[indices])
    frame = best.predictions[["path", "line", "label", "label_name"]].copy()
    frame["probability_of_label"] = verdict["probability"]
    frame["predicted_name"] = [names[i] for i in verdict["predicted"]]
    frame["neighbour_agreement"] = verdict["agreement"]
    frame["neighbour_majority"] = [names[i] for i in verdict["neighbour_majority"]]
    frame["score"] = verdict["score"]
    suspects = frame[verdict["suspect"]].sort_values(
        ["label", "score"], ascending=[True, False], kind="stable"
    )
    writer.csv(suspects, SUSPECTS_FILE)
    root = best.split.table.image_root
    classes = []
    for label, group in suspects.groupby("label", sort=True):
        classes.append(
            {
                "name": names[label],
                "count": len(group),
                "images": int((labels == label).sum()),
                "shown": [
                    {
                        "path": r.path,
                        "predicted": r.predicted_name,
                        "probability": float(r.probability_of_label),
                        "agreement": float(r.neighbour_agreement),
                        "majority": r.neighbour_majority,
                        "thumbnail": thumbnails(root / r.path),
                    }
                    for r in group.head(SUSPECTS_PER_CLASS).itertuples()
                ],
            }
        )
    return {
        "note": None,
        "classes": classes,
        "count": int(len(suspects)),
        "images": int(len(labels)),
        "layer": layer,
        "k": int(indices.shape[1]),
        "sampled_from": sampled_from if sampled_from > len(labels) else None,
        "max_probability": SUSPECT_PROBABILITY,
        "max_agreement": SUSPECT_AGREEMENT,
        "file": SUSPECTS_FILE,
        "rank": best.rank,
        "two_labels": two,
    }
