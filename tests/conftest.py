"""Shared fixtures: the real data root (required, never silently skipped)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the CLI does

import pytest

from artgan.paths import data_root


@pytest.fixture(scope="session")
def data_dir():
    """The real shared data; a missing folder fails loudly instead of skipping."""
    root = data_root()
    if not (root / "README.md").is_file():
        pytest.fail(
            f"real data not found at {root}: clone next to shared/data or set ARTGAN_DATA",
            pytrace=False,
        )
    return root


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """A private decoded-image cache so tests never share state."""
    path = tmp_path / "cache"
    monkeypatch.setenv("ARTGAN_CACHE", str(path))
    return path
