"""Scores from arrays: class probabilities, confusion matrices and feature vectors in, numbers
out (no files, no models), so each is checked on hand-made arrays in milliseconds."""

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

TOP_K = 5
SCORES = ("accuracy", "top5_accuracy", "macro_f1")
NEIGHBOURS = 5  # k of the k-NN accuracy and of the neighbour thumbnails


def score(
    labels: ArrayLike, probabilities: np.ndarray, classes: ArrayLike
) -> tuple[float, float | None, float]:
    """accuracy, top-5 accuracy and macro-F1 (scikit-learn). `classes`: the class ids the
    data has (columns of `probabilities`; the model gives the others 0). Top-5 accuracy is
    None unless there are more than 5 classes: with 5 or fewer it is always 1."""
    classes = np.asarray(classes)
    predicted = probabilities.argmax(axis=1)
    top5 = None
    if len(classes) > TOP_K:
        top5 = top_k_accuracy_score(labels, probabilities[:, classes], k=TOP_K, labels=classes)
    present = np.unique(labels)
    macro_f1 = f1_score(labels, predicted, labels=present, average="macro", zero_division=0)
    return accuracy_score(labels, predicted), top5, macro_f1


def l2_normalise(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def named_scores(
    labels: ArrayLike, probabilities: np.ndarray, classes: ArrayLike
) -> dict[str, float | None]:
    """`score` as floats (or None) under the names metrics.json and the report template use."""
    values = score(labels, probabilities, classes)
    return {name: None if value is None else float(value) for name, value in zip(SCORES, values)}


def per_class_scores(
    labels: ArrayLike,
    predicted: ArrayLike,
    class_names: Sequence[str],
    classes: ArrayLike | None = None,
) -> list[dict[str, Any]]:
    """[{label, class, precision, recall, f1, support}] per class id in `classes` (default:
    every class of `class_names`), from true and predicted class ids."""
    classes = np.arange(len(class_names)) if classes is None else np.asarray(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return [
        {
            "label": int(c),
            "class": class_names[c],
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]


def most_confused(
    matrix: np.ndarray, shown: Sequence[int], names: Sequence[str], limit: int = 5
) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: (true, predicted, count, share of the true class)."""
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, 0)
    totals = matrix.sum(axis=1)
    pairs = []
    for flat in np.argsort(-off, axis=None, kind="stable")[:limit]:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] <= 0:
            break
        pairs.append(
            {
                "true": names[shown[i]],
                "predicted": names[shown[j]],
                "count": int(matrix[i, j]),
                "share": float(matrix[i, j] / totals[i]),
            }
        )
    return pairs


def nearest_neighbours(features: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
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


def feature_scores(
    features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS
) -> dict[str, float | int]:
    """k-NN accuracy (leave-one-out vote), neighbour agreement, k-means purity and NMI."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    indices, _ = nearest_neighbours(features, k)
    neighbour_labels = labels[indices]
    votes = [Counter(row).most_common(1)[0][0] for row in neighbour_labels.tolist()]
    clusters = KMeans(n_clusters=len(np.unique(labels)), n_init=4, random_state=0).fit_predict(
        l2_normalise(features)
    )
    purity = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters))
    return {
        "dim": int(features.shape[1]),
        "k": int(indices.shape[1]),
        "knn_accuracy": float(np.mean(np.asarray(votes) == labels)),
        "neighbour_agreement": float(np.mean(neighbour_labels == labels[:, None])),
        "kmeans_purity": float(purity / len(labels)),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
    }


# ----------------------------------------------------------------------------- trade-offs


def pareto_front(objective: ArrayLike, costs: ArrayLike, maximise: bool = True) -> np.ndarray:
    """Boolean mask of the non-dominated rows: no other row is at least as good on the
    objective and every cost (costs are minimised) and strictly better on one. Rows with a
    missing (NaN) value are never on the front."""
    score = np.asarray(objective, dtype=float)
    score = score if maximise else -score
    costs = np.asarray(costs, dtype=float).reshape(len(score), -1)
    values = np.column_stack([-score, costs])  # every column minimised
    usable = ~np.isnan(values).any(axis=1)
    front = np.zeros(len(score), dtype=bool)
    for i in np.flatnonzero(usable):
        others = values[usable]
        dominated = np.all(others <= values[i], axis=1) & np.any(others < values[i], axis=1)
        front[i] = not dominated.any()
    return front


def correlation(x: ArrayLike, y: ArrayLike) -> float | None:
    """Pearson correlation of the rows where both are present; None if either is constant
    or fewer than 3 rows remain."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------- calibration

CALIBRATION_BINS = 10


def reliability_bins(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = CALIBRATION_BINS
) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin (first bin [0, 1/bins], then (lo, hi]): images,
    mean confidence (top-1 probability) and accuracy (NaN for an empty bin)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        accuracy = np.bincount(which, correct.astype(float), bins) / counts
    return {"edges": edges, "count": counts, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(
    labels: ArrayLike, probabilities: ArrayLike, bins: int = CALIBRATION_BINS
) -> float:
    """ECE: the image-weighted mean gap |accuracy - confidence| over `reliability_bins`."""
    table = reliability_bins(labels, probabilities, bins)
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float(np.sum(gaps * table["count"][used]) / table["count"].sum())


# ----------------------------------------------------------------------------- suspect labels

SUSPECT_PROBABILITY = 0.2  # the model gives the label at most this probability ...
SUSPECT_AGREEMENT = 0.5  # ... and fewer than this share of the neighbours share it


def label_suspicion(
    labels: ArrayLike,
    probabilities: ArrayLike,
    neighbour_labels: ArrayLike,
    max_probability: float = SUSPECT_PROBABILITY,
    max_agreement: float = SUSPECT_AGREEMENT,
) -> dict[str, np.ndarray]:
    """Per image: the model's probability of the given label, the share of its feature
    neighbours (`neighbour_labels`, (N, k)) with that label, the neighbours' majority label,
    whether both disagree with the label (`suspect`), and a score (higher: more suspect,
    (1 - probability) * (1 - agreement))."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=float)
    neighbour_labels = np.asarray(neighbour_labels)
    given = probabilities[np.arange(len(labels)), labels]
    agreement = (neighbour_labels == labels[:, None]).mean(axis=1)
    majority = np.array(
        [Counter(row).most_common(1)[0][0] for row in neighbour_labels.tolist()], dtype=int
    ).reshape(len(labels))
    suspect = (given <= max_probability) & (agreement < max_agreement)
    return {
        "probability": given,
        "agreement": agreement,
        "neighbour_majority": majority,
        "predicted": probabilities.argmax(axis=1),
        "suspect": suspect,
        "score": (1 - given) * (1 - agreement),
    }
