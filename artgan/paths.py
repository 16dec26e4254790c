"""Where things live: the shared data root, the decoded-image cache and run outputs."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Root of the real data; `ARTGAN_DATA` overrides the `../shared/data` default."""
    return Path(os.environ.get("ARTGAN_DATA", REPO_ROOT.parent / "shared" / "data"))


def cache_root() -> Path:
    """Folder for decoded, resized images; `ARTGAN_CACHE` overrides `.cache/images`."""
    return Path(os.environ.get("ARTGAN_CACHE", REPO_ROOT / ".cache" / "images"))
