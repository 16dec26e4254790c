"""Read ArtGAN label files exactly as published, quirks included, and validate them.

Three row layouts are recognised from the first non-blank line:

* ``path,label`` rows with no header (ArtGAN style/genre CSVs, CRLF line ends);
* the ArtGAN artist files: a ``(Path to image),, (Groundtruth class)`` header, a blank
  line, then ``path,,label`` rows;
* CSVs with an ``image_path,class_index`` header, extra columns allowed.

Class files hold ``<index> <Name>`` per line. Every problem a user can fix raises an
`ArtganError` naming the file and line(s); `load_labels(..., on_error="skip")` drops bad
rows instead and keeps them in `LabelTable.skipped` so they can be reported.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artgan.errors import ArtganError
from artgan.files import not_a_file

ARTIST_HEADER = "(Path to image),, (Groundtruth class)"
PATH_COLUMN, LABEL_COLUMN = "image_path", "class_index"
MAX_LISTED = 10  # rows listed in an error message before "... and N more"

_INT = re.compile(r"[+-]?[0-9]+")
_ABSOLUTE = r"^(?:[/\\]|[A-Za-z]:)"  # /x, \\server\x, C:x
_CLIMBING = r"(?:^|[/\\])\.\.(?:[/\\]|$)"


@dataclass(frozen=True)
class SkippedRow:
    """A label-file row left out of a `LabelTable`, and why."""

    line: int  # 1-based line number in the label file (0 if not applicable)
    path: str  # the path as written in the file
    reason: str  # "<kind>: <detail>", e.g. "image file not found: /abs/path"

    @property
    def kind(self) -> str:
        """The reason without its detail, used to group a report."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True, eq=False, repr=False)
class LabelTable:
    """Validated rows of one label file: relative image path, class id, source line."""

    frame: pd.DataFrame  # columns: path (str), label (int64), line (int64)
    class_names: list[str]
    label_file: Path
    image_root: Path | None  # None: paths were not checked on disk
    skipped: tuple[SkippedRow, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (
            f"LabelTable({self.label_file.name}: {len(self)} rows, "
            f"{self.num_classes} classes, {len(self.skipped)} skipped)"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_paths(self) -> list[Path]:
        """Absolute-ish image locations: ``image_root / path`` for each row."""
        if self.image_root is None:
            raise ArtganError(
                f"{self.label_file}: no image root was given, so image paths are unknown"
            )
        return [self.image_root / path for path in self.frame["path"]]

    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy(dtype=np.int64)

    def subset(self, index) -> LabelTable:
        """Rows by position (array, list or boolean mask); skipped rows are kept."""
        frame = self.frame.iloc[np.asarray(index)].reset_index(drop=True)
        return self._with_frame(frame)

    def sample(self, max_rows: int, seed: int) -> LabelTable:
        """At most `max_rows` rows, class proportions kept, same rows for the same seed
        (`stratified_rows`). Rows stay in file order."""
        if len(self) <= max_rows:
            return self
        return self.subset(stratified_rows(self.labels(), max_rows, seed))

    def class_counts(self) -> pd.Series:
        """Rows per class id, every class of the class file included (zeros too)."""
        counts = self.frame["label"].value_counts()
        counts = counts.reindex(range(self.num_classes), fill_value=0).astype(np.int64)
        counts.index.name = "label"
        return counts.rename("count")

    def _with_frame(self, frame: pd.DataFrame) -> LabelTable:
        return LabelTable(frame, self.class_names, self.label_file, self.image_root, self.skipped)


def stratified_rows(labels, max_rows: int, seed: int) -> np.ndarray:
    """Sorted positions of at most `max_rows` of `labels`, each class keeping its share
    (largest remainder), the same positions for the same labels and seed; every position
    when there are no more than `max_rows`.

    Every class present keeps at least one row when `max_rows` allows it, so a small
    smoke-test sample still covers rare classes.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    labels = np.asarray(labels)
    if len(labels) <= max_rows:
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _stratified_quotas(counts, max_rows)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=quota, replace=False)
        for label, quota in zip(classes, quotas)
        if quota
    ]
    return np.sort(np.concatenate(chosen))


def _stratified_quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over classes in proportion to `counts` (largest remainder)."""
    exact = counts * total / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    if total >= len(counts):
        quotas = np.maximum(quotas, 1)  # rare classes keep one row
    shortfall = total - int(quotas.sum())
    by_remainder = np.argsort(-(exact - quotas), kind="stable")
    quotas[by_remainder[: max(shortfall, 0)]] += 1
    while shortfall < 0:  # the minimum of one overshot: take back from the largest
        quotas[np.argmax(quotas)] -= 1
        shortfall += 1
    return quotas


# ---------------------------------------------------------------- reading text


def _read_lines(path) -> tuple[Path, list[str]]:
    """Lines of a UTF-8 text file (BOM and CR dropped); missing or undecodable → error."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ArtganError(f"{path}:{line}: not UTF-8 text ({error.reason})") from None
    # split on "\n" only: str.splitlines() would also split on rare Unicode separators
    return path, [line.rstrip("\r") for line in text.split("\n")]


def read_class_file(path) -> list[str]:
    """Class names from ``<index> <Name>`` lines; indices must run 0..N-1 in order."""
    path, lines = _read_lines(path)
    names: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not _INT.fullmatch(parts[0]):
            raise ArtganError(f"{path}:{number}: expected '<index> <Name>', got {line!r}")
        index, name = int(parts[0]), parts[1].strip()
        if index != len(names):
            raise ArtganError(
                f"{path}:{number}: class index {index} out of order, expected {len(names)}"
                " (indices must be 0..N-1, one per line, in order)"
            )
        if name in names:
            raise ArtganError(
                f"{path}:{number}: class name {name!r} repeats line {names.index(name) + 1}"
            )
        names.append(name)
    if not names:
        raise ArtganError(f"{path}: no classes found (expected '<index> <Name>' lines)")
    return names


# ---------------------------------------------------------------- parsing rows


def _fields(line: str) -> list[str]:
    if '"' in line or "\r" in line or "\0" in line:  # what only the csv module reads right
        return [value.strip() for value in next(csv.reader([line]))]
    return [value.strip() for value in line.split(",")]  # the same, 5x faster on 80k rows


def _row_parser(path: Path, number: int, first: str):
    """Pick the row layout from the first non-blank line.

    Returns (parse, first_is_row): `parse(fields)` gives (path, label text) or raises
    ValueError with the reason; `first_is_row` is False when `first` is a header.
    """
    fields = _fields(first)
    if first.strip().startswith("(Path to image)"):
        return _artist_row, False
    if PATH_COLUMN in fields:
        if LABEL_COLUMN not in fields:
            raise ArtganError(
                f"{path}:{number}: header has {PATH_COLUMN!r} but no {LABEL_COLUMN!r}"
            )
        return _header_row(
            len(fields), fields.index(PATH_COLUMN), fields.index(LABEL_COLUMN)
        ), False
    if len(fields) == 2:
        return _plain_row, True
    raise ArtganError(
        f"{path}:{number}: unknown label file format: expected 'path,label' rows, an "
        f"'{PATH_COLUMN},{LABEL_COLUMN}' header or the ArtGAN artist header "
        f"{ARTIST_HEADER!r}; got {first!r}"
    )


def _plain_row(fields):
    if len(fields) != 2:
        raise ValueError(f"expected 2 fields 'path,label', got {len(fields)}")
    return fields[0], fields[1]


def _artist_row(fields):
    if len(fields) != 3 or fields[1]:
        raise ValueError(
            f"expected 'path,,label' (3 fields, middle empty), got {len(fields)} fields"
        )
    return fields[0], fields[2]


def _header_row(width: int, path_at: int, label_at: int):
    def parse(fields):
        if len(fields) != width:
            raise ValueError(f"expected {width} fields as in the header, got {len(fields)}")
        return fields[path_at], fields[label_at]

    return parse


def _parse_rows(label_file) -> tuple[Path, pd.DataFrame, list[SkippedRow]]:
    """All well-formed rows plus the malformed ones, with their line numbers."""
    path, lines = _read_lines(label_file)
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise ArtganError(f"{path}: empty label file")
    parse, first_is_row = _row_parser(path, *numbered[0])
    rows, bad = [], []
    for number, line in numbered if first_is_row else numbered[1:]:
        fields = _fields(line)
        try:
            image, label = parse(fields)
            if not image:
                raise ValueError("empty image path")
            if not _INT.fullmatch(label):
                raise ValueError(f"label {label!r} is not an integer")
            if len(label.lstrip("+-")) > 18:  # int64 holds 18 digits; no class index is near
                raise ValueError(f"label {label[:30]!r} is far too large for a class index")
        except ValueError as error:
            bad.append(SkippedRow(number, fields[0], f"malformed line: {error}"))
            continue
        rows.append((image, int(label), number))
    frame = pd.DataFrame(rows, columns=["path", "label", "line"])
    frame = frame.astype({"path": str, "label": np.int64, "line": np.int64})
    return path, frame, bad


def read_label_rows(path) -> pd.DataFrame:
    """Parse a label file into (path, label, line) rows; any malformed line is an error."""
    path, frame, bad = _parse_rows(path)
    if bad:
        raise ArtganError(_problem_message(path, bad))
    if frame.empty:
        raise ArtganError(f"{path}: no label rows found")
    return frame


# ---------------------------------------------------------------- validation


def _check_paths(frame, class_names, image_root):
    """Absolute paths and '..' components could reach files outside the image root."""
    absolute = frame["path"].str.match(_ABSOLUTE)
    climbing = frame["path"].str.contains(_CLIMBING)
    reasons = np.where(absolute, "absolute path", "'..' component escapes the image root")
    return absolute | climbing, "unsafe path: " + pd.Series(reasons, index=frame.index)


def _check_labels(frame, class_names, image_root):
    bad = (frame["label"] < 0) | (frame["label"] >= len(class_names))
    detail = frame["label"].astype(str) + f" not in 0..{len(class_names) - 1}"
    return bad, "label out of range: " + detail


def _check_duplicates(frame, class_names, image_root):
    """Later copies of a path are bad; the first one stays (its line is named)."""
    bad = frame.duplicated("path", keep="first")
    if not bad.any():
        return bad, None
    first = frame.drop_duplicates("path").set_index("path")
    first_line = frame["path"].map(first["line"])
    first_label = frame["path"].map(first["label"])
    detail = (
        "first listed on line "
        + first_line.astype(str)
        + " (label "
        + first_label.astype(str)
        + ", here "
        + frame["label"].astype(str)
        + ")"
    )
    return bad, "duplicate path: " + detail


def _check_files(frame, class_names, image_root):
    """Each image must be a regular file whose real path (links followed) stays under the
    real image root: a link inside the folder must not reach files outside it. One `lstat`
    a row; each folder's real path is looked up once (80k rows take about a second)."""
    if image_root is None:
        return pd.Series(False, index=frame.index), None
    root = os.path.join(os.path.realpath(image_root), "")  # with a trailing separator
    folders = {}
    reasons = [
        _file_problem(os.path.join(image_root, path), root, folders) for path in frame["path"]
    ]
    bad = pd.Series([reason is not None for reason in reasons], index=frame.index)
    return bad, pd.Series([reason or "" for reason in reasons], index=frame.index)


def _file_problem(path, real_root, folders):
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return f"image file not found: {path}"
    folder, name = os.path.split(path)
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    real = os.path.join(folders[folder], name)
    if stat.S_ISLNK(mode):
        real = os.path.realpath(real)
    if not real.startswith(real_root):
        return f"unsafe path: {path} is a link to {real}, outside the image root"
    if not (os.path.isfile(real) if stat.S_ISLNK(mode) else stat.S_ISREG(mode)):
        return f"not a regular file: {path}"
    return None


_CHECKS = (_check_paths, _check_labels, _check_duplicates, _check_files)


def _validate(frame, class_names, image_root) -> tuple[pd.DataFrame, list[SkippedRow]]:
    """Run each check on the rows that passed the previous ones; a row fails once."""
    bad_rows: list[SkippedRow] = []
    for check in _CHECKS:
        bad, reasons = check(frame, class_names, image_root)
        if bad.any():
            dropped = frame[bad]
            bad_rows += map(
                SkippedRow,
                dropped["line"].tolist(),
                dropped["path"].tolist(),
                reasons[bad].tolist(),
            )
            frame = frame[~bad]
    return frame.reset_index(drop=True), bad_rows


def _problem_message(label_file: Path, bad: list[SkippedRow], hint: str = "") -> str:
    bad = sorted(bad, key=lambda row: row.line)
    listed = [f"  line {row.line}: {row.path!r}: {row.reason}" for row in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        listed.append(f"  ... and {len(bad) - MAX_LISTED} more")
    head = f"{label_file}: {len(bad)} bad row{'s' if len(bad) > 1 else ''}"
    return "\n".join([f"{head}{hint}:", *listed])


def load_labels(
    label_file, class_file, image_root=None, *, on_error="raise", check_files=True
) -> LabelTable:
    """Read and validate a label file against its class file (and images, if rooted).

    Bad rows (malformed, label out of range, duplicate path, path escaping the image
    root, missing image) raise one `ArtganError` listing their lines, or with
    ``on_error="skip"`` are dropped and kept in `LabelTable.skipped`. A missing file, an
    unknown format, a missing image root or a file with no usable row always raises.
    `image_root=None` checks nothing on disk (the published ArtGAN images are not here).
    `class_file` may also be the list of class names itself (e.g. those stored in a model).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(class_file, (list, tuple)):
        class_names = list(class_file)
    else:
        class_names = read_class_file(class_file)
    label_file, frame, bad = _parse_rows(label_file)
    if image_root is not None:
        image_root = Path(image_root)
        if check_files and not image_root.is_dir():  # one error, not a missing file per row
            raise ArtganError(f"{label_file}: image root {image_root} does not exist")
    checked_root = image_root if check_files else None
    frame, invalid = _validate(frame, class_names, checked_root)
    bad = sorted(bad + invalid, key=lambda row: row.line)
    if bad and on_error == "raise":
        hint = " (on_error='skip' drops them and loads the rest)"
        raise ArtganError(_problem_message(label_file, bad, hint))
    if frame.empty:
        raise ArtganError(f"{label_file}: no usable label rows ({len(bad)} skipped)")
    return LabelTable(frame, class_names, label_file, image_root, tuple(bad))


def skipped_report(skipped, label_file=None) -> str:
    """Skipped rows as text: a count per kind of reason, then every row.

    `skipped` is a sequence of `SkippedRow` or a `LabelTable` (whose label file then
    prefixes each line as ``file:line``; pass `label_file` to get that for a sequence).
    """
    if isinstance(skipped, LabelTable):
        label_file = label_file or skipped.label_file
        skipped = skipped.skipped
    if not skipped:
        return "no rows skipped"
    where = f"{label_file}:" if label_file is not None else "line "
    counts = Counter(row.kind for row in skipped)
    lines = [f"{len(skipped)} row{'s' if len(skipped) > 1 else ''} skipped:"]
    lines += [f"  {count:>6}  {kind}" for kind, count in counts.most_common()]
    lines += [f"{where}{row.line}  {row.path}  {row.reason}" for row in skipped]
    return "\n".join(lines)
