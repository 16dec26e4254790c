"""Where things live: the shipped experiments and search spaces, the data root, the caches.

The library writes only where it is told: run folders come from the spec (`output:`), reports
and indexes from their callers, caches from `ARTGAN_CACHE` (else the user's cache folder).
The command line points the cache into the checkout (`.cache/images`), as `make` does.

artgan runs from a checkout (`make`, `pip install -e .`) or installed from a wheel. The
default experiments and search spaces ship inside the package either way (the checkout's
top-level `experiments/` and `search_spaces/` are links to them); what lies beside the
checkout (`../shared/data`, `.cache/`, `runs/`) exists only in a checkout, so an installed
artgan needs `ARTGAN_DATA` and writes its default folders under the current folder.
"""

import os
from pathlib import Path

from artgan.errors import ArtganError

PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE.parent
EXPERIMENTS = PACKAGE / "experiments"
SEARCH_SPACES = PACKAGE / "search_spaces"


def checkout() -> Path | None:
    """The checkout artgan runs from (its `pyproject.toml` beside the package), or None when
    artgan is installed from a wheel."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


def work_root() -> Path:
    """Where default output folders (`runs/`, `reports/`, `data/`) go: the checkout, else the
    current folder."""
    return checkout() or Path.cwd()


def data_root() -> Path:
    """Root of the real data: `ARTGAN_DATA`, else `../shared/data` beside the checkout. An
    installed artgan has no checkout, so there `ARTGAN_DATA` must be set."""
    if os.environ.get("ARTGAN_DATA"):
        root = Path(os.environ["ARTGAN_DATA"]).expanduser()
        if not root.is_dir():
            raise ArtganError(
                f"ARTGAN_DATA={root}: no such folder; set it to the folder "
                "holding the data (louvre-genre4/, wikiart-style7/, ...)"
            )
        return root
    if checkout() is None:
        raise ArtganError(
            "ARTGAN_DATA is not set: an installed artgan has no default data "
            "folder; set it to the folder holding the data (louvre-genre4/, "
            "wikiart-style7/, ...), e.g. ARTGAN_DATA=~/paintings"
        )
    return REPO_ROOT.parent / "shared" / "data"


def cache_root() -> Path:
    """Folder for decoded, resized images and embeddings: `ARTGAN_CACHE`, else
    `$XDG_CACHE_HOME/artgan` (default `~/.cache/artgan`)."""
    if os.environ.get("ARTGAN_CACHE"):
        return Path(os.environ["ARTGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artgan"


def checkout_cache() -> Path | None:
    """The cache folder inside the checkout, which the command line uses by default (None
    when installed: the user's cache folder, `cache_root()`, is used)."""
    root = checkout()
    return root / ".cache" / "images" if root else None
