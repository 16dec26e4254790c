"""Embed paintings with one of several extractors and find the nearest ones by cosine.

Every extractor goes through `cache_images` (the decoded-image cache training uses), so
images are decoded once and preprocessed exactly as the model saw them in training. Vectors
are L2-normalised, so cosine similarity is a dot product and exact search over a museum-sized
collection (hundreds to tens of thousands of images) is one matrix-vector product in numpy;
an approximate library (faiss) would only pay off far beyond that.

An index is one `.npz` file: object ids, image-file hashes, vectors and a description of the
extractor. It is written atomically (temp file, then `os.replace`), and rebuilding reuses the
vectors of unchanged images, so adding images embeds only the new ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artgan.errors import ArtganError
from artgan.files import atomic_path
from artgan.similar.extractors import Extractor, extractor_from_description, file_digest
from artgan.similar.nga import Problem

INDEX_FORMAT = 1


def default_index_path(extractor: Extractor, folder) -> Path:
    """`runs/similar/<extractor>.npz`: one index per extractor, side by side."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", extractor.name.replace(".keras", "")).strip("-")
    return Path(folder) / f"{slug}.npz"


# ----------------------------------------------------------------------------- the index


@dataclass
class Index:
    """Vectors with their object ids and image hashes; row i of each belongs together."""

    ids: np.ndarray
    sha256: np.ndarray
    vectors: np.ndarray
    extractor: dict
    name: str = ""

    @property
    def layer(self):
        """Which features the vectors are: a model's layer, a backbone's tap ('-' for the
        handcrafted statistics)."""
        return self.extractor.get("layer") or self.extractor.get("tap") or "-"

    def __len__(self):
        return len(self.ids)

    def save(self, path) -> Path:
        """Write atomically: a crash or error mid-write leaves the previous file untouched."""
        with atomic_path(path, suffix=".npz") as temporary:
            np.savez(
                temporary,
                format=np.int64(INDEX_FORMAT),
                ids=self.ids.astype(np.int64),
                sha256=self.sha256.astype(str),
                vectors=self.vectors.astype(np.float32),
                extractor=np.str_(json.dumps(self.extractor, sort_keys=True)),
                name=np.str_(self.name),
            )
        return Path(path)

    @classmethod
    def load(cls, path) -> Index:
        path = Path(path)
        if not path.is_file():
            raise ArtganError(
                f"{path}: similarity index not found; build it with `python -m artgan similar index`"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != INDEX_FORMAT:
                    raise ArtganError(
                        f"{path}: index format {int(data['format'])}, expected {INDEX_FORMAT}; rebuild it"
                    )
                index = cls(
                    ids=data["ids"].astype(np.int64),
                    sha256=data["sha256"].astype(str),
                    vectors=data["vectors"].astype(np.float32),
                    extractor=json.loads(str(data["extractor"])),
                    name=str(data["name"]),
                )
        except ArtganError:
            raise
        except Exception as error:  # noqa: BLE001 - zip, key, value and JSON errors all mean "corrupt"
            raise ArtganError(
                f"{path}: not a readable similarity index ({type(error).__name__}: {error}); rebuild it"
            ) from None
        n = len(index.ids)
        if index.vectors.ndim != 2 or len(index.vectors) != n or len(index.sha256) != n:
            raise ArtganError(
                f"{path}: inconsistent index (ids, hashes and vectors differ in length); rebuild it"
            )
        return index

    def row_of(self, objectid) -> int:
        rows = np.flatnonzero(self.ids == int(objectid))
        if len(rows) == 0:
            raise ArtganError(f"object {objectid} is not in the index ({len(self)} images)")
        return int(rows[0])

    def nearest(self, vector, k, exclude=()):
        """[(row, cosine)] of the k best rows; ties keep index order, so results are stable."""
        scores = self.vectors @ np.asarray(vector, np.float32)
        keep = np.ones(len(scores), bool)
        keep[list(exclude)] = False
        rows = np.flatnonzero(keep)
        order = rows[np.argsort(-scores[rows], kind="stable")][:k]
        return [(int(row), float(scores[row])) for row in order]


@dataclass
class IndexUpdate:
    """What `build_index` did: counts for the log line, and images that failed to embed."""

    index: Index | None  # None until built
    path: Path
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    failed: list[Problem] = field(default_factory=list)
    note: str = ""

    def summary(self):
        text = (
            f"{self.path}: {len(self.index)} images ({self.index.name}); embedded {self.embedded}, "
            f"reused {self.reused}, removed {self.removed}"
        )
        if self.note:
            text += f"\n  note: {self.note}"
        for problem in self.failed:
            text += f"\n  skipped {problem}"
        return text


def build_index(collection, extractor: Extractor, path, progress=True) -> IndexUpdate:
    """Create or update the index at `path` for every image of `collection`.

    Vectors of images whose id and file hash are unchanged are reused; only new or changed
    images are embedded; images no longer in the collection are dropped.
    """
    path = Path(path)
    table = collection.table
    wanted = dict(zip(table["objectid"].astype(int), table["sha256"]))
    old, note = previous_index(path, extractor)
    keep = (
        [row for row in range(len(old)) if wanted.get(int(old.ids[row])) == old.sha256[row]]
        if old
        else []
    )
    known = {int(old.ids[row]) for row in keep}
    todo = table[~table["objectid"].isin(known)]
    update = IndexUpdate(None, path, reused=len(keep), note=note)
    update.removed = (len(old) - len(keep)) if old else 0

    embedded = extractor.embed(list(todo["path"]), progress=progress) if len(todo) else None
    ids = [old.ids[keep]] if old else []
    hashes = [old.sha256[keep]] if old else []
    vectors = [old.vectors[keep]] if old else []
    if embedded is not None:
        good = np.flatnonzero(embedded.ok)
        ids.append(todo["objectid"].to_numpy(np.int64)[good])
        hashes.append(todo["sha256"].to_numpy(str)[good])
        vectors.append(embedded.vectors)
        update.embedded = len(good)
        for row, reason in sorted(embedded.errors.items()):
            update.failed.append(
                Problem(int(todo["objectid"].iloc[row]), todo["path"].iloc[row], reason)
            )
    index = merged(ids, hashes, vectors, extractor)
    update.index = index
    if update.embedded or update.removed or old is None:
        index.save(path)
    return update


def previous_index(path: Path, extractor: Extractor):
    """(old index or None, note): an index from another extractor or a corrupt file is rebuilt."""
    if not path.exists():
        return None, ""
    try:
        old = Index.load(path)
    except ArtganError as error:
        return None, f"rebuilding: {error}"
    if old.extractor != extractor.description:
        return (
            None,
            f"rebuilding: the existing index was made with {old.extractor.get('kind')} features that differ from {extractor.name}",
        )
    return old, ""


def merged(ids, hashes, vectors, extractor) -> Index:
    """One index from row blocks, sorted by object id."""
    if not ids:
        return Index(
            np.zeros(0, np.int64),
            np.zeros(0, str),
            np.zeros((0, 0), np.float32),
            extractor.description,
            extractor.name,
        )
    widths = {block.shape[1] for block in vectors if len(block)}
    if len(widths) > 1:
        raise ArtganError(
            f"vector widths differ between old and new rows ({sorted(widths)}); rebuild the index"
        )
    width = widths.pop() if widths else 0
    all_ids = np.concatenate(ids).astype(np.int64)
    order = np.argsort(all_ids, kind="stable")
    stacked = np.concatenate([block.reshape(len(block), width) for block in vectors]).astype(
        np.float32
    )
    return Index(
        all_ids[order],
        np.concatenate(hashes).astype(str)[order],
        stacked[order],
        extractor.description,
        extractor.name,
    )


# ----------------------------------------------------------------------------- queries


@dataclass
class Hit:
    rank: int
    objectid: int
    score: float


#: How an object id is written on the command line: ASCII digits that fit an int64 (not
#: '²', which `str.isdigit` accepts and `int` refuses).
OBJECT_ID = re.compile(r"[0-9]{1,18}")


def query(index: Index, collection, target, k=10, progress=False):
    """(label, hits, excluded ids) for an object id in the index or an image file.

    The query itself and exact copies of its image file are never returned: they are the
    same photograph, not a similar painting.
    """
    if k < 1:
        raise ArtganError(f"`k` must be at least 1, got {k}")
    target = str(target)
    path = Path(target)
    try:
        is_file = path.is_file()
    except OSError:  # a name too long for the file system
        is_file = False
    if OBJECT_ID.fullmatch(target) and not is_file:
        row = index.row_of(target)
        vector, digest, label = index.vectors[row], index.sha256[row], f"object {target}"
    else:
        if not is_file:
            raise ArtganError(f"{target}: neither an object id in the index nor an image file")
        embedded = extractor_from_description(index.extractor).embed(
            [str(path)], progress=progress
        )
        if not embedded.ok[0]:
            raise ArtganError(f"{path}: {embedded.errors.get(0, 'could not be read')}")
        vector, digest, label = embedded.vectors[0], file_digest(path), str(path)
    same = np.flatnonzero(index.sha256 == digest)
    hits = [
        Hit(rank, int(index.ids[row]), score)
        for rank, (row, score) in enumerate(index.nearest(vector, k, same), 1)
    ]
    return label, hits, [int(index.ids[row]) for row in same]
