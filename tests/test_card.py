"""The model card (`artgan.evaluation.card`): rendered from its template with hand-made
metadata and scores, every name and path is Markdown text, never markup."""

import numpy as np

from artgan.evaluation.card import card_facts, model_card

HOSTILE = "a|b <script>alert(1)</script>"
NAMES = ["Impressionism", HOSTILE, "c_d*", "unused"]


def card(milliseconds=1.234, **metadata):
    labels = np.array([0, 0, 1, 2, 1, 2])
    probabilities = np.eye(4)[[0, 1, 1, 2, 0, 2]] * 0.7 + 0.075
    facts = card_facts(labels, probabilities, NAMES, [0, 1, 1, 2, 2, 0], milliseconds)
    metadata = {
        "class_names": NAMES,
        "input_size": 64,
        "resize": "letterbox",
        "task": "genre",
        "rank": 1,
        "trial_id": "03",
        "objective": "val_accuracy",
        "score": 0.8333,
        "labels": {"train": "/d/train.csv", "val": "/d/va`l.csv"},
        "hyperparameters": {"lstm_units": 64, "tuner/epochs": 2, "dropout": 0.25},
        "feature_layers": ["features_lstm", "pool"],
        **metadata,
    }
    return model_card(
        metadata,
        facts,
        {"epochs": 5, "max_trials": 4},
        {"epochs": 3, "wall_seconds": 185.0, "params": 1234567},
    )


def test_the_card_has_every_section_and_the_measured_numbers():
    text = card()
    for heading in (
        "# Model card: genre model 1",
        "## Data and splits",
        "## Metrics",
        "## Input and preprocessing",
        "## Model",
        "## Training budget",
        "## Known limits",
    ):
        assert f"\n{heading}" in f"\n{text}"
    assert "accuracy 0.6667 · macro-F1 0.6667" in text and "top-5" not in text  # 4 classes
    assert "| Impressionism | 0.500 | 0.500 | 0.500 | 2 |" in text
    assert "| Impressionism | 2 | 2 |" in text and "unused" not in text  # no image: no row
    assert "1.23 ms per image (forward pass of a batch of 32, median of 3," in text
    assert "- parameters: 1,234,567" in text and "wall time of the trial: 3 min 05 s" in text
    assert "| lstm\\_units | 64 |" in text and "tuner/epochs" not in text
    assert "- feature layers: `features_lstm`, `pool`" in text
    assert "{{" not in text and "{%" not in text and text.endswith("section)\n")


def test_names_and_paths_are_text_not_markup():
    text = card(trial_id="<b>1</b>")
    assert HOSTILE not in text and "<script>" not in text and "<b>" not in text
    escaped = r"a\|b \<script\>alert(1)\</script\>"
    assert text.count(escaped) == 3  # data table, metrics table, known limits
    assert "- validation: `` /d/va`l.csv ``" in text  # a backtick inside: a longer fence
    assert "c\\_d\\*" in text and "Trial \\<b\\>1\\</b\\>" in text


def test_what_was_not_measured_or_recorded_says_so():
    text = model_card(
        {"class_names": ["a", "b"], "input_size": 32},
        card_facts([0, 1], np.eye(2), ["a", "b"], [0, 1]),
    )
    assert "# Model card: artgan model\n" in text
    assert "inference time: not measured in this run" in text
    assert "epochs run: not recorded (budget ?" in text
    assert "wall time of the trial: not recorded" in text
    assert "- backbone: `scratch`; weights: none pretrained" in text
