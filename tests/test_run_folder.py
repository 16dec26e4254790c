"""Run folders: --fresh deletes only what artgan made."""

import os
from types import SimpleNamespace

import pytest

from artgan.cli import main
from artgan.errors import ArtganError
from artgan.files import clear_folder
from artgan.paths import REPO_ROOT
from artgan.search import save_best_models
from artgan.spec import load_experiment
from support import TINY


def search_args(output, *extra):
    return ["search", "genre", *sum((["--set", s] for s in [*TINY, "budget.max_trials=1", f"output={output}"]), []), *extra]


def test_fresh_refuses_a_folder_artgan_did_not_make(tmp_path, data_dir, cache_dir, capsys):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    assert main(search_args(mine, "--fresh")) == 2
    error = capsys.readouterr().err
    assert f"{mine}: not emptied" in error and "fingerprint" in error and "thesis.tex" in error
    assert sorted(p.name for p in mine.iterdir()) == ["photos", "thesis.tex"]


def test_fresh_empties_an_artgan_run_folder_but_follows_no_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not artgan's")
    run = tmp_path / "run"
    (run / "tuner" / "trial_0").mkdir(parents=True)
    for name in ("fingerprint", "trials.csv"):
        (run / name).write_text("x")
    (run / "link").symlink_to(elsewhere)
    clear_folder(run, "fingerprint")
    assert list(run.iterdir()) == []
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
