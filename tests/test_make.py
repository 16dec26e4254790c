"""`make test` on a clean machine installs what the tests need, not only `.ci/run`."""

import shutil
import subprocess

import pytest

from artgan.paths import REPO_ROOT

pytestmark = [pytest.mark.slow]

MAKE = shutil.which("make")
UPDATE = "apt-get update -qq"
INSTALL = "apt-get install -y -qq chromium"
SUDO = "sudo env DEBIAN_FRONTEND=noninteractive "  # sudo drops the environment
LINT = ("ruff check", "ruff format --check", "bin/mypy")


def make(tmp_path, *args, uid=0, chromium=False):
    """Run make with only stub `id`, `sudo`, `apt-get` (and `chromium`) on PATH; returns the
    result and the commands the stubs were given."""
    stubs, calls = tmp_path / "bin", tmp_path / "calls"
    stubs.mkdir(parents=True)
    scripts = {
        "id": f"echo {uid}",
        "apt-get": f'echo "apt-get $*" >> {calls}',
        "sudo": f'echo "sudo $*" >> {calls}\nexec "$@"',
    }
    if chromium:
        scripts["chromium"] = "exit 0"
    for name, body in scripts.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    (stubs / "env").symlink_to(shutil.which("env"))
    result = subprocess.run(
        [MAKE, *args],
        cwd=REPO_ROOT,
        env={"PATH": str(stubs)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize(
    "uid, expected",
    [
        (0, [UPDATE, INSTALL]),
        (1000, [SUDO + UPDATE, UPDATE, SUDO + INSTALL, INSTALL]),
    ],
)
def test_deps_installs_chromium_when_missing(tmp_path, uid, expected):
    result, calls = make(tmp_path, "deps", uid=uid)
    assert result.returncode == 0, result.stderr
    assert calls == expected


def test_deps_does_nothing_when_chromium_is_there(tmp_path):
    result, calls = make(tmp_path, "deps", chromium=True)
    assert result.returncode == 0, result.stderr
    assert calls == []


def test_make_test_runs_deps_and_ci_only_calls_make_test(tmp_path):
    result, _ = make(tmp_path, "--dry-run", "test")
    assert result.returncode == 0, result.stderr
    assert INSTALL in result.stdout and "-m pytest" in result.stdout
    assert all(check in result.stdout for check in LINT), result.stdout
    assert (REPO_ROOT / ".ci" / "run").read_text().strip().endswith("\nmake test")
    assert "apt-get" not in (REPO_ROOT / ".ci" / "run").read_text()


def test_the_fast_tier_lints_and_type_checks_first(tmp_path):
    result, _ = make(tmp_path, "--dry-run", "test-fast")
    assert result.returncode == 0, result.stderr
    positions = [result.stdout.find(check) for check in (*LINT, "-m pytest")]
    assert -1 not in positions and positions == sorted(positions), result.stdout


def test_compare_and_explain_pass_their_arguments(tmp_path):
    result, _ = make(tmp_path, "--dry-run", "compare", "RUNS=runs/a runs/b", "OUT=cmp")
    assert result.returncode == 0, result.stderr
    assert "-m artgan compare runs/a runs/b --out cmp" in result.stdout
    result, _ = make(
        tmp_path / "again", "--dry-run", "explain", "MODEL=m.keras", "IMAGES=a.jpg b.jpg"
    )
    assert "-m artgan explain m.keras a.jpg b.jpg --out heat" in result.stdout


def test_similar_indexes_and_evaluates_the_same_extractors(tmp_path):
    """Every registered backbone named in SIMILAR_BACKBONES, the baseline and the models are
    indexed, and each one indexed is evaluated."""
    from artgan.model.backbones import BACKBONES

    result, _ = make(tmp_path, "--dry-run", "similar", "MODEL=m.keras")
    assert result.returncode == 0, result.stderr
    indexing, evaluating = result.stdout.splitlines()[-2:]
    extractors = indexing.split(" in ")[1].split(";")[0].split()
    assert extractors[0] == "handcrafted" and extractors[-1] == "model:m.keras"
    assert set(extractors[1:-1]) <= set(BACKBONES) and "efficientnet_lite0" in extractors
    assert [e.strip() for e in evaluating.split("--extractor ")[1:]] == extractors


def test_help_names_every_target(tmp_path):
    """`make help` prints the header comment, and it shows every target the Makefile has."""
    result = subprocess.run(
        [MAKE, "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = {
        t
        for line in makefile.splitlines()
        if line.startswith(".PHONY:")
        for t in line.split(":", 1)[1].split()
    } - {"help"}
    assert targets >= {"worker", "bench", "clean-cache", "similar", "data"}
    shown = {t for t in targets if f"make {t}" in result.stdout}
    assert shown == targets, f"missing from make help: {sorted(targets - shown)}"
    assert "make report TASK=runs/genre-quick" in result.stdout
