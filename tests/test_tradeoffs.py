"""Trade-off, calibration and suspect-label metrics on hand-made arrays (milliseconds), and
the check for paintings listed with two labels."""

import numpy as np
import pytest

from artgan.evaluation.metrics import (
    correlation,
    expected_calibration_error,
    label_suspicion,
    pareto_front,
    reliability_bins,
)


def test_pareto_front_of_a_hand_made_table():
    #                 A     B     C     D     E     F (missing cost)
    accuracy = [0.90, 0.80, 0.85, 0.70, 0.90, 0.99]
    params = [1000, 100, 1000, 50, 900, np.nan]
    front = pareto_front(accuracy, params)
    # A is beaten by E (same accuracy, fewer params); C by A/E; F has no cost
    assert front.tolist() == [False, True, False, True, True, False]


def test_pareto_front_matches_brute_force_on_two_costs():
    rng = np.random.default_rng(3)
    score = rng.integers(0, 5, 40).astype(float)  # ties on purpose
    costs = rng.integers(0, 5, (40, 2)).astype(float)
    expected = []
    for i in range(40):
        dominated = False
        for j in range(40):
            no_worse = score[j] >= score[i] and all(costs[j] <= costs[i])
            better = score[j] > score[i] or any(costs[j] < costs[i])
            dominated |= no_worse and better
        expected.append(not dominated)
    assert pareto_front(score, costs).tolist() == expected
    # minimising the objective is maximising its negative
    assert pareto_front(-score, costs, maximise=False).tolist() == expected


def test_correlation():
    assert correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert correlation([1, 2, 3, np.nan], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert correlation([1, 1, 1], [1, 2, 3]) is None


def test_expected_calibration_error_of_hand_made_predictions():
    # 4 images at confidence 0.95 (3 right), 2 at 0.55 (both wrong), 2 at 0.25 (1 right)
    probabilities = np.array(
        [
            [0.95, 0.05, 0.0],
            [0.95, 0.05, 0.0],
            [0.95, 0.05, 0.0],
            [0.05, 0.95, 0.0],
            [0.55, 0.45, 0.0],
            [0.45, 0.55, 0.0],
            [0.35, 0.4, 0.25],
            [0.4, 0.35, 0.25],
        ]
    )
    labels = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    # confidences: .95 x4 (3/4 right), .55 x2 (0/2), .40 x2 (image 7 right, image 8 wrong)
    expected = (4 * abs(0.75 - 0.95) + 2 * abs(0.0 - 0.55) + 2 * abs(0.5 - 0.40)) / 8
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected)
    table = reliability_bins(labels, probabilities)
    assert table["count"].tolist() == [0, 0, 0, 2, 0, 2, 0, 0, 0, 4]
    assert table["accuracy"][9] == pytest.approx(0.75)
    assert np.isnan(table["accuracy"][0])


def test_perfectly_calibrated_and_edges():
    labels = np.array([0, 1])
    one_hot = np.eye(2)[labels]
    assert expected_calibration_error(labels, one_hot) == pytest.approx(0.0)
    table = reliability_bins(labels, one_hot)
    assert table["count"][-1] == 2  # confidence 1.0 falls in the last bin
    half = np.full((2, 2), 0.5)
    assert reliability_bins(labels, half, bins=2)["count"].tolist() == [2, 0]  # 0.5 in [0, .5]


def test_label_suspicion_needs_both_model_and_neighbours():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.1, 0.9], [0.05, 0.95], [0.9, 0.1]])
    neighbours = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    result = label_suspicion(labels, probabilities, neighbours)
    # image 0: model agrees; 1: both disagree; 2: both agree; 3: model and 2/3 neighbours disagree
    assert result["suspect"].tolist() == [False, True, False, True]
    np.testing.assert_allclose(result["agreement"], [0, 1 / 3, 1, 1 / 3])
    np.testing.assert_allclose(result["probability"], [0.9, 0.1, 0.95, 0.1])
    assert result["neighbour_majority"].tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(result["score"], [0.1, 0.9 * 2 / 3, 0.0, 0.9 * 2 / 3])


def test_paintings_listed_with_two_labels(tmp_path):
    from artgan.data.labels import load_labels
    from artgan.report.insights import paintings_with_two_labels

    classes = tmp_path / "classes"
    classes.write_text("0 portrait\n1 landscape\n2 still_life\n")
    train = tmp_path / "train.csv"
    train.write_text("a.jpg,0\nb.jpg,1\na.jpg,2\nc.jpg,1\nc.jpg,1\n")  # a twice, two labels
    val = tmp_path / "val.csv"
    val.write_text("b.jpg,2\nd.jpg,0\nc.jpg,1\n")  # b in both files with another label
    tables = {
        role: load_labels(path, classes, on_error="skip", check_files=False)
        for role, path in (("train", train), ("val", val))
    }
    names = ["portrait", "landscape", "still_life"]
    found = paintings_with_two_labels(tables, names)
    assert [(f["path"], f["labels"]) for f in found] == [
        ("a.jpg", ["portrait", "still_life"]),
        ("b.jpg", ["landscape", "still_life"]),
    ]
    assert found[0]["where"] == ["train line 3"]
    assert found[1]["where"] == ["train line 2, val line 1"]


def test_the_published_genre_files_hold_one_painting_with_two_labels(data_dir):
    """The known case: listed twice in ArtGAN's genre_val.csv, as cityscape and landscape."""
    from artgan.data.labels import load_labels, read_class_file
    from artgan.report.insights import paintings_with_two_labels

    genre = data_dir / "artgan" / "Genre"
    tables = {
        role: load_labels(
            genre / f"genre_{role}.csv", genre / "genre_class", on_error="skip", check_files=False
        )
        for role in ("train", "val")
    }
    found = paintings_with_two_labels(tables, read_class_file(genre / "genre_class"))
    assert [(f["path"], f["labels"]) for f in found] == [
        ("Post_Impressionism/maurice-de-vlaminck_the-village.jpg", ["cityscape", "landscape"])
    ]
