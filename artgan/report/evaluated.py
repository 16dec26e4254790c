"""The report's evaluation of a run: its best models re-run on the search's validation split
(read from the search's cached activations where the backbone was frozen, else on pixels,
sampled at full size: `artgan.report.sampling`) and the reference baselines beside them.
What the sections of `artgan.report.sections` and `artgan.report.insights` show is computed
here, once per report."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artgan.data.splits import SplitImages, load_split_images
from artgan.evaluation.baselines import handcrafted_features
from artgan.evaluation.metrics import named_scores
from artgan.model.saved import load_model
from artgan.report.sampling import sample_of, sample_rows

if TYPE_CHECKING:
    import keras


@dataclass
class Evaluated:
    """A saved best model re-run on the search's validation split (or a stratified sample
    of it: `population` is the split's size)."""

    rank: int
    path: Path
    metadata: dict[str, Any]
    split: SplitImages  # at the model's input size
    probabilities: np.ndarray
    predictions: pd.DataFrame
    features: dict[str, np.ndarray]  # layer name -> (N, D) float32
    scores: dict[str, float | None] = field(default_factory=dict)  # accuracy, top5, macro_f1
    model: keras.Model | None = None  # for Grad-CAM
    population: int = 0  # usable validation images; more than len(split) if sampled
    sample: np.ndarray | None = None  # positions in `split` the feature sections use (None: all)

    @property
    def trial_id(self) -> str:
        return str(self.metadata.get("trial_id"))

    def sampled(self):
        """This evaluation restricted to `sample`, for the sections that compare every pair."""
        rows = self.sample
        if rows is None or len(rows) == len(self.split):
            return self
        return dataclasses.replace(
            self,
            split=self.split.subset(rows),
            probabilities=self.probabilities[rows],
            predictions=self.predictions.iloc[rows].reset_index(drop=True),
            features={name: values[rows] for name, values in self.features.items()},
            sample=np.arange(len(rows)),
        )


def evaluate_models(run, data, top, layer):
    """Predictions and features of the best `top` saved models, best first: on every
    validation painting when the model reads activations of its frozen backbone that the
    search cached, else through the whole model on a stratified sample (`sample_rows`)."""
    from artgan.evaluation.predict import predictions_frame, scored_classes
    from artgan.model.crnn import default_feature_layer, feature_layers
    from artgan.model.features import cached_taps, predict_from_embeddings, predict_with_features

    evaluated = []
    for rank, path in enumerate(run.models[:top], start=1):
        model, metadata = load_model(path)
        chosen = layer or default_feature_layer(model)
        layers = list(dict.fromkeys([chosen, *feature_layers(model)]))
        split = run.val_split(data, metadata)
        population, sample = len(split), sample_rows(split.labels, run.spec.seed)
        cached = cached_taps(model, metadata, split)
        if cached:
            probabilities, features = predict_from_embeddings(model, *cached, layers)
        else:  # the backbone runs on every painting scored: score a sample
            split, sample = sample_of(split, run.spec.seed), None
            probabilities, features = predict_with_features(model, split, layers)
        names, classes = metadata["class_names"], scored_classes(metadata, split.labels)
        evaluated.append(
            Evaluated(
                rank,
                path,
                metadata,
                split,
                probabilities,
                predictions_frame(split, probabilities, names, classes),
                features,
                named_scores(split.labels, probabilities, classes),
                model,
                population,
                sample,
            )
        )
    return evaluated


# ----------------------------------------------------------------------------- 1. leaderboard


def baselines_section(run, data, size):
    """Majority class and handcrafted features + logistic regression, on the same split
    (the latter on stratified samples of both splits: `sample_rows`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    on_error, resize = run.spec.data.on_error, run.spec.data.resize
    train, val = (
        load_split_images(t, size, resize, on_error, progress=False)
        for t in (data.train, data.val)
    )
    num_classes = len(data.class_names)
    frequencies = np.bincount(train.labels, minlength=num_classes) / len(train)
    majority = np.tile(frequencies, (len(val), 1))
    rows = [
        {
            "name": "majority class",
            "detail": f"always predicts {data.class_names[int(frequencies.argmax())]}",
            **named_scores(val.labels, majority, data.classes),
        }
    ]

    started = time.perf_counter()
    totals = {"train_total": len(train), "val_total": len(val)}
    train, val = (sample_of(split, run.spec.seed) for split in (train, val))
    sampled = (
        f", trained on {len(train):,} of {totals['train_total']:,} paintings"
        if len(train) < totals["train_total"]
        else ""
    )
    train_features = handcrafted_features(train.pixels)
    val_features = handcrafted_features(val.pixels)
    if len(np.unique(train.labels)) > 1:
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        classifier.fit(train_features, train.labels)
        probabilities = np.zeros((len(val), num_classes))
        probabilities[:, classifier.classes_] = classifier.predict_proba(val_features)
        rows.append(
            {
                "name": "colour+texture LR",
                "detail": f"logistic regression on {train_features.shape[1]} "
                f"training-free colour/texture features, {size} px{sampled}",
                "seconds": time.perf_counter() - started,
                **named_scores(val.labels, probabilities, data.classes),
            }
        )
    return {
        "rows": rows,
        "size": size,
        "train_images": len(train),
        "val_images": len(val),
        **totals,
        "val_features": val_features,
        "val_labels": val.labels,
    }
