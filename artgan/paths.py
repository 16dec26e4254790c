"""Where things live: the shared data root and the caches.

The library writes only where it is told: run folders come from the spec (`output:`), reports
and indexes from their callers, caches from `ARTGAN_CACHE` (else the user's cache folder).
The command line points the cache into the checkout (`.cache/images`), as `make` does.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Root of the real data; `ARTGAN_DATA` overrides the `../shared/data` default."""
    return Path(os.environ.get("ARTGAN_DATA", REPO_ROOT.parent / "shared" / "data"))


def cache_root() -> Path:
    """Folder for decoded, resized images and embeddings: `ARTGAN_CACHE`, else
    `$XDG_CACHE_HOME/artgan` (default `~/.cache/artgan`)."""
    if os.environ.get("ARTGAN_CACHE"):
        return Path(os.environ["ARTGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artgan"


def checkout_cache() -> Path:
    """The cache folder inside this checkout, which the command line uses by default."""
    return REPO_ROOT / ".cache" / "images"
