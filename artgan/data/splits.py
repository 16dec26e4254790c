"""A task's splits: label tables (optionally subsampled) and their pixels per input size,
decoded once (`TaskData`), and one split's pixels (`SplitImages`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from artgan.data.images import cache_images
from artgan.data.labels import LabelTable, SkippedRow, load_labels, skipped_report
from artgan.errors import ArtganError

if TYPE_CHECKING:
    from artgan.config.spec import ExperimentSpec


class RowsOf:
    """Some rows of a (memory-mapped) array, read only when asked for: `view[i]`,
    `view[a:b]` and `view[index array]` read those rows of `array`, so leaving a few
    undecodable images out never copies a whole cache into memory."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        rows = self.rows[index]
        return self.array[int(rows)] if np.ndim(rows) == 0 else self.array[rows]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.array[row] for row in self.rows)

    def __array__(self, dtype=None, copy=None):  # np.asarray(view): all of them, on request
        return np.asarray(self.array[self.rows], dtype=dtype)


@dataclass
class SplitImages:
    """One split at one size: uint8 pixels, labels, and the table rows they came from."""

    table: LabelTable
    pixels: (
        np.ndarray | RowsOf
    )  # (N, size, size, 3) uint8: the read-only cache memmap, or `RowsOf` it
    labels: np.ndarray  # (N,) int64
    rows: np.ndarray  # (N,) positions in `table` of the usable images
    skipped: list[SkippedRow] = field(default_factory=list)
    cache_key: str = ""  # the decoded-image cache's key (paths, file stamps, size, policy)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def paths(self) -> list[str]:
        return [str(self.table.frame["path"].iloc[i]) for i in self.rows]

    def subset(self, positions):
        """These images only (positions in this split), their pixels read on demand."""
        positions = np.asarray(positions, dtype=np.int64)
        return SplitImages(
            self.table,
            RowsOf(self.pixels, positions),
            self.labels[positions],
            self.rows[positions],
            self.skipped,
            self.cache_key,
        )


def load_split_images(
    table: LabelTable,
    size: int,
    resize: str = "letterbox",
    on_error: str = "raise",
    progress: bool = True,
) -> SplitImages:
    """Decode (or reuse) `table`'s images at `size`; undecodable ones raise or are skipped."""
    cached = cache_images(
        table.image_paths(), size, resize, progress=progress, desc=f"decoding {size}px"
    )
    bad = sorted(cached.errors)
    skipped = [
        SkippedRow(
            int(table.frame["line"].iloc[i]), str(table.frame["path"].iloc[i]), cached.errors[i]
        )
        for i in bad
    ]
    if skipped and on_error == "raise":
        raise ArtganError(
            f"{table.label_file}: {len(skipped)} image(s) could not be decoded "
            f"(set data.on_error: skip to leave them out):\n{skipped_report(skipped)}"
        )
    rows = np.flatnonzero(cached.ok)
    pixels = cached.array if len(rows) == len(table) else RowsOf(cached.array, rows)
    labels = table.labels()[rows]
    return SplitImages(table, pixels, labels, rows, skipped, cached.cache_file.stem)


@dataclass
class TaskData:
    """A task's label tables, and their cached pixels per input size (decoded once)."""

    spec: ExperimentSpec
    train: LabelTable
    val: LabelTable

    def __post_init__(self) -> None:
        self._splits: dict[int, tuple[SplitImages, SplitImages]] = {}

    @classmethod
    def from_spec(cls, spec: ExperimentSpec) -> TaskData:
        classes = spec.path("classes")
        images = spec.path("images")
        on_error = spec.data.on_error
        train = load_labels(spec.path("train"), classes, images, on_error=on_error)
        val = load_labels(spec.path("val"), classes, images, on_error=on_error)
        budget = spec.budget
        if budget.max_train_images:
            train = train.sample(budget.max_train_images, seed=spec.seed)
        if budget.max_val_images:
            val = val.sample(budget.max_val_images, seed=spec.seed)
        return cls(spec, train, val)

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def classes(self) -> np.ndarray:
        """The class ids the task's labels really use, sorted: a model's outputs, in order."""
        return np.union1d(self.train.labels(), self.val.labels())

    def splits(self, size: int) -> tuple[SplitImages, SplitImages]:
        """(train, val) `SplitImages` at `size`, decoding only on the first request."""
        if size not in self._splits:
            data = self.spec.data
            self._splits[size] = (
                load_split_images(self.train, size, data.resize, data.on_error),
                load_split_images(self.val, size, data.resize, data.on_error),
            )
        return self._splits[size]

    def skipped(self) -> list[SkippedRow]:
        rows = list(self.train.skipped) + list(self.val.skipped)
        for train, val in self._splits.values():
            rows += train.skipped + val.skipped
        return rows
