"""A search that spends its budget well: the pruning rules (median, percentile), the time
budget, a killed trial resumed from its last finished epoch, and resident memory flat across
trials."""

import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from artgan.config.spec import PruningSpec, load_experiment
from artgan.errors import ArtganError
from artgan.paths import REPO_ROOT
from artgan.runfolder import RunFolder, TrialRow
from artgan.tuning.check import check_search
from artgan.tuning.pruners import should_stop
from artgan.tuning.pruning import finished_curves

from support import TINY, killed_on_exit, wait_for


def tiny_spec(output, *extra):
    return load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml", [*TINY, f"output={output}", *extra]
    )


def plant_finished_trials(output, curves):
    """Hand-made finished trials in a run folder: their artgan_trial.json curves only, as
    `finished_curves` reads them (KerasTuner never sees these folders)."""
    folder = RunFolder(output)
    for number, curve in enumerate(curves):
        path = folder.trial_info(f"planted{number}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"epochs": len(curve), "history": {"val_accuracy": curve}}))


# ----------------------------------------------------------------------------- the rules


def median_stop(curve, finished, min_epochs=2, min_trials=3, direction="max"):
    rule = PruningSpec(type="median", min_epochs=min_epochs, min_trials=min_trials)
    return should_stop(rule, curve, finished, direction)


def percentile_stop(curve, finished, percentile, direction="max"):
    rule = PruningSpec(type="percentile", min_epochs=1, min_trials=3, percentile=percentile)
    return should_stop(rule, curve, finished, direction)


def test_median_rule_stops_a_trial_below_the_median_of_finished_curves():
    finished = [[0.30, 0.50, 0.60], [0.40, 0.55, 0.70], [0.35, 0.45, 0.65]]
    # epoch 2: the finished trials' best so far are 0.50, 0.55, 0.45 -> median 0.50
    assert median_stop([0.25, 0.40], finished, min_epochs=2, min_trials=3)
    assert not median_stop([0.25, 0.52], finished, min_epochs=2, min_trials=3)
    assert not median_stop([0.60, 0.40], finished, min_epochs=2, min_trials=3)  # best so far
    assert not median_stop([0.25, 0.50], finished, min_epochs=2, min_trials=3)  # a tie goes on


def test_median_rule_waits_for_its_warm_up_and_enough_finished_trials():
    finished = [[0.9, 0.9], [0.9, 0.9], [0.9, 0.9]]
    assert not median_stop([0.1], finished, min_epochs=2, min_trials=3)
    assert not median_stop([0.1, 0.1], finished[:2], min_epochs=2, min_trials=3)
    assert median_stop([0.1, 0.1], finished, min_epochs=2, min_trials=3)


def test_median_rule_counts_a_shorter_finished_trial_with_its_best_and_minimises_losses():
    # early-stopped at epoch 2 with best 0.8: at epoch 4 it still counts 0.8
    finished = [[0.5, 0.8], [0.6, 0.7, 0.7, 0.7], [0.2, 0.3, 0.4, 0.5]]
    assert median_stop([0.1, 0.2, 0.3, 0.6], finished, min_epochs=2, min_trials=3)  # < 0.7
    assert not median_stop([0.1, 0.2, 0.3, 0.75], finished, min_epochs=2, min_trials=3)
    losses = [[1.0, 0.8], [1.2, 0.9], [1.1, 1.0]]
    assert median_stop([1.3, 1.2], losses, min_trials=3, direction="min")
    assert not median_stop([1.3, 0.85], losses, min_trials=3, direction="min")


def test_percentile_rule_keeps_only_trials_on_course_for_the_best_share():
    """Optuna's PercentilePruner: `percentile` 25 keeps trials whose best so far reaches the
    best quarter of the finished ones' (the 75th percentile when maximising); 50 is the
    median rule."""
    finished = [[0.1], [0.2], [0.3], [0.4], [0.5]]  # epoch 1 bests; 75th percentile 0.4
    assert percentile_stop([0.39], finished, 25)
    assert not percentile_stop([0.40], finished, 25)  # a tie goes on
    assert not percentile_stop([0.39], finished, 50)  # above the median (0.3)
    assert percentile_stop([0.29], finished, 50) == median_stop([0.29], finished, min_epochs=1)
    assert percentile_stop([0.29], finished, 50)
    assert not percentile_stop([0.11], finished, 99)  # keeps nearly everything (> 0.104)
    assert percentile_stop([0.45], finished, 10)  # keeps only the very best (>= 0.46)
    losses = [[1.0], [2.0], [3.0], [4.0], [5.0]]  # minimising: the 25th percentile, 2.0
    assert percentile_stop([2.1], losses, 25, direction="min")
    assert not percentile_stop([2.0], losses, 25, direction="min")


def test_a_rule_and_its_settings_are_checked_with_the_search(tmp_path):
    spec = tiny_spec(tmp_path, "pruning.type=percentile", "pruning.percentile=10")
    check_search(spec)
    assert spec.comparable()["pruning.percentile"] == 10  # it changes what trials score
    for sets, message in [
        (
            ["pruning.type=percentile", "pruning.percentile=100"],
            "genre.yaml: pruning.percentile: Input should be less than 100",
        ),
        (
            ["pruning.type=median", "pruning.percentile=10"],
            "genre.yaml: pruning.percentile: unknown key",
        ),
        (
            ["pruning.type=none", "pruning.percentile=10"],
            "genre.yaml: pruning.percentile: unknown key (pruning.type is none)",
        ),
        (
            ["pruning.type=medain"],
            "genre.yaml: pruning.type: unknown 'medain'; known: none, "
            "median, percentile (did you mean 'median'?)",
        ),
        (
            ["pruning.type=median", "tuner.type=hyperband"],
            "genre.yaml: pruning.type: the hyperband tuner stops trials early itself",
        ),
    ]:
        with pytest.raises(ArtganError, match=re.escape(message)):
            check_search(tiny_spec(tmp_path, *sets))


def test_finished_curves_are_read_from_the_run_folder(tmp_path):
    plant_finished_trials(tmp_path, [[0.3, 0.4], [0.5]])
    running = RunFolder(tmp_path).trial_info("7")
    running.parent.mkdir(parents=True)
    running.write_text(json.dumps({"status": "RUNNING", "progress": {"val_accuracy": [0.9]}}))
    assert sorted(finished_curves(tmp_path, "val_accuracy")) == [[0.3, 0.4], [0.5]]
    assert finished_curves(tmp_path, "val_accuracy", skip={"planted0"}) == [[0.5]]


def test_pruning_is_part_of_the_search_definition_only_when_on(tmp_path):
    off = tiny_spec(tmp_path, "pruning.type=none")
    assert not any(k.startswith("pruning.") for k in off.comparable())
    on = tiny_spec(tmp_path, "pruning.type=median")
    assert on.comparable()["pruning.min_epochs"] == 2 and on.fingerprint() != off.fingerprint()
    budget = tiny_spec(tmp_path, "pruning.type=none", "budget.max_minutes=5")
    assert budget.fingerprint() == off.fingerprint()  # a time budget scores nothing differently


def test_old_trials_json_rows_still_read():
    row = TrialRow.from_json(
        {
            "trial_id": 3,
            "status": "COMPLETED",
            "score": 0.5,
            "val_accuracy": 0.5,
            "epochs": 4,
            "hp/dropout": 0.1,
        }
    )
    assert row.pruned_at_epoch is None and row.failure is None and row.epochs == 4


# ----------------------------------------------------------------------------- real searches


@pytest.mark.slow
def test_a_trial_trailing_the_finished_ones_is_pruned_and_still_scored(
    tmp_path, cache_dir, data_dir
):
    from artgan.tuning.tuner import run_search

    output = tmp_path / "run"
    plant_finished_trials(output, [[1.0] * 4] * 3)
    spec = tiny_spec(
        output,
        "budget.max_trials=1",
        "budget.epochs=4",
        "pruning.type=median",
        "pruning.min_epochs=2",
        "pruning.min_trials=3",
    )
    table = run_search(spec)
    row = table.iloc[0]
    assert row["status"] == "PRUNED" and row["pruned_at_epoch"] == 2 and row["epochs"] == 2
    assert 0.0 <= row["score"] <= 1.0  # the epochs it ran still score it (and the oracle)
    trial = json.loads((output / "tuner" / f"trial_{row['trial_id']}" / "trial.json").read_text())
    assert trial["status"] == "COMPLETED" and trial["score"] == row["score"]
    assert (output / "best" / "model_1.keras").is_file()
    assert not (output / "tuner" / f"trial_{row['trial_id']}" / "backup").exists()


@pytest.mark.slow
def test_no_trial_starts_after_the_time_budget(tmp_path, cache_dir, data_dir):
    from artgan.tuning.tuner import run_search

    output = tmp_path / "run"
    # 1.2 s: the first trial starts at once, and no trial trains in less
    spec = tiny_spec(output, "budget.max_trials=3", "budget.epochs=2", "budget.max_minutes=0.02")
    table = run_search(spec)
    assert len(table) == 1 and table["status"].tolist() == ["COMPLETED"]
    state = json.loads(RunFolder(output).search_state.read_text())
    assert state["stopped"].startswith("time budget: `budget.max_minutes` 0.02 reached; 1 of 3")
    assert state["deadline_at"] - state["started_at"] == pytest.approx(1.2)


@pytest.mark.slow
def test_a_killed_trial_resumes_from_its_last_finished_epoch(tmp_path, data_dir):
    """kill -9 in the middle of a trial, rerun: it goes on after its last backed-up epoch,
    keeps the curves of the epochs before, and its TensorBoard run holds both attempts."""
    output = tmp_path / "run"
    sets = [
        *TINY,
        "budget.max_trials=1",
        "budget.epochs=8",
        "early_stopping.enabled=false",
        "budget.max_train_images=96",
        f"output={output}",
    ]
    command = [
        sys.executable,
        "-m",
        "artgan",
        "search",
        "genre",
        *sum((["--set", s] for s in sets), []),
    ]
    env = dict(os.environ, ARTGAN_CACHE=str(tmp_path / "cache"))
    folder = RunFolder(output)
    info, metadata = folder.trial_info("0"), folder.trial_backup("0") / "training_metadata.json"

    def two_epochs_backed_up():
        try:
            progress = json.loads(info.read_text()).get("progress", {}).get("val_accuracy", [])
            backed_up = json.loads(metadata.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return None
        return backed_up >= 2 and len(progress) >= backed_up and (backed_up, progress)

    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with killed_on_exit(process):
        backed_up, before = wait_for(two_epochs_backed_up, 300, "two epochs backed up", process)
        process.send_signal(signal.SIGKILL)
        process.wait()

    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "trial 0: resuming after its last finished epoch (attempt 2)" in result.stdout
    assert "stopped: trial budget: 1 of 1 trials ran" in result.stdout
    first_epoch = next(line for line in result.stdout.splitlines() if line.startswith("Epoch "))
    assert int(first_epoch.split()[1].split("/")[0]) > backed_up  # not from epoch 1
    row = pd.read_csv(folder.trials_csv).iloc[0]
    assert row["status"] == "COMPLETED" and row["attempts"] == 2 and row["epochs"] == 8
    curve = json.loads(folder.trials_json.read_text())[0]["history"]["val_accuracy"]
    assert len(curve) == 8 and curve[:backed_up] == before[:backed_up]
    runs = list((folder.tensorboard / "0").rglob("events.out.tfevents.*"))
    assert len({p.parent for p in runs}) >= 2 and len(runs) >= 4  # both attempts kept
    assert not folder.trial_backup("0").exists()


@pytest.mark.slow
def test_resident_memory_stays_flat_over_twenty_trials(tmp_path, cache_dir, data_dir):
    """Issue 11's target: resident memory before trial 20 within 10 % of trial 2's. Without
    `releasing_graphs` every fitted model's graphs stay pinned by TensorFlow's gradient
    registry and this grows by about 24 MB a trial (55 % over 20 trials here)."""
    from artgan.tuning.tuner import run_search

    spec = tiny_spec(
        tmp_path / "run",
        "budget.max_trials=20",
        "budget.max_train_images=24",
        "budget.max_val_images=12",
    )
    table = run_search(spec)
    assert len(table) == 20
    before = table.sort_values("trial_id", key=lambda ids: ids.astype(int))["memory_before_mb"]
    second, last = before.iloc[1], before.iloc[-1]
    assert last < 1.10 * second, before.tolist()


def test_a_resumed_history_gets_the_epochs_before_the_interruption(tmp_path):
    import keras
    import keras_tuner as kt

    from artgan.tuning.tuner import continue_histories

    objective = kt.Objective("val_accuracy", "max")
    kept, checkpoint = tmp_path / "kept.weights.h5", tmp_path / "checkpoint.weights.h5"
    kept.write_text("best before the kill")
    checkpoint.write_text("best after the resume")
    resumed = keras.callbacks.History()
    resumed.epoch, resumed.history = [2, 3], {"val_accuracy": [0.4, 0.2]}
    continue_histories([resumed], {"val_accuracy": [0.1, 0.5, 0.9]}, objective, kept, checkpoint)
    assert resumed.epoch == [0, 1, 2, 3] and resumed.history["val_accuracy"] == [
        0.1,
        0.5,
        0.4,
        0.2,
    ]
    assert checkpoint.read_text() == "best before the kill"  # epoch 2 (0.5) beat the resumed ones

    nothing_left = keras.callbacks.History()  # killed after the last epoch's backup
    nothing_left.epoch, nothing_left.history = [], {}
    continue_histories([nothing_left], {"val_accuracy": [0.1, 0.5]}, objective, kept, checkpoint)
    assert nothing_left.epoch == [0, 1] and nothing_left.history == {"val_accuracy": [0.1, 0.5]}
