"""Files that readers never see half-written, even when a writer is killed mid-way; run
folders that one search at a time uses, and that artgan empties only when it made them.

Caches, indexes, models and trial tables are read by other processes (later trials, search
workers, reports) while they may be rewritten; every writer goes through `atomic_path`, or
for large arrays built row by row `ResumableArrays` (renamed into place when complete, and
resumed, not restarted, after a kill).
"""

import errno
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from artgan.errors import ArtganError, DiskFull

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
ANNOUNCED_BYTES = 100 * 10**6  # `allocate_array` logs what it takes from this size on
SAVE_SECONDS = 30  # how often a `ResumableArrays` build records its progress


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside `path`; on success make it durable and rename it over
    `path`, on error delete it. `suffix` is for writers that insist on one (`.keras`)."""
    path = Path(path)
    with clear_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=suffix)
        os.close(handle)
    temporary = Path(name)
    try:
        with clear_write_errors(path, only_space=True):  # the writer may read other files
            yield temporary
        with clear_write_errors(path):
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST)


def disk_full(path, needed=None):
    """The one message for a full file system (`needed` in bytes, when known)."""
    amount = f"about {max(1, round(needed / 1e6))} MB" if needed else "more space"
    return DiskFull(f"disk full: needs {amount} at {path}; free some space and rerun to resume")


def as_disk_full(error):
    """`error` as a `DiskFull` if it says the disk is full (raised by another library's
    writer too), else None."""
    if isinstance(error, DiskFull):
        return error
    if isinstance(error, OSError) and error.errno in NO_SPACE:
        return disk_full(error.filename or "the output or cache folder")
    return None


@contextmanager
def clear_write_errors(path, only_space=False):
    """Turn an OSError raised while writing `path` into a one-line ArtganError naming it:
    a full disk, or (unless `only_space`) a read-only or unwritable folder. Other errors
    keep their traceback."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE:
            raise disk_full(path) from None
        if only_space or error.errno not in UNWRITABLE:
            raise
        if error.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a file stands where a folder should be"
        else:
            reason = error.strerror + (f" ({error.filename})" if error.filename else "")
        raise ArtganError(f"cannot write {path}: {reason}") from None


def check_space(path, needed):
    """Refuse (ArtganError) before writing `needed` bytes at `path` if they do not fit."""
    folder = Path(path).parent
    if needed > shutil.disk_usage(folder).free:
        raise disk_full(folder, needed)


def allocate_array(path, dtype, shape):
    """A writable .npy memmap at `path` whose blocks are all allocated up front, so a full
    file system is an ArtganError here instead of a SIGBUS when a hole is written later.
    A large one says how much it takes before it is written."""
    needed = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize + 4096  # + header
    check_space(path, needed)
    if needed >= ANNOUNCED_BYTES:
        log.info(
            "%s: writing %s (%s free there)",
            Path(path).name,
            gigabytes(needed),
            gigabytes(shutil.disk_usage(Path(path).parent).free),
        )
    with clear_write_errors(path):
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        try:
            with open(path, "rb+") as stream:
                os.posix_fallocate(stream.fileno(), 0, os.fstat(stream.fileno()).st_size)
        except OSError as error:
            if error.errno in NO_SPACE:
                raise disk_full(Path(path).parent, needed) from None
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate there: sparse
                raise
    return array


#: How a cell starts that spreadsheets run as a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(frame, **options):
    """`frame` as CSV text (no index) that is safe to open in a spreadsheet: a text cell or
    header that starts like a formula gets a leading single quote, as OWASP advises, so a
    class name or title `=HYPERLINK(...)` stays text. Numbers are written as they are."""

    def neutral(value):
        formula = isinstance(value, str) and len(value) > 1 and value.startswith(FORMULA_START)
        return "'" + value if formula else value  # a lone "-" (no value) stays as it is

    safe = frame.rename(columns=neutral)
    for column in range(safe.shape[1]):
        values = safe.iloc[:, column]
        if values.dtype.kind not in "biufcmM":  # text, objects, categories: not numbers, dates
            safe.isetitem(column, values.astype(object).map(neutral))
    return safe.to_csv(index=False, **options)


def gigabytes(size):
    return f"{size / 1e9:.2f} GB" if size >= 1e7 else f"{size / 1e6:.1f} MB"


class ResumableArrays:
    """Preallocated `.npy` arrays that a build fills in row order and that outlive a kill.

    `arrays` is {name: (final path, shape)}. Each is written at `<final path>.partial`; the
    builder calls `checkpoint(done, **state)` as rows get done, and every `SAVE_SECONDS` the
    arrays are flushed and the rows done (plus `state`, JSON: failures so far, say) recorded
    in `record`. A later build with the same `key` reopens the arrays and starts at `done`
    (with `state`) instead of at 0; `finish()` renames each into place and drops the record.
    Builders hold the entry's lock (`load_or_build`), so one process writes them at a time.
    """

    def __init__(self, arrays, dtype, record, key):
        self.record, self.key = Path(record), key
        self.finals = {name: Path(path) for name, (path, _) in arrays.items()}
        self.done, self.state = 0, {}
        self.arrays = self._reopen(arrays, dtype)
        if self.arrays is None:
            self.arrays = self._allocate(arrays, dtype)
            self._save()
        elif self.done:
            log.info("%s: resuming a build stopped at row %d", self.record.name, self.done)
        self.saved_at = time.monotonic()

    def _reopen(self, arrays, dtype):
        saved = read_json(self.record)
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return None
        try:
            opened = {
                name: np.load(_partial(path), mmap_mode="r+") for name, (path, _) in arrays.items()
            }
        except (OSError, ValueError):
            return None
        if any(
            opened[name].shape != tuple(shape) or opened[name].dtype != np.dtype(dtype)
            for name, (_, shape) in arrays.items()
        ):
            return None
        self.done, self.state = int(saved.get("done", 0)), dict(saved.get("state", {}))
        return opened

    def _allocate(self, arrays, dtype):
        """Fresh partial arrays; none is left behind when one cannot be made (full disk)."""
        made = {}
        try:
            for name, (path, shape) in arrays.items():
                made[name] = None
                made[name] = allocate_array(_partial(path), dtype, shape)
        except BaseException:
            for name in made:
                _partial(self.finals[name]).unlink(missing_ok=True)
            raise
        return made

    def checkpoint(self, done, **state):
        """Rows before `done` are written; record that (with `state`) when it is time."""
        self.done, self.state = done, state
        if time.monotonic() - self.saved_at >= SAVE_SECONDS:
            self._save()
            self.saved_at = time.monotonic()

    def _save(self):
        for array in self.arrays.values():
            array.flush()  # the rows first, then the record that says they are there
        write_text_atomic(
            self.record, json.dumps({"key": self.key, "done": self.done, "state": self.state})
        )

    def finish(self):
        """Make every array durable and rename it into place; drop the progress record."""
        for name, array in self.arrays.items():
            array.flush()
            partial = _partial(self.finals[name])
            with clear_write_errors(partial):
                with open(partial, "rb+") as stream:
                    os.fsync(stream.fileno())
                os.chmod(partial, 0o666 & ~_umask())
                os.replace(partial, self.finals[name])
        self.arrays.clear()
        self.record.unlink(missing_ok=True)


def _partial(path):
    return Path(f"{path}.partial")


def write_text_atomic(path, text):
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
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


def check_removable(folder, marker, keep=(LOCK_FILE,)):
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


def clear_folder(folder, marker, keep=(LOCK_FILE,)):
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


@contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on `folder` (its `.lock` file) while the block runs, or refuse
    (ArtganError) naming the process that holds it. The kernel releases a `flock` when its
    holder dies, even by kill -9, so a lock file left behind never blocks anyone."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    with clear_write_errors(path):
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # not "w": that would wipe the holder's details
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArtganError(
                f"{folder} is in use by another search ({_holder(path)}); wait for it to end, "
                "or choose another output folder"
            ) from None
        handle.truncate(0)
        command = " ".join(shlex.join(sys.orig_argv).split())  # one line, even for `python -c`
        handle.write(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command})
        )
        handle.flush()
        try:
            yield folder
        finally:
            handle.truncate(0)


def folder_in_use(folder):
    """Who holds `folder`'s lock (a running search), as words; None when nobody does.
    Changes nothing: a folder without a lock file is not in use."""
    path = Path(folder) / LOCK_FILE
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def not_a_file(path, what="file"):
    """The error for a `path` that is not a regular file to read: missing, a folder, or a
    special file (a FIFO or device, which reading would block on or never end)."""
    path = Path(path)
    if not path.exists():
        return ArtganError(f"{path}: {what} not found")
    kind = "a folder" if path.is_dir() else "not a regular file (a FIFO, device or socket)"
    return ArtganError(f"{path}: {what} is {kind}; give a regular file")


def _holder(lock_file):
    holder = read_json(lock_file)
    if not isinstance(holder, dict) or "pid" not in holder:
        return "a process that has not said who it is yet"
    return f"pid {holder['pid']} on {holder.get('host', '?')}: {holder.get('command', '?')}"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def exclusive_lock(lock_path):
    """Hold an flock on `lock_path` (created if needed). The kernel releases it when its
    holder dies, so a stale lock file is harmless."""
    with clear_write_errors(lock_path):
        handle = open(lock_path, "a")
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_folder(path):
    """`mkdir -p`, with a one-line error when it cannot be made (see `clear_write_errors`)."""
    with clear_write_errors(path):
        Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def load_or_build(cache_dir, key, load, build):
    """A cache entry: `load()` it (None when missing or invalid), else `build()` it first.

    Building happens under a lock on `<cache_dir>/<key>.lock` (the folder must exist), so
    processes that need the same entry build it once; temp files a killed build left
    (`<key>.*.tmp`) are removed first. Returns (entry, whether this call built it)."""
    cache_dir = Path(cache_dir)
    found = load()
    if found is not None:
        return found, False
    refuse_while_starting_a_worker()
    with exclusive_lock(cache_dir / f"{key}.lock"):
        found = load()  # another process may have built it while we waited for the lock
        if found is not None:
            return found, False
        for stale in cache_dir.glob(f"{key}.*.tmp"):
            stale.unlink(missing_ok=True)
        build()
        found = load()
    if found is None:
        raise ArtganError(f"{cache_dir / key}: the cache entry just written cannot be read back")
    return found, True


def refuse_while_starting_a_worker() -> None:
    """Refuse to build in a worker process that is still importing its parent's main script
    (spawn and forkserver workers run it again): a script without an `if __name__ ==
    "__main__":` guard would otherwise wait forever for the lock its parent holds while the
    parent waits for the worker. CPython marks such a start with `_inheriting`."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ArtganError(
            "a worker process is re-running the main script, which starts an artgan build: "
            "put the script's code under `if __name__ == '__main__':`"
        )


#: An entry inflating more than this is a zip bomb (JPEGs and model weights hardly compress).
MAX_ZIP_RATIO = 200


def check_zip_sizes(zip_path, members, max_total) -> None:
    """Refuse (ArtganError) zip entries (`ZipInfo`s) that inflate beyond `max_total` bytes in
    all, or one over 1 MiB that inflates more than MAX_ZIP_RATIO times its compressed size.
    The sizes are those the archive declares: reading an entry never goes past its own."""
    total = sum(info.file_size for info in members)
    if total > max_total:
        raise ArtganError(
            f"{zip_path}: refused: its entries inflate to {total} bytes, more than "
            f"the limit of {max_total} (zip bomb?)"
        )
    for info in members:
        inflated = info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1)
        if inflated and info.file_size > 1 << 20:
            raise ArtganError(
                f"{zip_path}: refused: entry {info.filename!r} inflates "
                f"{info.compress_size} to {info.file_size} bytes (zip bomb?)"
            )


def file_sha256(path) -> str:
    """The sha256 of a file's contents, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
