"""artgan installed from a wheel (not the checkout): the `artgan` command finds its default
experiments and search spaces inside the package and runs the default genre search on a
data folder the user names; nothing is downloaded (`--no-index`)."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from artgan.paths import REPO_ROOT

from support import TINY

pytestmark = [pytest.mark.slow]


def pip(*args):
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of a copy of the checkout's package files, installed into a folder of its
    own (the tests' environment provides the dependencies)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # building writes build/ and *.egg-info: keep them out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "artgan", source / "artgan", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip("wheel", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(source))
    (wheel,) = (tmp / "dist").glob("artgan-*.whl")
    pip("install", "--target", str(tmp / "site"), str(wheel))
    return tmp / "site"


def run(installed, tmp_path, *args, data=True):
    """The installed `artgan` command, run from a folder outside the checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ARTGAN_DATA", "ARTGAN_CACHE", "WIKIART_IMAGES")
    }
    env.update(
        PYTHONPATH=str(installed),
        XDG_CACHE_HOME=str(tmp_path / "user-cache"),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    if data:
        env["ARTGAN_DATA"] = str(REPO_ROOT.parent / "shared" / "data")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        [str(installed / "bin" / "artgan"), *args],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=600,
    )


def test_the_installed_package_is_the_one_that_runs(installed, tmp_path):
    """The wheel's package, not the checkout's, is what `artgan` imports; it has help."""
    where = subprocess.run(
        [sys.executable, "-c", "import artgan; print(artgan.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(installed)),
    )
    assert where.stdout.strip() == str(installed / "artgan" / "__init__.py")
    result = run(installed, tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "search" in result.stdout and "ARTGAN_DATA" in result.stdout


def test_without_a_data_folder_the_error_says_what_to_set(installed, tmp_path):
    result = run(installed, tmp_path, "search", "genre", data=False)
    assert result.returncode == 2
    assert result.stderr.startswith("artgan: error: ARTGAN_DATA is not set")
    assert "Traceback" not in result.stderr


def test_default_genre_search_runs_on_a_named_data_folder(installed, tmp_path, data_dir):
    """`ARTGAN_DATA=... artgan search genre`: the packaged experiment and search space, the
    real Louvre paintings, output under the current folder, cache in the user's cache."""
    sets = [*TINY, "budget.max_trials=1", "training.best_models=1"]
    result = run(installed, tmp_path, "search", "genre", *[f"--set={s}" for s in sets])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_folder = tmp_path / "work" / "runs" / "genre"
    trials = pd.read_csv(run_folder / "trials.csv")
    assert list(trials["status"]) == ["COMPLETED"]
    assert "search_spaces/crnn.yaml" in (run_folder / "spec.yaml").read_text()
    assert (run_folder / "best" / "model_1.keras").is_file()
    assert any((tmp_path / "user-cache" / "artgan").iterdir())
