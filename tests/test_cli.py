"""The command line: help, and clean errors (exit 2, no traceback) for user mistakes."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from artgan.cli import main
from artgan.data.splits import TaskData
from artgan.errors import ArtganError
from artgan.model.saved import save_model
from artgan.paths import REPO_ROOT

from support import TINY


def artgan(*args, env=None):
    environment = dict(os.environ, **(env or {}))
    environment.pop("WIKIART_IMAGES", None)
    return subprocess.run([sys.executable, "-m", "artgan", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=environment, timeout=300)


def test_help_lists_commands():
    result = artgan("--help")
    assert result.returncode == 0
    for command in ("search", "predict", "evaluate"):
        assert command in result.stdout


@pytest.mark.slow
def test_artist_task_explains_missing_images(data_dir, tmp_path):
    output = tmp_path / "artist"
    result = artgan("search", "artist", "--set", f"output={output}")
    assert result.returncode == 2
    assert "WIKIART_IMAGES" in result.stderr and "WikiArt" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()  # nothing written for a search that cannot start


@pytest.mark.slow
def test_bad_spec_is_a_clean_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("task: genre\nbudget: {max_trials: -1}\n")
    result = artgan("search", str(spec))
    assert result.returncode == 2
    assert "bad.yaml: budget.max_trials" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_model_is_a_clean_error(tmp_path):
    result = artgan("predict", str(tmp_path / "nope.keras"), "x.jpg")
    assert result.returncode == 2 and "model file not found" in result.stderr
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr  # TF start-up noise


def test_the_cli_turns_onednn_on_unless_told_otherwise(tmp_path, monkeypatch):
    """TensorFlow leaves oneDNN off on AVX2-only CPUs (2.5x slower training); the CLI sets
    TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads, and keeps a value the user set."""
    for given, expected in ((None, "1"), ("0", "0")):
        if given is None:
            monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        else:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", given)
        assert main(["predict", str(tmp_path / "nope.keras"), "x.jpg"]) == 2
        assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("trials", [1, 3])  # 3: KerasTuner itself gives up (3 failures in a row)
def test_search_where_every_trial_failed_exits_non_zero(tmp_path, data_dir, cache_dir, capsys,
                                                        monkeypatch, trials):
    def unreadable(self, size):
        raise OSError("the disk is on fire")

    monkeypatch.setattr(TaskData, "splits", unreadable)  # every trial's fit fails at once
    output = tmp_path / "run"
    sets = [*TINY, f"budget.max_trials={trials}", f"output={output}"]
    assert main(["search", "genre", *sum((["--set", s] for s in sets), [])]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("artgan: error: ") and str(output / "trials.csv") in error
    assert "OSError: the disk is on fire" in error and "Traceback" not in error
    assert (pd.read_csv(output / "trials.csv")["status"] == "FAILED").sum() == trials
    assert not list(output.glob("best/*.keras"))


@pytest.mark.slow
def test_predict_exits_non_zero_when_no_image_could_be_read(tmp_path, data_dir, capsys):
    model = tiny_model(tmp_path / "tiny.keras", ["a", "b"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert main(["predict", str(model), str(broken), str(tmp_path / "missing.jpg")]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("could not read") == 2
    assert captured.err.strip() == "artgan: error: none of the 2 image(s) could be read (reasons above)"
    painting = next((data_dir / "louvre-genre4" / "images").rglob("*.jpg"))
    assert main(["predict", str(model), str(broken), str(painting)]) == 0  # one is enough


@pytest.mark.slow
def test_bad_arguments_are_one_line_errors(tmp_path, data_dir, capsys):
    """`--top -2` used to be accepted (all classes but two shown), an `--out` naming a file
    and an object id like '²' (str.isdigit accepts it, int refuses it) gave tracebacks."""
    import numpy as np

    from artgan.similar.index import Index

    model = tiny_model(tmp_path / "tiny.keras", ["a", "b"])
    painting = next((data_dir / "louvre-genre4" / "images").rglob("*.jpg"))
    assert main(["predict", str(model), str(painting), "--top", "-2"]) == 2
    assert capsys.readouterr().err == "artgan: error: --top must be at least 1, got -2\n"
    taken = tmp_path / "taken.png"
    taken.write_text("mine")
    assert main(["explain", str(model), str(painting), "--out", str(taken)]) == 2
    assert capsys.readouterr().err == (f"artgan: error: --out {taken}: is a file; give a folder "
                                       "for the heat maps\n")
    assert taken.read_text() == "mine"
    index = Index(np.array([6]), np.array(["0" * 64]), np.ones((1, 4), np.float32),
                  {"name": "handcrafted"}).save(tmp_path / "index.npz")
    for target in ("²", "1" * 5000):
        assert main(["similar", "query", target, "--index", str(index)]) == 2
        assert capsys.readouterr().err == (f"artgan: error: {target}: neither an object id in "
                                           "the index nor an image file\n")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_a_typo_in_the_space_stops_the_search_before_anything_is_written(tmp_path, workers):
    output = tmp_path / "run"
    result = artgan("search", "genre", "--set", "space.lstm_unit=32", "--set", f"output={output}",
                    *workers)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "parameters.lstm_unit: unknown parameter" in result.stderr
    assert "did you mean 'lstm_units'" in result.stderr
    assert not output.exists()


def tiny_model(path, class_names, size=8):
    import keras

    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(len(class_names), activation="softmax")(keras.layers.Flatten()(inputs))
    return save_model(keras.Model(inputs, outputs), path,
                      {"class_names": class_names, "input_size": size, "resize": "letterbox"})


@pytest.mark.slow
def test_evaluate_prints_the_scores_before_saying_where_it_could_not_write(tmp_path, data_dir,
                                                                          cache_dir, capsys):
    from artgan.data.labels import read_class_file

    genre = data_dir / "louvre-genre4"
    model = tiny_model(tmp_path / "model.keras", read_class_file(genre / "genre_class"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    out = blocked / "predictions.csv"
    assert main(["evaluate", str(model), "--labels", str(genre / "genre_val.csv"),
                 "--images", str(genre / "images"),
                 "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "accuracy" in captured.out and "images scored    200" in captured.out
    error = captured.err.strip().splitlines()[-1]  # after the progress bar
    assert error == f"artgan: error: cannot write {out}: a file stands where a folder should be"
    assert "Traceback" not in captured.err


def test_unwritable_output_and_cache_folders_are_one_line_errors(tmp_path, capsys):
    from artgan.data.images import cache_images
    from artgan.report.output import Writer

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert main(["search", "genre", "--set", f"output={blocked / 'run'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"artgan: error: cannot write {blocked / 'run'}") and "Traceback" not in error
    with pytest.raises(ArtganError, match=f"cannot write {blocked / 'cache'}"):
        cache_images([blocked], 8, cache_dir=blocked / "cache", progress=False)
    with pytest.raises(ArtganError, match=f"cannot write {blocked / 'report'}"):
        Writer(blocked / "report")


def test_an_unsafe_keras_file_is_refused_in_one_line(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # Keras will not deserialize this
    model = save_model(keras.Model(inputs, outputs), tmp_path / "unsafe.keras",
                       {"class_names": ["a"], "input_size": 8, "resize": "letterbox"})
    assert main(["predict", str(model), str(tmp_path / "x.jpg")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"artgan: error: {model}: Keras refused to load this model: ")
    assert "unsafe" in error and len(error.splitlines()) == 1
