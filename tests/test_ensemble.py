"""The best trials averaged as one saved model, and where a search's wall time went."""

import os

import numpy as np
import pandas as pd
import pytest

from artgan.config.spec import load_experiment
from artgan.data.images import decode_image
from artgan.data.splits import TaskData
from artgan.evaluation import predict
from artgan.formatting import duration
from artgan.model.saved import load_model, read_metadata
from artgan.paths import REPO_ROOT
from artgan.report.run import open_run
from artgan.report.sections import leaderboard_section
from artgan.runfolder import RunFolder
from artgan.tuning.budget import TIME_PARTS, search_state, time_split
from artgan.tuning.results import swap_in
from artgan.tuning.tuner import run_search

from support import TINY, TINY_PRETRAINED, predict_with_keras_alone

pytestmark = pytest.mark.slow


def search(tmp_path, overrides):
    spec = load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml",
        [
            *overrides,
            "budget.max_trials=2",
            "training.best_models=2",
            f"output={tmp_path / 'run'}",
        ],
    )
    return spec, run_search(spec)


def val_pixels(data_dir, size, count=4):
    images = sorted((data_dir / "louvre-genre4" / "images" / "val").rglob("*.jpg"))[:count]
    return np.stack([decode_image(p, size) for p in images]).astype("float32") / 255


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ensemble")
    os.environ["ARTGAN_CACHE"] = str(tmp_path / "cache")
    return search(
        tmp_path, [*TINY_PRETRAINED, "space.backbone_trainable=frozen", "space.head=pooled"]
    )


def report_leaderboard(spec):
    """The report's leaderboard section of the run, and the CSV files it wrote (by name)."""
    written = {}

    class Writer:
        def csv(self, frame, name):
            written[name] = frame

    baselines = {"rows": [], "size": 0, "train_images": 0}
    return leaderboard_section(open_run(spec.output_dir), baselines, Writer()), written


def test_the_ensemble_averages_the_best_models_with_one_backbone(pretrained_run, data_dir):
    spec, table = pretrained_run
    folder = RunFolder(spec.output_dir)
    metadata = read_metadata(folder.ensemble)
    best = [str(t) for t in table.sort_values("score", ascending=False)["trial_id"][:2]]
    assert metadata["members"] == best
    assert 0 <= metadata["val_accuracy"] <= 1 and metadata["score"] == metadata["val_accuracy"]
    assert f"class probabilities of trials {', '.join(best)}" in folder.ensemble_card.read_text()
    ensemble, _ = load_model(folder.ensemble)
    # one frozen bottom for both heads: the parameters of one backbone, not two
    model_1, _ = load_model(folder.model(1))
    assert ensemble.count_params() < 1.5 * model_1.count_params()
    pixels = val_pixels(data_dir, 224)
    members = [load_model(path)[0].predict(pixels, verbose=0) for path in folder.models()]
    expected = np.mean(members, axis=0)
    np.testing.assert_allclose(ensemble.predict(pixels, verbose=0), expected, atol=1e-5)

    # Inference with Keras alone: no artgan, no weights package importable.
    alone = predict_with_keras_alone(folder.ensemble, pixels, spec.output_dir)
    np.testing.assert_allclose(alone, expected, atol=1e-5)


def test_cards_and_evaluate_read_the_cached_activations(pretrained_run, monkeypatch):
    """A frozen backbone's validation activations are cached by the search: model cards,
    `evaluate` and the comparison page score saved models (the ensemble too) from them
    instead of running the backbone on every painting again, with the same results."""
    spec, _ = pretrained_run
    folder = RunFolder(spec.output_dir)
    split = TaskData.from_spec(spec).splits(224)[1]
    for path in (folder.model(1), folder.ensemble):
        model, metadata = load_model(path)
        on_pixels = predict.predict_split(model, split)
        with monkeypatch.context() as patched:  # no image batch may be made
            patched.setattr(predict, "ImageLabelGenerator", None)
            cached = predict.predict_split(model, split, metadata=metadata)
        np.testing.assert_allclose(cached, on_pixels, atol=1e-3)


def test_search_json_splits_the_wall_time(pretrained_run):
    spec, _ = pretrained_run
    seconds = search_state(spec.output_dir)["seconds"]
    assert set(seconds) == {*TIME_PARTS, "other", "total"}
    # a fresh cache: the images were decoded and embedded in this search, heads trained
    assert all(seconds[part] > 0 for part in ("decoding", "embedding", "training"))
    assert sum(seconds[p] for p in (*TIME_PARTS, "other")) == pytest.approx(
        seconds["total"], abs=0.5
    )
    line = time_split(seconds)
    assert line.startswith(f"{duration(seconds['total'])} in all") and "embedding" in line


def test_the_trial_that_built_the_caches_says_how_long_that_took(pretrained_run):
    spec, table = pretrained_run
    seconds = search_state(spec.output_dir)["seconds"]
    built = table.sort_values("trial_id")["cache_seconds"].tolist()
    # The first trial embedded the paintings; the others read its cache.
    assert 0 < built[0] <= seconds["decoding"] + seconds["embedding"] + 0.1
    assert built[0] < table.sort_values("trial_id")["wall_seconds"].iloc[0]
    assert all(pd.isna(later) for later in built[1:])

    board, _ = report_leaderboard(spec)
    column = board["headers"].index("wall time")
    texts = [row["cells"][column]["text"] for row in board["rows"] if row["kind"] == "finished"]
    assert sum("(caches " in text for text in texts) == 1


def test_images_members_are_averaged_whole_and_a_stale_ensemble_goes(
    tmp_path, cache_dir, data_dir
):
    spec, _ = search(tmp_path, TINY)
    folder = RunFolder(spec.output_dir)
    ensemble, metadata = load_model(folder.ensemble)
    pixels = val_pixels(data_dir, metadata["input_size"])
    expected = np.mean(
        [load_model(p)[0].predict(pixels, verbose=0) for p in folder.models()], axis=0
    )
    np.testing.assert_allclose(ensemble.predict(pixels, verbose=0), expected, atol=1e-5)

    # the next save without an ensemble removes ours (it averaged other trials)
    swap_in(folder, count=0)
    assert not folder.ensemble.exists() and not folder.ensemble_card.exists()


def test_the_report_leaderboard_lists_the_ensemble_beside_the_trials(pretrained_run):
    spec, table = pretrained_run
    board, written = report_leaderboard(spec)
    kinds = [row["kind"] for row in board["rows"]]
    assert kinds == ["finished"] * len(table) + ["ensemble"]
    metadata = read_metadata(RunFolder(spec.output_dir).ensemble)
    cells = board["rows"][-1]["cells"]
    assert cells[board["headers"].index("val accuracy")]["sort"] == metadata["val_accuracy"]
    assert f"trials {', '.join(metadata['members'])} averaged" in cells[-1]["text"]
    csv = written["leaderboard.csv"]
    assert csv[csv["status"] == "ENSEMBLE"]["val_accuracy"].tolist() == [metadata["val_accuracy"]]
