"""Decode images once into an on-disk cache of resized uint8 arrays.

Decoding JPEG/WebP/PNG is the slowest part of a small-image training run, and a search
repeats it for every trial and epoch.  So each (file list, size, resize policy) is decoded
once, in parallel, into `<cache_dir>/<key>.npy`; later calls (and other processes) memory-map
that file instead of decoding again. A build killed half way resumes where it stopped: rows
are decoded in order into `<key>.npy.partial`, and `<key>.progress.json` records how far.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import os
import select
import stat
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artgan.data.resources import decode_workers
from artgan.errors import ArtganError
from artgan.files import ResumableArrays, gigabytes, load_or_build, make_folder, write_text_atomic
from artgan.paths import cache_root
from artgan.progress import progress_bar, spending

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("letterbox", "stretch", "crop")
MAX_PIXELS = 120_000_000
DECODER_VERSION = 2  # bump when decoding changes, so old caches are not reused
MIN_PARALLEL = 64  # below this, pool start-up costs more than it saves


class ImageError(ArtganError):
    """An image file that cannot be decoded; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# ----------------------------------------------------------------------------- decoding


def decode_image(path, size: int, resize: str = "letterbox") -> np.ndarray:
    """Decode one file by content and return a (size, size, 3) uint8 RGB array."""
    _check_args(size, resize)
    rgb = _read_rgb(Path(path), size, resize)
    return _resize(rgb, size, resize)


def _check_args(size, resize) -> None:
    if resize not in RESIZE_POLICIES:
        raise ArtganError(f"unknown resize policy {resize!r}; expected one of {RESIZE_POLICIES}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ArtganError(f"image size must be a positive integer, got {size!r}")


def _read_rgb(path: Path, size: int, resize: str) -> np.ndarray:
    """Open with Pillow (which sniffs the content, not the extension) and return HxWx3 uint8.

    Pillow raises many exception types on hostile or broken files; at this boundary they
    all mean "this file is unusable", so they become ImageError.
    """
    try:
        with warnings.catch_warnings():
            # One bomb policy, ours (MAX_PIXELS, checked from the header below), without
            # changing Pillow's global limit: its warning is ignored, its error still refuses.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_regular(path) as stream, Image.open(stream) as im:  # reads the header only
                _check_pixels(path, im.size)
                if im.format == "JPEG":
                    _draft_jpeg(im, size, resize)
                return _to_rgb(ImageOps.exif_transpose(im))  # decodes the (first) frame
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except UnidentifiedImageError:
        raise ImageError(
            path, "not a recognised image format (empty, corrupt or not an image)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise ImageError(
            path, f"truncated or corrupt image ({type(exc).__name__}: {exc})"
        ) from None


SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_regular(path: Path):
    """`path` opened for binary reading, refused (ImageError) unless it is a regular file
    (links followed). It is opened without blocking and checked on the open file, so a named
    pipe cannot hang the caller, nor a device feed it without end."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:  # a socket (or a device without its driver)
            raise ImageError(
                path, "not a regular file but a socket or device; only image files are read"
            ) from None
        raise
    try:
        mode = os.fstat(handle).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError(path, "is a directory, not an image file")
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in SPECIAL_FILES if test(mode)), "a special file")
            raise ImageError(path, f"not a regular file but {kind}; only image files are read")
        os.set_blocking(handle, True)
        return os.fdopen(handle, "rb")
    except BaseException:
        os.close(handle)
        raise


def _check_pixels(path, dims) -> None:
    """Refuse huge images from the header, before any pixel memory is allocated."""
    w, h = dims
    if w * h > MAX_PIXELS:
        raise ImageError(
            path,
            f"too large: {w}x{h} = {w * h:,} pixels > MAX_PIXELS {MAX_PIXELS:,} (decompression-bomb guard)",
        )


def _draft_jpeg(im: Image.Image, size: int, resize: str) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the output.

    A 6848x4248 photo resized to 128 px needs only an 856x531 decode: about 8x faster and
    64x less memory.  The request is the smallest image the resize step will still shrink.
    """
    w, h = im.size
    if resize == "stretch":
        want = (size, size)
    else:
        side = max(w, h) if resize == "letterbox" else min(w, h)
        want = (max(1, -(-w * size // side)), max(1, -(-h * size // side)))
    if w >= 2 * want[0] and h >= 2 * want[1]:
        im.draft(im.mode, want)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _sixteen_to_eight(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def _sixteen_to_eight(im: Image.Image) -> Image.Image:
    """Scale 16-bit (I;16, I) samples to 8 bits; Pillow's own convert clips at 255 instead."""
    arr = np.asarray(im).astype(np.float32)
    if im.mode != "F":
        arr = arr / 257.0
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")


def _resize(rgb: np.ndarray, size: int, resize: str) -> np.ndarray:
    """Apply the resize policy: letterbox pads black, crop takes the centre square."""
    h, w = rgb.shape[:2]
    if resize == "crop":
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        rgb = rgb[top : top + side, left : left + side]
        return _cv_resize(rgb, size, size)
    if resize == "stretch":
        return _cv_resize(rgb, size, size)
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = _cv_resize(rgb, nw, nh)
    return out


def _cv_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """INTER_AREA averages when shrinking 2x or more (no aliasing); below that, bilinear
    already reads every source pixel and is about 7x faster than INTER_AREA at odd ratios."""
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    strong_shrink = width * 2 <= w and height * 2 <= h
    interp = cv2.INTER_AREA if strong_shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=interp)


# ----------------------------------------------------------------------------- the cache


@dataclass
class CachedImages:
    """Decoded images of one (paths, size, policy): a read-only memmap plus what failed."""

    array: np.ndarray  # (N, size, size, 3) uint8, read-only np.memmap of cache_file
    ok: np.ndarray  # (N,) bool; False rows of `array` are zeros
    errors: dict[int, str]  # row -> reason, for every row that is not ok
    cache_file: Path  # <cache_dir>/<key>.npy (its metadata is <key>.json)
    decoded: int  # images this call decoded (failures included); 0 when the cache was reused,
    # fewer than N when it finished a build that an earlier, killed call began


def cache_images(
    paths,
    size: int,
    resize: str = "letterbox",
    *,
    cache_dir=None,
    workers=None,
    progress=True,
    desc="decoding",
) -> CachedImages:
    """Return the decoded images of `paths`, decoding only if no valid cache exists.

    Failures never abort the build: they are `ok[i] = False` plus `errors[i]`, so the caller
    decides whether to raise or skip-and-report. `workers`: decoding processes (default:
    `resources.decode_workers()`, the CPUs and memory this process may use).
    """
    _check_args(size, resize)
    size = int(size)
    paths = [os.path.abspath(p) for p in paths]
    cache_dir = make_folder(cache_dir if cache_dir is not None else cache_root())
    key = cache_key(paths, size, resize)  # after mkdir: the folder may sit in an image's folder
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    decoded = []
    cached, built = load_or_build(
        cache_dir,
        key,
        load=lambda: _load(npy, meta, key, len(paths), size),
        build=lambda: decoded.append(
            _timed_build(paths, size, resize, key, cache_dir, workers, progress, desc)
        ),
    )
    if built:
        cached.decoded = decoded[0]
    return cached


def _timed_build(*args) -> int:
    with spending("decoding"):
        return _build(*args)


def cache_key(paths, size: int, resize: str) -> str:
    """sha256 over everything that changes the result: paths, file size/mtime, size, policy."""
    h = hashlib.sha256(
        f"artgan-images\0{DECODER_VERSION}\0{size}\0{resize}\0{len(paths)}\n".encode()
    )
    for p in paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.abspath(p)}\0{stamp}\n".encode())
    return h.hexdigest()


def _load(npy: Path, meta: Path, key: str, n: int, size: int) -> CachedImages | None:
    """A cache counts only when its JSON (written last) matches the array; else rebuild."""
    try:
        info = json.loads(meta.read_text())
        array = np.load(npy, mmap_mode="r")
        ok = np.array(info["ok"], dtype=bool)
        errors = {int(i): str(reason) for i, reason in info["errors"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    expected = (n, size, size, 3)
    if (
        info.get("key") != key
        or array.shape != expected
        or array.dtype != np.uint8
        or ok.shape != (n,)
    ):
        return None
    return CachedImages(array=array, ok=ok, errors=errors, cache_file=npy, decoded=0)


def _build(paths, size, resize, key, cache_dir: Path, workers, progress, desc) -> int:
    """Decode into `<key>.npy.partial`, recording the rows done as it goes, so a build
    killed half way resumes there; renamed into place when complete. The `.json` comes
    last, and a cache is trusted only when both files exist and agree."""
    started = time.perf_counter()
    build = ResumableArrays(
        {"pixels": (cache_dir / f"{key}.npy", (len(paths), size, size, 3))},
        np.uint8,
        cache_dir / f"{key}.progress.json",
        key,
    )
    resumed_at = build.done
    errors = {int(i): reason for i, reason in build.state.get("errors", {}).items()}
    _decode_all(paths, size, resize, build, errors, workers, progress, desc)
    build.finish()
    info = {
        "key": key,
        "decoder_version": DECODER_VERSION,
        "size": size,
        "resize": resize,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "paths": paths,
        "ok": [i not in errors for i in range(len(paths))],
        "errors": {str(i): reason for i, reason in sorted(errors.items())},
    }
    write_text_atomic(cache_dir / f"{key}.json", json.dumps(info, indent=1))
    seconds = time.perf_counter() - started
    decoded = len(paths) - resumed_at
    log.info(
        "decoded %d images at %d px in %.0f s (%.1f img/s), %s cache%s",
        decoded,
        size,
        seconds,
        decoded / max(seconds, 1e-9),
        gigabytes((cache_dir / f"{key}.npy").stat().st_size),
        f" (resumed at row {resumed_at})" if resumed_at else "",
    )
    return decoded


# ----------------------------------------------------------------------------- parallel decode


def _decode_all(paths, size, resize, build, errors, workers, progress, desc) -> None:
    """Fill the build's array (a memmap of the partial cache file) row by row from row
    `build.done`, adding {row: reason} to `errors` for the rows that failed (left zero). Pool
    workers write their rows straight into the file, so only row numbers and reasons travel
    between processes, never pixels."""
    workers = decode_workers() if workers is None else max(1, int(workers))
    out = build.arrays["pixels"]
    jobs = [(i, paths[i], size, resize) for i in range(build.done, len(paths))]
    with progress_bar(
        total=len(paths), initial=build.done, desc=desc, unit="img", disable=not progress
    ) as bar:
        if workers == 1 or len(jobs) < MIN_PARALLEL:
            results = _decode_in_process(jobs, out)
        else:
            results = _decode_in_pool(jobs, workers, out.filename)
        for i, reason in results:
            if reason is not None:
                errors[i] = reason
            bar.update(1)
            build.checkpoint(i + 1, errors=errors)  # results come in row order


def _decode_in_process(jobs, out):
    _attach(out)
    return map(_decode_job, jobs)


def _decode_in_pool(jobs, workers, cache_file):
    """Yield results from a process pool that does not fork the (TensorFlow-laden) parent."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    chunksize = min(64, max(16, len(jobs) // (workers * 8)))
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # workers fork from a server that has already imported us
        context.set_forkserver_preload([__name__])
    try:
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(str(cache_file), os.getpid()),
        ) as pool:
            yield from pool.map(_decode_job, jobs, chunksize=chunksize)
    except BrokenProcessPool as exc:
        raise ArtganError(
            "an image-decoding worker process died: out of memory, or the main script lacks an "
            "`if __name__ == '__main__':` guard (workers re-import it); workers=1 avoids the pool"
        ) from exc


_rows = None  # the cache array this process decodes into


def _attach(rows) -> None:
    global _rows
    _rows = rows


def _init_worker(cache_file, owner) -> None:
    """Exit with `owner`, the process building the cache; one OpenCV thread per worker (the
    pool already uses every core); open the shared file."""
    _exit_with(owner)
    cv2.setNumThreads(1)
    _attach(np.load(cache_file, mmap_mode="r+"))


def _exit_with(owner) -> None:
    """End this process as soon as process `owner` ends, even by kill -9.

    A pool worker's parent is the forkserver, not `owner`, and the forkserver only exits once
    every worker has (each holds its "alive" pipe open), so no parent-death signal would ever
    fire: a watcher thread waits on `owner` itself (a pidfd, else polling once a second).
    When the workers go, the forkserver and the resource tracker follow on their own.
    """

    def watch():
        try:
            select.select([os.pidfd_open(owner)], [], [])
        except ProcessLookupError:  # already gone
            pass
        except (AttributeError, OSError):  # no pidfd (not Linux 5.3+)
            while _is_running(owner):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-owner", daemon=True).start()


def _is_running(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        pass
    return True


def _decode_job(job):
    """(row, path, size, policy) -> (row, reason or None), the pixels written into the cache."""
    i, path, size, resize = job
    try:
        _rows[i] = decode_image(path, size, resize)
        return i, None
    except ImageError as exc:
        return i, exc.reason
