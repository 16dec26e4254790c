"""Run folders: --fresh deletes only what artgan made; one search at a time per folder."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from artgan.cli import main
from artgan.cli.search import worker_command
from artgan.config.spec import load_experiment
from artgan.errors import ArtganError
from artgan.files import clear_folder, folder_lock
from artgan.paths import REPO_ROOT
from artgan.tuning.parallel.launcher import Launcher
from artgan.tuning.results import save_best_models

from support import TINY, killed_on_exit


def search_args(output, *extra):
    sets = [*TINY, "budget.max_trials=1", f"output={output}"]
    return ["search", "genre", *sum((["--set", s] for s in sets), []), *extra]


@pytest.mark.slow
def test_fresh_refuses_a_folder_artgan_did_not_make(tmp_path, data_dir, cache_dir, capsys):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    assert main(search_args(mine, "--fresh")) == 2
    error = capsys.readouterr().err
    assert f"{mine}: not emptied" in error and "fingerprint" in error and "thesis.tex" in error
    assert sorted(p.name for p in mine.iterdir()) == ["photos", "thesis.tex"]  # no .lock either


def test_fresh_empties_an_artgan_run_folder_but_follows_no_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not artgan's")
    run = tmp_path / "run"
    (run / "tuner" / "trial_0").mkdir(parents=True)
    for name in ("fingerprint", "trials.csv", ".lock"):
        (run / name).write_text("x")
    (run / "link").symlink_to(elsewhere)
    clear_folder(run, "fingerprint")
    assert [p.name for p in run.iterdir()] == [".lock"]  # the lock of the search emptying it
    assert (elsewhere / "keep.txt").read_text() == "not artgan's"
    clear_folder(tmp_path / "missing", "fingerprint")  # nothing to do
    with pytest.raises(ArtganError, match="not emptied"):
        clear_folder(tmp_path, "fingerprint")


def test_best_models_replace_only_artgans_model_files(tmp_path):
    spec = load_experiment(REPO_ROOT / "experiments" / "genre.yaml", [*TINY, f"output={tmp_path}"])
    best = tmp_path / "best"
    best.mkdir()
    for name in ("model_1.keras", "model_2.keras", "notes.txt", "my_model.keras"):
        (best / name).write_text("x")
    no_finished_trial = SimpleNamespace(oracle=SimpleNamespace(trials={}))
    assert save_best_models(no_finished_trial, spec, None, tmp_path) == []
    assert sorted(os.listdir(best)) == ["my_model.keras", "notes.txt"]


@pytest.mark.slow
def test_a_second_search_on_a_locked_folder_is_refused(tmp_path, data_dir, cache_dir):
    run = tmp_path / "run"
    with folder_lock(run):
        held = (run / ".lock").read_text()
        result = subprocess.run(
            [sys.executable, "-m", "artgan", *search_args(run)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        error = result.stderr.strip().splitlines()
        assert error[-1].startswith(
            f"artgan: error: {run} is in use by another search (pid {os.getpid()} on "
        )
        assert "Traceback" not in result.stderr
        assert os.listdir(run) == [".lock"] and (run / ".lock").read_text() == held  # nothing new
        spec = load_experiment(REPO_ROOT / "experiments" / "genre.yaml", [*TINY, f"output={run}"])
        with pytest.raises(ArtganError, match="in use by another search"):
            Launcher(spec, worker_command("genre", [], run), workers=0).run()  # nor distributed
        assert os.listdir(run) == [".lock"]


HOLDER = """
import sys, time
from artgan.files import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_the_lock_goes_with_its_holder_even_on_kill_9(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    with killed_on_exit(holder):
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(
            ArtganError, match=rf"\(pid {holder.pid} on .*: .*python -c .*folder_lock"
        ):
            with folder_lock(tmp_path):
                pass
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_leaderboard_leaves_out_columns_no_trial_has():
    from artgan.tuning.results import leaderboard

    table = pd.DataFrame(
        {
            "trial_id": ["1", "0"],
            "status": ["COMPLETED", "PRUNED"],
            "score": [0.9, 0.5],
            "val_accuracy": [0.9, 0.5],
            "val_top5_accuracy": [None, None],
            "hp/lstm_units": [64, 128],
            "hp/momentum": [None, None],
            "hp/tuner/epochs": [2, 2],
        }
    )
    lines = leaderboard(table).splitlines()
    assert lines[0].split() == [
        "rank",
        "trial_id",
        "status",
        "score",
        "val_accuracy",
        "lstm_units",
    ]
    assert lines[1].split() == ["1", "1", "COMPLETED", "0.9", "0.9", "64"]


def test_one_filter_picks_the_searched_hyperparameter_columns(tmp_path):
    """The leaderboard and the report read the same columns: KerasTuner's hp/tuner/* left out."""
    from artgan.report.run import Run
    from artgan.runfolder import hp_columns

    columns = [
        "trial_id",
        "hp/lstm_units",
        "hp/tuner/epochs",
        "hp/tuner/bracket",
        "score",
        "hp/backbone",
    ]
    assert hp_columns(columns) == ["hp/lstm_units", "hp/backbone"]
    run = Run(tmp_path, None, "", pd.DataFrame(columns=columns), {}, [])
    assert run.hp_columns == hp_columns(columns)
