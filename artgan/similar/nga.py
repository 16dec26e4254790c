"""Read the National Gallery of Art open-data tables into one row per image.

The NGA publishes its collection as relational CSVs (github.com/NationalGalleryOfArt/opendata)
and images named by object id (or by image UUID, via `published_images.csv`). Similarity
search needs the opposite shape: one row per image file with the metadata that says when two
paintings are "really" alike (artist, style and theme terms). Problems with individual images
or ids are collected in `problems` instead of raised, so one bad file never stops a run; a
missing table or column is a user error and raises `ArtganError` naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from artgan.data.images import ImageError, decode_image
from artgan.errors import ArtganError
from artgan.files import file_sha256
from artgan.paths import data_root

OBJECT_ID = re.compile(r"[0-9]{1,18}")  # what fits an int64 id column
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif", ".bmp")

# table -> columns this module reads; objects.csv and published_images.csv are optional.
REQUIRED_COLUMNS = {
    "objects_constituents.csv": ("objectid", "constituentid", "roletype", "role"),
    "constituents.csv": ("constituentid", "preferreddisplayname", "nationality"),
    "objects_terms.csv": ("objectid", "termtype", "term"),
}
OPTIONAL_COLUMNS = {
    "objects.csv": ("objectid", "title"),
    "published_images.csv": ("uuid", "depictstmsobjectid"),
}

# Roles under roletype 'artist' that name someone other than the maker of this object.
NOT_THE_MAKER = frozenset({"related artist", "artist after", "printer", "publisher"})

# objects_terms.csv termtype -> column of the per-image table.
TERM_COLUMNS = {
    "Style": "style",
    "Theme": "theme",
    "Keyword": "keywords",
    "School": "school",
    "Technique": "technique",
}
LIST_COLUMNS = ("artists", "artist_ids", "nationality", "related_artists", *TERM_COLUMNS.values())


@dataclass
class Problem:
    """One image or object id that could not be used fully, and why."""

    objectid: int | None
    path: str | None
    reason: str

    def __str__(self):
        where = self.path if self.path else f"object {self.objectid}"
        return f"{where}: {self.reason}"


@dataclass
class NgaCollection:
    """Images with metadata (`table`, one row per usable image) plus what went wrong."""

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[tuple[int, ...]] = field(default_factory=list)
    root: Path | None = None

    def row(self, objectid):
        """The table row of one object id, or ArtganError."""
        match = self.table.index[self.table["objectid"] == int(objectid)]
        if len(match) == 0:
            raise ArtganError(f"object {objectid} is not in the NGA collection at {self.root}")
        return self.table.loc[match[0]]

    def summary(self):
        lines = [f"{len(self.table)} images with metadata from {self.root}"]
        if self.duplicates:
            groups = ", ".join("/".join(map(str, group)) for group in self.duplicates)
            lines.append(f"exact duplicate image files (same bytes): {groups}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {line}" for line in grouped(self.problems))
        return "\n".join(lines)


def grouped(problems, shown=5):
    """One line per kind of problem, with how many there are and the first few files or
    ids (the evaluation page lists them all)."""
    kinds = {}
    for problem in problems:
        kinds.setdefault(problem.reason, []).append(problem)
    lines = []
    for reason, group in kinds.items():
        if len(group) == 1:
            lines.append(str(group[0]))
            continue
        names = [Path(p.path).name if p.path else f"object {p.objectid}" for p in group]
        more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
        lines.append(f"{len(group)} images: {reason}: {', '.join(names[:shown])}{more}")
    return lines


def default_nga_dir() -> Path:
    return data_root() / "nga"


def load_collection(root=None, images=None, check_decode=True) -> NgaCollection:
    """Join the NGA tables onto the image files in `root/images` (or `images`).

    `check_decode` decodes every image at a tiny size (JPEG draft mode makes this cheap) so
    unreadable files are reported here rather than discovered half-way through indexing.
    """
    root = Path(root) if root is not None else default_nga_dir()
    if not root.is_dir():
        raise ArtganError(
            f"{root}: NGA data folder not found (expected the NGA open-data CSVs and images/)"
        )
    image_dir = Path(images) if images is not None else root / "images"
    tables = {name: read_table(root / name, columns) for name, columns in REQUIRED_COLUMNS.items()}
    optional = {
        name: read_table(root / name, columns)
        for name, columns in OPTIONAL_COLUMNS.items()
        if (root / name).is_file()
    }
    problems: list[Problem] = []
    files = find_images(image_dir, optional.get("published_images.csv"), problems)
    metadata = object_metadata(tables, optional.get("objects.csv"))

    known = set(metadata)
    for objectid in sorted(known - set(files)):
        problems.append(Problem(objectid, None, f"in the tables but no image file in {image_dir}"))
    rows = []
    for objectid, path in sorted(files.items()):
        if check_decode:
            try:
                decode_image(path, 8, "stretch")
            except ImageError as error:
                problems.append(Problem(objectid, str(path), f"unreadable image: {error.reason}"))
                continue
        if objectid not in known:
            problems.append(
                Problem(
                    objectid, str(path), "image has no rows in the NGA tables (kept, unlabelled)"
                )
            )
        row = metadata.get(objectid) or frozen(empty_metadata())
        rows.append({"objectid": objectid, "path": str(path), "sha256": file_sha256(path), **row})
    table = pd.DataFrame(rows, columns=["objectid", "path", "sha256", "title", *LIST_COLUMNS])
    return NgaCollection(table, problems, duplicate_groups(table), root)


def read_table(path: Path, columns) -> pd.DataFrame:
    """Read one CSV as strings, naming the file and the missing columns on failure."""
    if not path.is_file():
        raise ArtganError(f"{path}: NGA table not found (needs columns: {', '.join(columns)})")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ArtganError(f"{path}: not a readable CSV table: {error}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ArtganError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"found: {', '.join(map(str, frame.columns)) or 'none'}"
        )
    if "depictstmsobjectid" in frame.columns:  # an image of no object is of no use here
        frame = frame[frame["depictstmsobjectid"].str.strip() != ""]  # index = file row
    for column in ("objectid", "constituentid", "depictstmsobjectid"):
        if column in frame.columns:
            frame[column] = integer_column(frame[column], path, column)
    return frame


def integer_column(values: pd.Series, path, column) -> pd.Series:
    """Plain integer ids only: `19.5` is not rounded to 19, and an id too long for int64
    (more than 18 digits) is refused rather than overflowed."""
    text = values.str.strip()
    bad = ~text.str.fullmatch(OBJECT_ID.pattern)
    if bad.any():
        line = int(values.index[bad.to_numpy()][0]) + 2  # the file's row; header is line 1
        raise ArtganError(
            f"{path}: line {line}: {column} {values[bad].iloc[0][:30]!r} is not an integer id "
            "(digits only, at most 18)"
        )
    return text.astype("int64")


def find_images(image_dir: Path, published, problems) -> dict[int, Path]:
    """{objectid: file} for `<objectid>.<ext>` files (or `<uuid>.<ext>` via published_images)."""
    if not image_dir.is_dir():
        raise ArtganError(f"{image_dir}: NGA image folder not found")
    by_uuid = {}
    if published is not None:
        by_uuid = dict(zip(published["uuid"].str.lower(), published["depictstmsobjectid"]))
    files: dict[int, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(Problem(None, str(path), "not an image file name (ignored)"))
            continue
        stem = path.stem
        objectid = int(stem) if OBJECT_ID.fullmatch(stem) else by_uuid.get(stem.lower())
        if objectid is None:
            problems.append(
                Problem(
                    None,
                    str(path),
                    "file name is neither an object id nor a known image uuid (ignored)",
                )
            )
        elif objectid in files:
            problems.append(
                Problem(
                    objectid,
                    str(path),
                    f"second image for object {objectid}; using {files[objectid].name}",
                )
            )
        else:
            files[objectid] = path
    return files


def object_metadata(tables, objects) -> dict[int, dict]:
    """{objectid: row fields} from the constituent and term tables (and objects.csv titles)."""
    result: dict[int, dict] = {}

    def entry(objectid):
        return result.setdefault(int(objectid), empty_metadata())

    people = tables["constituents.csv"].drop_duplicates("constituentid").set_index("constituentid")
    links = tables["objects_constituents.csv"]
    links = links[links["roletype"].str.lower() == "artist"]
    if "displayorder" in links.columns:
        links = links.assign(_order=pd.to_numeric(links["displayorder"], errors="coerce"))
        links = links.sort_values(["objectid", "_order"], kind="stable")
    anonymous = set()
    if "constituenttype" in people.columns:
        anonymous = set(people.index[people["constituenttype"].str.lower() == "anonymous"])
    for link in links.itertuples(index=False):
        person = people.loc[link.constituentid] if link.constituentid in people.index else None
        name = (
            person["preferreddisplayname"]
            if person is not None
            else f"constituent {link.constituentid}"
        )
        row = entry(link.objectid)
        if link.role.lower() in NOT_THE_MAKER:
            add(row["related_artists"], f"{link.role}: {name}")
            continue
        add(row["artists"], name)
        if person is not None and link.constituentid not in anonymous:
            add(row["artist_ids"], int(link.constituentid))  # "same artist" means same named hand
        if person is not None and person["nationality"]:
            add(row["nationality"], person["nationality"])
    terms = tables["objects_terms.csv"]
    for term in terms.itertuples(index=False):
        column = TERM_COLUMNS.get(term.termtype)
        if column and term.term:
            add(entry(term.objectid)[column], term.term)
    if objects is not None:
        for obj in objects.itertuples(index=False):
            entry(obj.objectid)["title"] = obj.title
    return {objectid: frozen(row) for objectid, row in result.items()}


def empty_metadata() -> dict:
    return {"title": "", **{column: [] for column in LIST_COLUMNS}}


def frozen(row: dict) -> dict:
    """Lists become tuples: hashable, and safe to share between table rows."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in row.items()}


def add(values: list, value) -> None:
    if value not in values:
        values.append(value)


def duplicate_groups(table: pd.DataFrame) -> list[tuple[int, ...]]:
    """Object ids whose image files are byte-identical (e.g. altarpiece panels sharing a photo)."""
    groups = table.groupby("sha256")["objectid"].apply(lambda ids: tuple(sorted(ids)))
    return sorted(group for group in groups if len(group) > 1)


def joined(values, sep="; ") -> str:
    """A list column as display text."""
    return sep.join(map(str, values)) if len(values) else ""
