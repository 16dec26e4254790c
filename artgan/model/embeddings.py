"""Embed once: a pretrained backbone's activations per image, cached on disk like the pixels.

A frozen backbone gives every image the same activations in every trial and epoch, so its
bottom part (`artgan.model.backbones`) runs once per (weights, input size, resize policy,
image list) and trials train only what sits above. Each of the bottom's taps is a float16
`.npy` memory-mapped by every trial and worker process. With `flip`, rows N..2N-1 hold the
horizontally mirrored images, so training can still augment by flipping.

    <cache>/embeddings/<key>.<tap>.npy   one per tap, (N or 2N, ...) float16
    <cache>/embeddings/<key>.json        written last: a cache counts only when it exists

Builds are serialised by a file lock, so two processes that need the same embeddings compute
them once, and resumable: rows are written in order into `<key>.<tap>.npy.partial` files and
`<key>.progress.json` records how far, so a build killed half way goes on from there; the
files are renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artgan.data.generators import model_input
from artgan.files import ResumableArrays, gigabytes, load_or_build, make_folder, write_text_atomic
from artgan.paths import cache_root
from artgan.progress import progress_bar, spending

if TYPE_CHECKING:
    from artgan.data.splits import SplitImages
    from artgan.model.backbones import Backbone

log = logging.getLogger(__name__)

EMBEDDING_VERSION = 1  # bump when the taps or their computation change
BATCH_SIZE = 32


@dataclass
class Embeddings:
    """One split's cached backbone taps: {tap: (rows, ...) float16 memmap}."""

    taps: dict[str, np.ndarray]
    count: int  # images; with `flipped`, rows count..2*count-1 are their mirror images
    flipped: bool
    built: bool  # True when this call computed them (False: read from the cache)

    def __len__(self) -> int:
        return self.count


def embedding_key(backbone: Backbone, split: SplitImages, flip: bool) -> str:
    """sha256 over what changes the activations: weights, taps, pixels (which already key
    the image paths, file stamps, size and resize policy), the usable rows, flipping."""
    digest = hashlib.sha256(
        f"artgan-embeddings\0{EMBEDDING_VERSION}\0{backbone.name}\0{backbone.weights_id}\0"
        f"{split.cache_key}\0{bool(flip)}\n".encode()
    )
    digest.update(np.asarray(split.rows, dtype=np.int64).tobytes())
    return digest.hexdigest()


def embed_split(
    backbone: Backbone,
    split: SplitImages,
    flip: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Embeddings:
    """The cached bottom taps of `split` (a `SplitImages` at the backbone's input size),
    computing them only when no valid cache exists."""
    cache_dir = make_folder(cache_dir if cache_dir is not None else cache_root() / "embeddings")
    key = embedding_key(backbone, split, flip)
    shapes = backbone.tap_shapes()
    found, built = load_or_build(
        cache_dir,
        key,
        load=lambda: _load(cache_dir, key, shapes, len(split), flip),
        build=lambda: _timed_build(backbone, split, flip, cache_dir, key, shapes, progress),
    )
    found.built = built
    return found


def cached_embeddings(backbone, split, cache_dir=None):
    """The cached (unmirrored) bottom taps of `split` if a search already computed them, else
    None: never builds them."""
    cache_dir = cache_dir if cache_dir is not None else cache_root() / "embeddings"
    key = embedding_key(backbone, split, flip=False)
    return _load(Path(cache_dir), key, backbone.tap_shapes(), len(split), flip=False)


def _load(cache_dir, key, shapes, count, flip):
    rows = count * (2 if flip else 1)
    try:
        info = json.loads((cache_dir / f"{key}.json").read_text())
        taps = {tap: np.load(cache_dir / f"{key}.{tap}.npy", mmap_mode="r") for tap in shapes}
    except (OSError, ValueError):
        return None
    if info.get("key") != key or any(
        taps[tap].shape != (rows, *shape) or taps[tap].dtype != np.float16
        for tap, shape in shapes.items()
    ):
        return None
    return Embeddings(taps, count, bool(flip), built=False)


def _timed_build(*args):
    with spending("embedding"):
        return _build(*args)


def _build(backbone, split, flip, cache_dir, key, shapes, progress):
    """Embed into `<key>.<tap>.npy.partial` files in row order, recording the rows done in
    `<key>.progress.json`, so a killed build resumes where it stopped."""
    started = time.perf_counter()
    model = backbone.bottom()
    count = len(split)
    rows = count * (2 if flip else 1)
    build = ResumableArrays(
        {tap: (cache_dir / f"{key}.{tap}.npy", (rows, *shape)) for tap, shape in shapes.items()},
        np.float16,
        cache_dir / f"{key}.progress.json",
        key,
    )
    resumed_at = at = build.done
    with progress_bar(
        total=rows,
        initial=at,
        desc=f"embedding ({backbone.name})",
        unit="img",
        disable=not progress,
    ) as bar:
        while at < rows:  # rows count.. are the mirror images of rows ..count
            mirrored = at >= count
            start = at - count if mirrored else at
            pixels = split.pixels[start : min(start + BATCH_SIZE, count)]
            if mirrored:
                pixels = pixels[:, :, ::-1]
            result = model.predict_on_batch(model_input(pixels))
            for tap, array in build.arrays.items():
                array[at : at + len(pixels)] = result[tap]
            at += len(pixels)
            bar.update(len(pixels))
            build.checkpoint(at)
    build.finish()
    seconds = time.perf_counter() - started
    info = {
        "key": key,
        "version": EMBEDDING_VERSION,
        "backbone": backbone.name,
        "weights": backbone.weights_id,
        "images": count,
        "flipped": bool(flip),
        "taps": {tap: list(shape) for tap, shape in shapes.items()},
        "seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(cache_dir / f"{key}.json", json.dumps(info, indent=1))
    size = sum((cache_dir / f"{key}.{tap}.npy").stat().st_size for tap in shapes)
    log.info(
        "embedded %d images with %s in %.0f s (%.1f img/s), %s cache%s",
        rows - resumed_at,
        backbone.name,
        seconds,
        (rows - resumed_at) / max(seconds, 1e-9),
        gigabytes(size),
        f" (resumed at row {resumed_at})" if resumed_at else "",
    )
