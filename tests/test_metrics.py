"""artgan.evaluation.metrics on hand-made arrays, each number worked out by hand."""

import numpy as np
import pytest

from artgan.evaluation.metrics import (
    feature_scores,
    l2_normalise,
    most_confused,
    named_scores,
    nearest_neighbours,
    per_class_scores,
    score,
)


def test_score_counts_top1_topk_and_macro_f1_by_hand():
    labels = np.array([0, 1, 2, 3, 3, 5])
    probabilities = np.full((6, 7), 0.01)
    for row, ranked in enumerate([[0], [2, 1], [2], [3], [0, 1, 2, 4, 5, 3], [5]]):
        for rank, cls in enumerate(ranked):
            probabilities[row, cls] = 0.9 - 0.1 * rank
    accuracy, top5, macro_f1 = score(labels, probabilities, classes=range(7))
    assert accuracy == pytest.approx(4 / 6)  # rows 1 and 4 are wrong
    assert top5 == pytest.approx(5 / 6)  # row 4's true class is 6th
    # present classes 0,1,2,3,5: F1 0 = 2/3 (1 right, 1 false positive), 1 = 0, 2 = 2/3,
    # 3 = 2/3 (1 of 2 found, no false positive), 5 = 1
    assert macro_f1 == pytest.approx((2 / 3 + 0 + 2 / 3 + 2 / 3 + 1) / 5)
    assert named_scores(labels, probabilities, range(7)) == pytest.approx(
        {"accuracy": accuracy, "top5_accuracy": top5, "macro_f1": macro_f1}
    )


def test_top5_only_where_the_data_has_more_than_5_classes():
    """4 of ArtGAN's 10 genres: top-5 would always be 1, so there is none; 6 of 10: top-5
    ranks among those 6, whatever the other 4 columns hold."""
    labels = np.array([1, 3])
    probabilities = np.zeros((2, 10))
    probabilities[:, [1, 3, 5, 8]] = [[0.7, 0.1, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]]
    assert score(labels, probabilities, [1, 3, 5, 8]) == (0.5, None, pytest.approx(1 / 3))
    assert named_scores(labels, probabilities, [1, 3, 5, 8])["top5_accuracy"] is None
    six = [0, 1, 3, 5, 8, 9]
    probabilities = np.zeros((2, 10))
    probabilities[:, 2] = 1.0  # a column outside the data's classes never counts
    probabilities[:, six] = [[0.2, 0.1, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]
    assert score(labels, probabilities, six)[1] == 0.5  # label 1 ranks 6th of 6, label 3 3rd


def test_per_class_scores_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    predicted = np.array([0, 1, 1, 1, 0])
    rows = per_class_scores(labels, predicted, ["a", "b", "c"])
    assert [r["class"] for r in rows] == ["a", "b", "c"] and [r["label"] for r in rows] == [
        0,
        1,
        2,
    ]
    a, b, c = rows
    assert (a["precision"], a["recall"], a["support"]) == (1 / 2, 1 / 2, 2)
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert b["support"] == 3
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0, 0, 0, 0)  # no data
    only = per_class_scores(labels, predicted, ["a", "b", "c"], classes=[1])
    assert only == [b]


def test_most_confused_lists_the_largest_off_diagonal_cells():
    matrix = np.array([[5, 3, 0], [1, 6, 0], [0, 4, 2]])
    pairs = most_confused(matrix, shown=[0, 1, 2], names=["a", "b", "c"], limit=2)
    assert pairs == [
        {"true": "c", "predicted": "b", "count": 4, "share": 4 / 6},
        {"true": "a", "predicted": "b", "count": 3, "share": 3 / 8},
    ]


def test_nearest_neighbours_are_by_cosine_and_exclude_the_row_itself():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    indices, distances = nearest_neighbours(features, k=1)
    assert indices[:, 0].tolist() == [1, 0, 3, 2]
    cosine = features[0] @ features[1] / np.linalg.norm(features[0]) / np.linalg.norm(features[1])
    assert distances[0, 0] == pytest.approx(1 - cosine)
    assert np.linalg.norm(l2_normalise(features), axis=1) == pytest.approx(np.ones(4))


def test_feature_scores_of_two_clean_clusters():
    features = np.array([[1, 0], [1, 0.1], [0.9, 0], [0, 1], [0.1, 1], [0, 0.9]], dtype=float)
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = feature_scores(features, labels, k=2)
    assert scores["knn_accuracy"] == 1.0 and scores["neighbour_agreement"] == 1.0
    assert scores["kmeans_purity"] == 1.0 and scores["nmi"] == pytest.approx(1.0)
    assert (scores["dim"], scores["k"]) == (2, 2)
