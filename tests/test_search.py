"""Real KerasTuner searches on a few dozen real Louvre paintings: results, resume, models."""

import json
import logging
import os
import signal
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from artgan.config.spec import load_experiment
from artgan.errors import ArtganError
from artgan.evaluation.predict import evaluate_model, predict_files
from artgan.paths import REPO_ROOT
from artgan.tuning.tuner import run_search

from support import TINY, killed_on_exit, wait_for

pytestmark = [pytest.mark.slow]


def tiny_spec(tmp_path, *extra):
    output = f"output={tmp_path / 'run'}"
    return load_experiment(REPO_ROOT / "experiments" / "genre.yaml", [*TINY, output, *extra])


class Recorded(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


LOGGED = Recorded()  # what the shared search below logged


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """One real 1-trial search, shared by the checks below."""
    tmp_path = tmp_path_factory.mktemp("search")
    os.environ["ARTGAN_CACHE"] = str(tmp_path / "cache")
    spec = tiny_spec(tmp_path, "budget.max_trials=1")
    logger = logging.getLogger("artgan")
    level = logger.level
    logger.addHandler(LOGGED)
    logger.setLevel(logging.INFO)
    try:
        table = run_search(spec)
    finally:
        logger.removeHandler(LOGGED)
        logger.setLevel(level)
    return spec, table


def test_search_writes_trials_table(finished_run):
    spec, table = finished_run
    header = next(m for m in LOGGED.messages if m.startswith("genre: "))
    assert "val images, 4 classes ->" in header  # the Louvre data's 4, not ArtGAN's 10
    assert len(table) == 1 and table["status"].tolist() == ["COMPLETED"]
    row = table.iloc[0]
    assert 0.0 <= row["val_accuracy"] <= 1.0 and row["score"] == row["val_accuracy"]
    assert row["epochs"] == 1 and row["params"] > 1000 and row["wall_seconds"] > 0
    assert row["hp/input_size"] == 32
    on_disk = pd.read_csv(spec.output_dir / "trials.csv")
    assert on_disk["trial_id"].astype(str).tolist() == table["trial_id"].astype(str).tolist()
    curves = json.loads((spec.output_dir / "trials.json").read_text())[0]["history"]
    assert set(curves) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_tensorboard_has_hparams_per_trial(finished_run):
    spec, table = finished_run
    trial_logs = list((spec.output_dir / "tensorboard").iterdir())
    assert len(trial_logs) == len(table)
    events = b"".join(p.read_bytes() for p in trial_logs[0].rglob("events.out.tfevents.*"))
    assert b"_hparams_/session_start_info" in events  # what the HParams tab reads
    assert b"epoch_loss" in events
    # beside the last epoch's curves, the score the leaderboard ranks by (best epoch)
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scores = EventAccumulator(str(trial_logs[0] / "execution0" / "leaderboard"))
    scores.Reload()
    [event] = scores.Tensors("leaderboard_score")
    assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(table["score"].iloc[0])


def test_best_model_predicts_and_evaluates(finished_run, data_dir, tmp_path):
    spec, table = finished_run
    model_file = spec.output_dir / "best" / "model_1.keras"
    with zipfile.ZipFile(model_file) as archive:
        metadata = json.loads(archive.read("artgan.json"))
    assert metadata["class_names"][2] == "genre_painting" and metadata["input_size"] == 32
    assert metadata["classes"] == [2, 4, 6, 9]  # ArtGAN's ids of the 4 Louvre genres

    val = data_dir / "louvre-genre4" / "genre_val.csv"
    result = evaluate_model(
        model_file, val, data_dir / "louvre-genre4" / "images", out=tmp_path / "pred.csv"
    )
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert result.scored == len(predictions) == 200
    recomputed = (predictions["label"] == predictions["predicted"]).mean()
    assert result.accuracy == pytest.approx(recomputed)
    assert (
        predictions["label_name"]
        .isin(["genre_painting", "landscape", "portrait", "still_life"])
        .all()
    )
    # what users read speaks of the 4 classes the data has, not ArtGAN's 10
    assert [c for c in predictions if c.startswith("p/")] == [
        "p/genre_painting",
        "p/landscape",
        "p/portrait",
        "p/still_life",
    ]
    assert result.top5_accuracy is None and "top-5" not in result.summary()
    assert (
        "classes          4 (genre_painting, landscape, portrait, still_life)" in result.summary()
    )

    image = data_dir / "louvre-genre4" / "images" / predictions["path"].iloc[0]
    [(path, ranked)] = list(predict_files(model_file, [image], top=3))
    assert len(ranked) == 3 and ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    assert sum(p for _, p in ranked) <= 1.0 + 1e-6
    [(_, ranked)] = list(predict_files(model_file, [image], top=5))
    assert {name for name, _ in ranked} == {
        "genre_painting",
        "landscape",
        "portrait",
        "still_life",
    }


def test_a_kill_while_saving_best_models_leaves_the_old_set(finished_run, monkeypatch):
    """The old best models used to be deleted before the new ones were saved: a kill then
    left best/ empty. Now the new set is written beside the old one and renamed over it."""
    from artgan.data.splits import TaskData
    from artgan.tuning import results
    from artgan.tuning.hypermodel import CRNNHyperModel
    from artgan.tuning.tuner import make_tuner

    spec, _ = finished_run
    best = spec.output_dir / "best"
    before = {p.name: p.read_bytes() for p in best.glob("model_*")}
    assert sorted(before) == ["model_1.keras", "model_1.md"]
    data = TaskData.from_spec(spec)
    tuner = make_tuner(spec, CRNNHyperModel.from_spec(spec, data))

    def killed(*args):  # the kill lands after the new model is written, before its card
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "write_card", killed)
    with pytest.raises(KeyboardInterrupt):
        results.save_best_models(tuner, spec, data, spec.output_dir)
    assert {p.name: p.read_bytes() for p in best.glob("model_*")} == before
    monkeypatch.undo()
    assert results.save_best_models(tuner, spec, data, spec.output_dir) == [best / "model_1.keras"]
    assert sorted(p.name for p in best.iterdir()) == ["model_1.keras", "model_1.md"]


@pytest.mark.parametrize(
    "change, key",
    [
        ("space.lstm_units=64", "search_space.parameters"),
        ("budget.max_train_images=40", "budget.max_train_images"),
    ],
)
def test_changed_search_refuses_to_resume(finished_run, tmp_path, change, key):
    spec, _ = finished_run
    changed = load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml",
        [*TINY, f"output={spec.output_dir}", change],
    )
    with pytest.raises(ArtganError, match=rf"scored differently \({key}: there .*`fresh`"):
        run_search(changed)


def test_resume_after_kill_9_keeps_finished_trials(tmp_path, data_dir):
    """kill -9 during trial 2, rerun the same command: 2 finished trials, trial 1 untouched."""
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "artgan",
        "search",
        "genre",
        *sum((["--set", s] for s in TINY), []),
        "--set",
        "budget.epochs=4",
        "--set",
        "budget.max_trials=2",
        "--set",
        f"output={output}",
    ]
    env = dict(os.environ, ARTGAN_CACHE=str(tmp_path / "cache"))
    first = output / "tuner" / "trial_0" / "trial.json"
    second = output / "tuner" / "trial_1"
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with killed_on_exit(process):
        wait_for(second.exists, 300, "trial 2 to start", process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = json.loads(first.read_text())
    assert before["status"] == "COMPLETED"

    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming: 1 finished trial(s) kept" in result.stdout
    table = pd.read_csv(output / "trials.csv", dtype={"trial_id": str})
    assert sorted(table["trial_id"]) == ["0", "1"]
    assert (table["status"] == "COMPLETED").all()
    after = json.loads(first.read_text())
    assert after["score"] == before["score"]  # the finished trial was not rerun
    assert (output / "best" / "model_1.keras").is_file()


def test_trial_orphaned_by_a_kill_before_the_oracle_saved_is_retried(tmp_path, data_dir):
    """A kill can land after trial.json of a new trial is written but before oracle.json
    lists it as ongoing: the rerun must still finish that trial, not leave it RUNNING."""
    os.environ["ARTGAN_CACHE"] = str(tmp_path / "cache")
    run_search(tiny_spec(tmp_path, "budget.max_trials=1"))
    tuner_dir = tmp_path / "run" / "tuner"
    orphan = json.loads((tuner_dir / "trial_0" / "trial.json").read_text())
    orphan.update(trial_id="1", status="RUNNING", score=None, metrics={"metrics": {}})
    (tuner_dir / "trial_1").mkdir()
    (tuner_dir / "trial_1" / "trial.json").write_text(json.dumps(orphan))

    table = run_search(tiny_spec(tmp_path, "budget.max_trials=2"))
    assert sorted(table["trial_id"]) == ["0", "1"]
    assert (table["status"] == "COMPLETED").all()


def test_bayesian_initial_points_reach_the_oracle(tmp_path, data_dir):
    from artgan.data.splits import TaskData
    from artgan.tuning.hypermodel import CRNNHyperModel
    from artgan.tuning.tuner import make_tuner

    spec = tiny_spec(tmp_path, "tuner.type=bayesian", "tuner.initial_points=2")
    tuner = make_tuner(spec, CRNNHyperModel.from_spec(spec, TaskData.from_spec(spec)))
    assert tuner.oracle.num_initial_points == 2


def test_truncated_tuner_files_are_repaired_on_resume(tmp_path, data_dir, caplog):
    """A full disk used to leave oracle.json or a trial.json truncated, and every rerun died
    of a JSONDecodeError: now the oracle is rebuilt from the trials, a lost trial is marked
    failed under its own id, and the search goes on."""
    os.environ["ARTGAN_CACHE"] = str(tmp_path / "cache")
    run_search(tiny_spec(tmp_path, "budget.max_trials=1"))
    tuner_dir = tmp_path / "run" / "tuner"
    first = json.loads((tuner_dir / "trial_0" / "trial.json").read_text())
    oracle = tuner_dir / "oracle.json"
    oracle.write_text(oracle.read_text()[:40])

    table = run_search(tiny_spec(tmp_path, "budget.max_trials=2")).set_index("trial_id")
    assert table["status"].to_dict() == {"0": "COMPLETED", "1": "COMPLETED"}
    assert table.loc["0", "score"] == first["score"]  # kept, not rerun
    assert "oracle.json was unreadable" in caplog.text

    broken = tuner_dir / "trial_1" / "trial.json"
    broken.write_text(broken.read_text()[:40])
    table = run_search(tiny_spec(tmp_path, "budget.max_trials=3")).set_index("trial_id")
    assert table["status"].to_dict() == {"0": "COMPLETED", "1": "FAILED", "2": "COMPLETED"}
    assert "was unreadable" in table.loc["1", "message"]


def test_every_execution_of_a_trial_is_recorded(tmp_path, data_dir):
    """executions_per_trial > 1: statistics come from what run_trial returns (one History per
    execution), so the curves are the executions' mean and each execution is kept."""
    spec = tiny_spec(
        tmp_path,
        "budget.max_trials=1",
        "budget.executions_per_trial=2",
        "budget.epochs=2",
        "early_stopping.enabled=false",
    )
    run_search(spec)
    row = json.loads((spec.output_dir / "trials.json").read_text())[0]
    info = json.loads(
        next((spec.output_dir / "tuner").glob("trial_*/artgan_trial.json")).read_text()
    )
    executions = info["executions"]
    assert len(executions) == 2 and [e["epochs"] for e in executions] == [2, 2]
    first, second = (e["history"]["val_loss"] for e in executions)
    assert first != second  # two real trainings, not one recorded twice
    assert row["history"]["val_loss"] == pytest.approx(
        [(a + b) / 2 for a, b in zip(first, second)]
    )
    assert row["epochs"] == 2 and row["params"] > 1000


def test_an_impossible_configuration_fails_once_with_its_reason(tmp_path, data_dir):
    """Too many conv blocks for the input: KerasTuner's FailedTrialError, never retried."""
    spec = tiny_spec(
        tmp_path,
        "budget.max_trials=1",
        "space.backbone=scratch",
        "space.input_size=32",
        "space.conv_blocks=6",
    )
    with pytest.raises(ArtganError, match="no trial finished|stopped the search"):
        from artgan.tuning.results import check_produced

        check_produced(run_search(spec), spec.output_dir)
    table = pd.read_csv(spec.output_dir / "trials.csv")
    assert table["status"].tolist() == ["FAILED"]
    assert table["failure"].tolist() == ["impossible configuration"]
    assert (
        "impossible configuration: `conv_blocks` 6 shrink a 32 px `input_size`"
        in table["message"][0]
    )
    info = json.loads(
        next((spec.output_dir / "tuner").glob("trial_*/artgan_trial.json")).read_text()
    )
    assert info["attempts"] == 1  # built once: not retried


def test_a_crashed_trial_runs_again_up_to_max_retries(tmp_path, data_dir, monkeypatch):
    """An error other than an impossible configuration (here a MemoryError in the first fit)
    is retried, `budget.max_retries` times, then FAILED with its kind."""
    from artgan.tuning.hypermodel import CRNNHyperModel

    fit, crashed = CRNNHyperModel.fit, []

    def crash_first(self, *args, **kwargs):
        if not crashed:
            crashed.append(True)
            raise MemoryError("out of memory (simulated)")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(CRNNHyperModel, "fit", crash_first)
    for retries, status in ((1, "COMPLETED"), (0, "FAILED")):
        crashed.clear()
        spec = tiny_spec(
            tmp_path / str(retries),
            "budget.max_trials=1",
            f"budget.max_retries={retries}",
            "space.backbone=scratch",
        )
        run_search(spec)
        row = pd.read_csv(spec.output_dir / "trials.csv").iloc[0]
        info = json.loads(
            next(spec.output_dir.glob("tuner/trial_*/artgan_trial.json")).read_text()
        )
        assert row["status"] == status and info["attempts"] == retries + 1
        if status == "FAILED":
            assert row["failure"] == "error" and "MemoryError" in row["message"]


def test_a_search_with_a_cosine_schedule_trains_each_epoch_at_the_scheduled_rate(tmp_path):
    spec = tiny_spec(
        tmp_path,
        "budget.max_trials=1",
        "budget.epochs=3",
        "early_stopping.enabled=false",
        "space.learning_rate=0.01",
        "space.lr_schedule=cosine",
    )
    run_search(spec)
    (trial,) = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert trial["history"]["learning_rate"] == pytest.approx([0.01, 0.0075, 0.0025], rel=1e-4)
