"""Embed once: a pretrained backbone's activations per image, cached on disk like the pixels.

A frozen backbone gives every image the same activations in every trial and epoch, so its
bottom part (`artgan.backbones`) runs once per (weights, input size, resize policy, image
list) and trials train only what sits above. Each of the bottom's taps is a float16 `.npy`
memory-mapped by every trial and worker process. With `flip`, rows N..2N-1 hold the
horizontally mirrored images, so training can still augment by flipping.

    <cache>/embeddings/<key>.<tap>.npy   one per tap, (N or 2N, ...) float16
    <cache>/embeddings/<key>.json        written last: a cache counts only when it exists

Builds are atomic (temp files renamed into place) and serialised by a file lock, so two
processes that need the same embeddings compute them once.
"""

import hashlib
import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from artgan.data.generators import model_input
from artgan.files import allocate_array, atomic_path, load_or_build, make_folder, write_text_atomic
from artgan.paths import cache_root

log = logging.getLogger(__name__)

EMBEDDING_VERSION = 1  # bump when the taps or their computation change
BATCH_SIZE = 32


@dataclass
class Embeddings:
    """One split's cached backbone taps: {tap: (rows, ...) float16 memmap}."""

    taps: dict
    count: int  # images; with `flipped`, rows count..2*count-1 are their mirror images
    flipped: bool
    built: bool  # True when this call computed them (False: read from the cache)

    def __len__(self):
        return self.count


def embedding_key(backbone, split, flip):
    """sha256 over what changes the activations: weights, taps, pixels (which already key
    the image paths, file stamps, size and resize policy), the usable rows, flipping."""
    digest = hashlib.sha256(
        f"artgan-embeddings\0{EMBEDDING_VERSION}\0{backbone.name}\0{backbone.weights_id}\0"
        f"{split.cache_key}\0{bool(flip)}\n".encode()
    )
    digest.update(np.asarray(split.rows, dtype=np.int64).tobytes())
    return digest.hexdigest()


def embed_split(backbone, split, flip=False, cache_dir=None, progress=True):
    """The cached bottom taps of `split` (a `SplitImages` at the backbone's input size),
    computing them only when no valid cache exists."""
    cache_dir = make_folder(cache_dir if cache_dir is not None else cache_root() / "embeddings")
    key = embedding_key(backbone, split, flip)
    shapes = backbone.tap_shapes()
    found, built = load_or_build(
        cache_dir, key,
        load=lambda: _load(cache_dir, key, shapes, len(split), flip),
        build=lambda: _build(backbone, split, flip, cache_dir, key, shapes, progress),
    )
    found.built = built
    return found


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


def _build(backbone, split, flip, cache_dir, key, shapes, progress):
    started = time.perf_counter()
    model = backbone.bottom()
    count = len(split)
    rows = count * (2 if flip else 1)
    with ExitStack() as files:  # every tap renamed into place on success, deleted on error
        outputs = {}
        for tap, shape in shapes.items():
            temporary = files.enter_context(atomic_path(cache_dir / f"{key}.{tap}.npy"))
            outputs[tap] = allocate_array(temporary, np.float16, (rows, *shape))
        with tqdm(total=rows, desc=f"embedding ({backbone.name})", unit="img",
                  disable=not progress) as bar:
            for mirrored in ([False, True] if flip else [False]):
                for start in range(0, count, BATCH_SIZE):
                    pixels = split.pixels[start:start + BATCH_SIZE]
                    if mirrored:
                        pixels = pixels[:, :, ::-1]
                    result = model.predict_on_batch(model_input(pixels))
                    at = start + (count if mirrored else 0)
                    for tap, array in outputs.items():
                        array[at:at + len(pixels)] = result[tap]
                    bar.update(len(pixels))
        for array in outputs.values():
            array.flush()
        outputs.clear()
    seconds = time.perf_counter() - started
    info = {"key": key, "version": EMBEDDING_VERSION, "backbone": backbone.name,
            "weights": backbone.weights_id, "images": count, "flipped": bool(flip),
            "taps": {tap: list(shape) for tap, shape in shapes.items()},
            "seconds": round(seconds, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text_atomic(cache_dir / f"{key}.json", json.dumps(info, indent=1))
    log.info("embedded %d images with %s in %.0f s (%.1f img/s)",
             rows, backbone.name, seconds, rows / max(seconds, 1e-9))
