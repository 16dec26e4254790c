"""Predict and evaluate with a saved model, using the preprocessing stored inside it.

`evaluate_model` scores any ArtGAN-format label file and writes per-image predictions as
CSV (the input reports use); `predict_files` ranks classes for loose image files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artgan.data.generators import ImageLabelGenerator, model_input
from artgan.data.images import ImageError, decode_image
from artgan.data.labels import load_labels, skipped_report
from artgan.data.splits import load_split_images
from artgan.errors import ArtganError
from artgan.evaluation.metrics import TOP_K, score
from artgan.files import csv_text, write_text_atomic
from artgan.model.saved import load_model, model_classes

if TYPE_CHECKING:
    import keras

    from artgan.data.labels import SkippedRow
    from artgan.data.splits import SplitImages


def predict_files(
    model_path: str | Path,
    image_paths: Iterable[str | Path],
    top: int = TOP_K,
) -> Iterator[tuple[str | Path, list[tuple[str, float]] | str]]:
    """Yield (path, [(class name, probability), ...]) best first, among the classes the
    model was trained on, or (path, reason)."""
    if top < 1:
        raise ArtganError(f"`top` must be at least 1, got {top}")
    model, metadata = load_model(model_path)
    names, classes = metadata["class_names"], np.asarray(model_classes(metadata))
    for path in image_paths:
        try:
            image = decode_image(path, metadata["input_size"], metadata["resize"])
        except ImageError as error:
            yield path, str(error)
            continue
        probabilities = model.predict(model_input(image[None]), verbose=0)[0]
        best = classes[np.argsort(probabilities[classes], kind="stable")[::-1][:top]]
        yield path, [(names[i], float(probabilities[i])) for i in best]


@dataclass
class Evaluation:
    """Scores of a model on one label file, plus what could not be scored and why."""

    accuracy: float
    top5_accuracy: float | None  # None unless there are more than 5 classes
    macro_f1: float
    scored: int
    skipped: list[SkippedRow]
    class_names: list[str]  # the classes scored over
    predictions_file: Path
    predictions: pd.DataFrame
    written: bool = False

    def write_predictions(self) -> Path:
        """Write the per-image predictions CSV (ArtganError naming the file if it cannot)."""
        write_text_atomic(self.predictions_file, csv_text(self.predictions))
        self.written = True
        return self.predictions_file

    def summary(self) -> str:
        lines = [
            f"images scored    {self.scored}",
            f"images skipped   {len(self.skipped)}",
            f"classes          {len(self.class_names)} ({', '.join(self.class_names)})",
            f"accuracy         {self.accuracy:.4f}",
            *(
                [f"top-{TOP_K} accuracy   {self.top5_accuracy:.4f}"]
                if self.top5_accuracy is not None
                else []
            ),
            f"macro-F1         {self.macro_f1:.4f}",
        ]
        if self.written:
            lines.append(f"predictions      {self.predictions_file}")
        if self.skipped:
            lines += ["", skipped_report(self.skipped)]
        return "\n".join(lines)


def predict_split(
    model: keras.Model,
    split: SplitImages,
    batch_size: int = 64,
    metadata: dict[str, Any] | None = None,
) -> np.ndarray:
    """Class probabilities for every usable image of a `SplitImages`. With the saved model's
    `metadata`, a model whose frozen backbone's activations of `split` a search cached reads
    those (`artgan.model.features.cached_taps`) instead of running the backbone again."""
    from artgan.model.features import cached_taps, predict_from_embeddings

    cached = cached_taps(model, metadata, split) if metadata else None
    if cached:
        bottom, embeddings = cached
        return predict_from_embeddings(model, bottom, embeddings, [])[0]
    return model.predict(ImageLabelGenerator(split, batch_size), verbose=0)


def scored_classes(metadata: dict[str, Any], labels: np.ndarray) -> np.ndarray:
    """The class ids to score and show: the model's classes and any other label present."""
    return np.union1d(model_classes(metadata), labels).astype(int)


def predictions_frame(
    split: SplitImages,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    classes: Iterable[int],
) -> pd.DataFrame:
    """One row per image: path, line, true and predicted class (ArtGAN ids and names),
    confidence, and the probability of each of `classes` (the data's)."""
    predicted = probabilities.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "path": split.paths,
            "line": split.table.frame["line"].to_numpy()[split.rows],
            "label": split.labels,
            "label_name": [class_names[i] for i in split.labels],
            "predicted": predicted,
            "predicted_name": [class_names[i] for i in predicted],
            "confidence": probabilities.max(axis=1),
        }
    )
    for index in classes:
        frame[f"p/{class_names[index]}"] = probabilities[:, index]
    return frame


def evaluate_model(
    model_path: str | Path,
    labels: str | Path,
    images: str | Path | None,
    classes: str | Path | None = None,
    out: str | Path | None = None,
    on_error: str = "raise",
    write: bool = True,
) -> Evaluation:
    """Score a saved model on a label file; save predictions next to the model by default
    (`write=False`: later, by `Evaluation.write_predictions`, so scores come first)."""
    model, metadata = load_model(model_path)
    class_names = metadata["class_names"]
    if classes is not None:
        table = load_labels(labels, classes, images, on_error=on_error)
        if table.class_names != class_names:
            raise ArtganError(
                f"{classes}: class names differ from those the model was trained on "
                f"({len(table.class_names)} vs {len(class_names)} classes)"
            )
    else:
        table = load_labels(labels, class_names, images, on_error=on_error)
    split = load_split_images(table, metadata["input_size"], metadata["resize"], on_error)
    if len(split) == 0:
        raise ArtganError(f"{labels}: no image could be scored")
    probabilities = predict_split(model, split, metadata=metadata)
    scored = scored_classes(metadata, split.labels)
    accuracy, top5, macro_f1 = score(split.labels, probabilities, scored)
    out = Path(out) if out else Path(model_path).with_suffix(".predictions.csv")
    result = Evaluation(
        accuracy,
        top5,
        macro_f1,
        len(split),
        list(table.skipped) + split.skipped,
        [class_names[i] for i in scored],
        out,
        predictions_frame(split, probabilities, class_names, scored),
    )
    if write:
        result.write_predictions()
    return result
