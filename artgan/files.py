"""Files that readers never see half-written, even when a writer is killed mid-way; run
folders that artgan empties only when it made them.

Caches, indexes, models and trial tables are read by other processes (later trials, search
workers, reports) while they may be rewritten; every writer goes through `atomic_path`.
"""

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from artgan.errors import ArtganError


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside `path`; on success make it durable and rename it over
    `path`, on error delete it. `suffix` is for writers that insist on one (`.keras`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path, text):
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def read_json(path, retries=3):
    """A small JSON file's content, or {} when it is missing; a file that another process
    writes without renaming can be caught half-written, so parse errors are retried."""
    for attempt in range(retries):
        try:
            return json.loads(Path(path).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            time.sleep(0.1 * (attempt + 1))
    return {}


def check_removable(folder, marker, keep=()):
    """Refuse (ArtganError) to empty `folder` unless artgan made it: it holds `marker`, a
    file artgan writes there, or nothing but `keep`. A missing folder is fine."""
    folder = Path(folder)
    if not folder.exists() or (folder / marker).is_file():
        return
    if not folder.is_dir():
        raise ArtganError(f"{folder}: not removed: it is a file, not an artgan run folder")
    foreign = sorted(entry.name for entry in folder.iterdir() if entry.name not in keep)
    if foreign:
        named = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ArtganError(
            f"{folder}: not emptied: it has no {marker} file, so artgan did not make it, and it "
            f"holds {named}; empty it yourself or choose another folder"
        )


def clear_folder(folder, marker, keep=()):
    """Delete everything in `folder` but `keep`, after `check_removable` (links are removed,
    never followed)."""
    folder = Path(folder)
    check_removable(folder, marker, keep)
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
