"""The command line: help, and clean errors (exit 2, no traceback) for user mistakes."""

import json
import os
import resource
import subprocess
import sys
import threading

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
    return subprocess.run(
        [sys.executable, "-m", "artgan", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=300,
    )


def test_help_lists_commands():
    result = artgan("--help")
    assert result.returncode == 0
    for command in ("search", "predict", "evaluate"):
        assert command in result.stdout
    # a quick run has its own folder, and the help says how to report it
    assert "--set output=runs/genre-quick      (then: report runs/genre-quick)" in result.stdout


#: Mistakes every command should answer at once, before TensorFlow loads (it takes ~6 s).
MISTAKES = {
    "typo": (
        ["search", "genra"],
        "'genra' is not a task or an experiment file; tasks: artist, "
        "genre, genre-full, style, style-full (did you mean 'genre'?)",
    ),
    "missing file": (["search", "nope.yaml"], "nope.yaml: file not found"),
    "bad spec": (["search", "{bad}"], "bad.yaml: budget.max_trials"),
    "bad override": (["search", "genre", "--set", "budget.epochs=zero"], "budget.epochs"),
    "space typo": (
        ["search", "genre", "--set", "space.conv_block=3"],
        "parameters.conv_block: unknown parameter (no model builder reads it); did "
        "you mean 'conv_blocks'?",
    ),
    "tuner typo": (
        ["worker", "genre", "--set", "tuner.type=bayesain"],
        "tuner.type: unknown 'bayesain'; known: random, bayesian, hyperband",
    ),
    "missing model": (["predict", "nope.keras", "x.jpg"], "nope.keras: model file not found"),
    "report typo": (
        ["report", "genra"],
        "genra: not a run folder, an experiment YAML or a "
        "task (artist, genre, genre-full, style, style-full)",
    ),
    "compare typo": (["compare", "genra", "genre"], "genra: not a run folder"),
    "similar": (["similar", "index", "--nga", "{tmp}/no-nga"], "no-nga"),
}


def test_mistakes_answer_before_tensorflow_loads(tmp_path):
    """Arguments, task names and specs are checked before TensorFlow is imported: each
    mistake is a clean error (exit 2) and TensorFlow is not even in sys.modules."""
    (tmp_path / "bad.yaml").write_text("task: genre\nbudget: {max_trials: -1}\n")
    cases = {
        name: [a.format(bad=tmp_path / "bad.yaml", tmp=tmp_path) for a in args]
        for name, (args, _) in MISTAKES.items()
    }
    script = (
        "import contextlib, io, json, sys\n"
        "from artgan.cli import main\n"
        "out = {}\n"
        f"for name, args in {cases!r}.items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        code = main(args)\n"
        "    out[name] = [code, err.getvalue(), 'tensorflow' in sys.modules]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    answers = json.loads(result.stdout)
    for name, (_, message) in MISTAKES.items():
        code, stderr, tensorflow = answers[name]
        assert (code, tensorflow) == (2, False), (name, stderr)
        assert message in stderr and "Traceback" not in stderr, (name, stderr)
        assert stderr.startswith("artgan: error: "), (name, stderr)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["search", "genra"], ["search", "nope.yaml"], ["predict", "nope.keras", "x.jpg"]],
)
def test_help_and_mistakes_answer_in_a_second(args):
    """The whole command, Python's start-up included, in CPU seconds (wall time on a 2-core
    machine shared by several jobs says more about the others): about 1 s, against 6 s when
    TensorFlow loaded first; 3 s is generous."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = artgan(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == (0 if args == ["--help"] else 2), result.stderr
    assert seconds < 3, f"{args}: {seconds:.1f} CPU seconds"


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
def test_search_where_every_trial_failed_exits_non_zero(
    tmp_path, data_dir, cache_dir, capsys, monkeypatch, trials
):
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
    assert (
        captured.err.strip()
        == "artgan: error: none of the 2 image(s) could be read (reasons above)"
    )
    painting = next((data_dir / "louvre-genre4" / "images").rglob("*.jpg"))
    assert main(["predict", str(model), str(broken), str(painting)]) == 0  # one is enough


@pytest.mark.slow
def test_predict_refuses_a_named_pipe_and_goes_on_with_the_next_image(tmp_path, data_dir, capsys):
    model = tiny_model(tmp_path / "tiny.keras", ["a", "b"])
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    # Without the check, predict waits for a writer for ever: be one after 20 s, so a
    # regression fails instead of hanging.
    watchdog = threading.Timer(20, lambda: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)))
    watchdog.start()
    painting = next((data_dir / "louvre-genre4" / "images").rglob("*.jpg"))
    try:
        assert main(["predict", str(model), str(fifo), str(painting)]) == 0
    finally:
        watchdog.cancel()
    out = capsys.readouterr().out
    assert f"{fifo}\n  could not read: {fifo}: not a regular file but a named pipe (FIFO)" in out
    assert f"{painting}\n" in out and out.count("%") == 2  # both classes of the painting


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
    assert capsys.readouterr().err == (
        f"artgan: error: --out {taken}: is a file; give a folder for the heat maps\n"
    )
    assert taken.read_text() == "mine"
    index = Index(
        np.array([6]), np.array(["0" * 64]), np.ones((1, 4), np.float32), {"name": "handcrafted"}
    ).save(tmp_path / "index.npz")
    for target in ("²", "1" * 5000):
        assert main(["similar", "query", target, "--index", str(index)]) == 2
        assert capsys.readouterr().err == (
            f"artgan: error: {target}: neither an object id in the index nor an image file\n"
        )


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_a_typo_in_the_space_stops_the_search_before_anything_is_written(tmp_path, workers):
    output = tmp_path / "run"
    result = artgan(
        "search", "genre", "--set", "space.lstm_unit=32", "--set", f"output={output}", *workers
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "parameters.lstm_unit: unknown parameter" in result.stderr
    assert "did you mean 'lstm_units'" in result.stderr
    assert not output.exists()


def tiny_model(path, class_names, size=8):
    import keras

    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(len(class_names), activation="softmax")(
        keras.layers.Flatten()(inputs)
    )
    return save_model(
        keras.Model(inputs, outputs),
        path,
        {"class_names": class_names, "input_size": size, "resize": "letterbox"},
    )


@pytest.mark.slow
def test_evaluate_prints_the_scores_before_saying_where_it_could_not_write(
    tmp_path, data_dir, cache_dir, capsys
):
    from artgan.data.labels import read_class_file

    genre = data_dir / "louvre-genre4"
    model = tiny_model(tmp_path / "model.keras", read_class_file(genre / "genre_class"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    out = blocked / "predictions.csv"
    assert (
        main(
            [
                "evaluate",
                str(model),
                "--labels",
                str(genre / "genre_val.csv"),
                "--images",
                str(genre / "images"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
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
    assert (
        error.startswith(f"artgan: error: cannot write {blocked / 'run'}")
        and "Traceback" not in error
    )
    with pytest.raises(ArtganError, match=f"cannot write {blocked / 'cache'}"):
        cache_images([blocked], 8, cache_dir=blocked / "cache", progress=False)
    with pytest.raises(ArtganError, match=f"cannot write {blocked / 'report'}"):
        Writer(blocked / "report")


def test_an_unsafe_keras_file_is_refused_in_one_line(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # Keras will not deserialize this
    model = save_model(
        keras.Model(inputs, outputs),
        tmp_path / "unsafe.keras",
        {"class_names": ["a"], "input_size": 8, "resize": "letterbox"},
    )
    assert main(["predict", str(model), str(tmp_path / "x.jpg")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"artgan: error: {model}: Keras refused to load this model: ")
    assert "unsafe" in error and len(error.splitlines()) == 1


def test_cli_logs_follow_the_current_stdout():
    """A handler bound to the stdout of its first command wrote into a closed stream once
    that stdout was gone (pytest's capture, a redirected run): a 'Logging error' traceback."""
    import contextlib
    import io
    import logging

    from artgan.cli import show_logs

    show_logs()
    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(first):
        logging.getLogger("artgan.test").info("one")
    first.close()
    with contextlib.redirect_stdout(second):
        logging.getLogger("artgan.test").info("two")
    assert second.getvalue() == "two\n"
