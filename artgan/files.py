"""Files that readers never see half-written, even when a writer is killed mid-way.

Caches, indexes, models and trial tables are read by other processes (later trials, search
workers, reports) while they may be rewritten; every writer goes through `atomic_path`.
"""

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def exclusive_lock(lock_path):
    """Hold an flock on `lock_path` (created if needed). The kernel releases it when its
    holder dies, so a stale lock file is harmless."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
