"""A full disk gives one clear ArtganError, leaves no partial files, and a rerun resumes
(issue 9 item 3). ENOSPC is injected; nothing here needs a real full file system."""

import errno
import os
import shutil
from collections import namedtuple

import numpy as np
import pytest

from artgan import files
from artgan.data.images import cache_images
from artgan.errors import ArtganError

Usage = namedtuple("Usage", "total used free")


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def images(tmp_path, n=3):
    from PIL import Image

    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 10), (i * 40, 0, 0)).save(paths[-1])
    return paths


def test_image_cache_refuses_when_free_space_is_short(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 100, 100))
    with pytest.raises(ArtganError, match=r"^disk full: needs about \d+ MB at .*cache"):
        cache_images(images(tmp_path), 32, cache_dir=cache, progress=False)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()  # space freed: the rerun builds the cache
    assert cache_images(images(tmp_path), 32, cache_dir=cache, progress=False).ok.all()


def test_image_cache_is_preallocated_not_sparse(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(ArtganError, match="^disk full: needs about"):
        cache_images(images(tmp_path), 32, cache_dir=cache, progress=False)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_allocated_array_has_no_holes(tmp_path):
    array = files.allocate_array(tmp_path / "a.npy", np.uint8, (4, 1024, 1024))
    stat = os.stat(tmp_path / "a.npy")
    assert stat.st_blocks * 512 >= stat.st_size  # every block allocated: no SIGBUS later
    del array


def test_enospc_while_writing_a_result_is_one_line(tmp_path):
    target = tmp_path / "out" / "trials.csv"
    with pytest.raises(ArtganError, match=f"^disk full: needs more space at {target}"):
        with files.atomic_path(target) as temporary:
            temporary.write_text("partial")
            no_space()
    assert list(target.parent.iterdir()) == []


def test_keras_tuner_state_survives_a_full_disk(tmp_path, monkeypatch):
    """KerasTuner's trial.json/oracle.json writer goes through atomic_path (once installed)."""
    import keras_tuner as kt

    from artgan.tuning._kt_compat import install_atomic_state_writer

    install_atomic_state_writer()

    state = tmp_path / "trial.json"
    state.write_text('{"old": 1}')
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ArtganError, match=f"^disk full: needs more space at {state}"):
        kt.src.utils.save_json(str(state), {"new": 2})
    assert state.read_text() == '{"old": 1}' and list(tmp_path.iterdir()) == [state]


@pytest.mark.slow
def test_a_full_disk_stops_the_search_without_spending_trials(
    tmp_path, data_dir, cache_dir, monkeypatch, capsys
):
    """The image cache is built inside a trial: a full disk used to fail trial after trial
    (a traceback each), KerasTuner gave up after three, and the rerun ran none of them."""
    from artgan.config.spec import load_experiment
    from artgan.errors import DiskFull
    from artgan.files import read_json
    from artgan.paths import REPO_ROOT
    from artgan.tuning.tuner import run_search

    from support import TINY

    spec = load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml",
        [*TINY, "budget.max_trials=2", f"output={tmp_path / 'run'}"],
    )
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 100, 100))
    with pytest.raises(
        DiskFull,
        match=r"^disk full: needs about \d+ MB .*trial 0 was stopped, "
        "not counted: the rerun runs it\\)$",
    ):
        run_search(spec)
    trials = sorted((spec.output_dir / "tuner").glob("trial_*/trial.json"))
    assert [read_json(t)["status"] for t in trials] == ["RUNNING"]  # the one begun, not spent
    assert "disk full" in read_json(spec.output_dir / "search.json")["stopped"]
    assert "Traceback" not in "".join(capsys.readouterr())

    monkeypatch.undo()  # space freed: the rerun spends the whole budget
    monkeypatch.setenv("ARTGAN_CACHE", str(cache_dir))
    table = run_search(spec)
    assert sorted(table["trial_id"].astype(str)) == ["0", "1"]
    assert (table["status"] == "COMPLETED").all()
    stopped = read_json(spec.output_dir / "search.json")["stopped"]
    assert stopped == "trial budget: 2 of 2 trials ran"
