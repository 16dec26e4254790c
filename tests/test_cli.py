"""The command line: help, and clean errors (exit 2, no traceback) for user mistakes."""

import subprocess
import sys

from artgan.paths import REPO_ROOT


def artgan(*args, env=None):
    import os

    environment = dict(os.environ, **(env or {}))
    environment.pop("WIKIART_IMAGES", None)
    return subprocess.run([sys.executable, "-m", "artgan", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=environment, timeout=300)


def test_help_lists_commands():
    result = artgan("--help")
    assert result.returncode == 0
    for command in ("search", "predict", "evaluate"):
        assert command in result.stdout


def test_artist_task_explains_missing_images(data_dir, tmp_path):
    output = tmp_path / "artist"
    result = artgan("search", "artist", "--set", f"output={output}")
    assert result.returncode == 2
    assert "WIKIART_IMAGES" in result.stderr and "WikiArt" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()  # nothing written for a search that cannot start


def test_bad_spec_is_a_clean_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("task: genre\nbudget: {max_trials: -1}\n")
    result = artgan("search", str(spec))
    assert result.returncode == 2
    assert "bad.yaml: budget.max_trials" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_is_a_clean_error(tmp_path):
    result = artgan("predict", str(tmp_path / "nope.keras"), "x.jpg")
    assert result.returncode == 2 and "model file not found" in result.stderr
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr  # TF start-up noise
