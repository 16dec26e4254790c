"""National Gallery of Art open data: the tables, and the images they only link to.

The tables come from github.com/NationalGalleryOfArt/opendata (`data/<name>.csv`). Objects
are selected from `objects.csv` (by classification, e.g. paintings) when their primary image
in `published_images.csv` is open access, and each image is fetched through its IIIF URL at
a bounded size (`<iiifurl>/full/!SIZE,SIZE/0/default.jpg`) by a few threads at once. The
result is the folder `artgan.similar.nga.load_collection` (and so `similar`) reads: the
tables beside `images/<objectid>.jpg`. Reruns skip images already present that decode, and
refetch the rest.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from artgan.data.download import Retry, TransientError, fetch_bytes, fetch_file, setting
from artgan.errors import ArtganError
from artgan.files import atomic_path, make_folder
from artgan.progress import progress_bar

log = logging.getLogger(__name__)

NGA_URL = "https://github.com/NationalGalleryOfArt/opendata/raw/main/data"
URL_VARIABLE = "ARTGAN_NGA_URL"
TABLES = ("objects", "published_images", "constituents", "objects_constituents", "objects_terms")
DEFAULT_CLASSIFICATION = "Painting"
ANY_CLASSIFICATION = "all"
DEFAULT_SIZE = 800  # longest side in pixels (IIIF "!w,h": fit inside, keep the aspect ratio)
DEFAULT_WORKERS = 4  # parallel image requests: enough to be quick, few enough to be polite
MAX_TABLE_BYTES = 1 << 30  # a table's download limit (objects.csv, the largest, is about 0.1 GB)
MAX_IMAGE_BYTES = 64 << 20  # an image's (an 800 px JPEG is about 0.2 MB)


def default_url():
    return setting(URL_VARIABLE, NGA_URL)


@dataclass
class NgaResult:
    """What `get_nga` did, for the command's summary."""

    folder: Path
    tables_fetched: int = 0
    selected: int = 0
    fetched: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def get_nga(
    folder,
    url=None,
    classification=DEFAULT_CLASSIFICATION,
    limit=None,
    size=DEFAULT_SIZE,
    workers=DEFAULT_WORKERS,
    retry: Retry = Retry(),
    progress=True,
) -> NgaResult:
    """Fetch the tables and the selected objects' images into `folder`; images that still
    fail after retries are listed in the result (a rerun tries them again)."""
    folder = make_folder(Path(folder))
    result = NgaResult(folder)
    result.tables_fetched = fetch_tables(folder, url or default_url(), retry, progress)
    chosen = select_images(folder, classification, limit)
    result.selected = len(chosen)
    images = make_folder(folder / "images")
    todo = {
        objectid: iiif
        for objectid, iiif in chosen.items()
        if not usable_image(images / f"{objectid}.jpg")
    }
    result.skipped = len(chosen) - len(todo)
    log.info(
        "%d image(s) selected, %d already present, %d to fetch",
        len(chosen),
        result.skipped,
        len(todo),
    )
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        jobs = {
            pool.submit(
                fetch_image, iiif_url(iiif, size), images / f"{objectid}.jpg", retry
            ): objectid
            for objectid, iiif in todo.items()
        }
        for job in progress_bar(
            as_completed(jobs),
            total=len(jobs),
            desc="images",
            unit="image",
            disable=not progress,
            leave=False,
        ):
            try:
                job.result()
                result.fetched += 1
            except ArtganError as error:
                log.warning("object %s: %s", jobs[job], error)
                result.failed.append(str(error))
    finally:  # on Ctrl-C: finish the requests in flight, drop the queued ones
        pool.shutdown(wait=True, cancel_futures=True)
    return result


def fetch_tables(folder: Path, url: str, retry: Retry, progress=True) -> int:
    """Download the open-data CSVs that are not in `folder` yet; returns how many."""
    fetched = 0
    for name in TABLES:
        outcome = fetch_file(
            f"{url.rstrip('/')}/{name}.csv",
            folder / f"{name}.csv",
            max_bytes=MAX_TABLE_BYTES,
            retry=retry,
            progress=progress,
        )
        fetched += not outcome.skipped
    return fetched


def select_images(
    folder: Path, classification=DEFAULT_CLASSIFICATION, limit=None
) -> dict[int, str]:
    """{objectid: IIIF base URL} of objects with an open-access primary image, of
    `classification` (any when empty or "all"), lowest object ids first, at most `limit`."""
    objects = read_csv(folder / "objects.csv", ("objectid", "classification"))
    images = read_csv(
        folder / "published_images.csv",
        ("iiifurl", "viewtype", "openaccess", "depictstmsobjectid"),
    )
    if classification and classification.lower() != ANY_CLASSIFICATION:
        objects = objects[objects["classification"].str.lower() == classification.lower()]
    open_primary = images[
        (images["viewtype"] == "primary")
        & (images["openaccess"] == "1")
        & (images["iiifurl"] != "")
    ]
    open_primary = open_primary.drop_duplicates("depictstmsobjectid")
    joined = objects.merge(open_primary, left_on="objectid", right_on="depictstmsobjectid")
    joined = joined[joined["objectid"].str.fullmatch(r"[0-9]{1,18}")]
    joined = joined.assign(id=joined["objectid"].astype("int64")).sort_values("id")
    if limit is not None:
        joined = joined.head(limit)
    if joined.empty:
        raise ArtganError(
            f"{folder}: no {classification or 'object'} with an open-access primary "
            "image in objects.csv / published_images.csv"
        )
    return dict(zip(joined["id"], joined["iiifurl"]))


def read_csv(path: Path, columns) -> pd.DataFrame:
    """A downloaded table as strings, or ArtganError naming the file and missing columns."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ArtganError(f"{path}: not a readable CSV table: {error}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ArtganError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def iiif_url(base: str, size: int) -> str:
    """The IIIF Image API request for the whole image fitted inside size x size pixels."""
    return f"{base.rstrip('/')}/full/!{size},{size}/0/default.jpg"


def fetch_image(url: str, target: Path, retry: Retry) -> None:
    """Fetch one image (a body that does not decode is fetched again) and write it atomically."""
    body = fetch_bytes(url, max_bytes=MAX_IMAGE_BYTES, retry=retry, check=check_decodes)
    with atomic_path(target) as temporary:
        temporary.write_bytes(body)


def check_decodes(body: bytes) -> None:
    """TransientError unless `body` is a complete image (a truncated JPEG fails `load`)."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except (OSError, Image.DecompressionBombError, ValueError, SyntaxError) as error:
        raise TransientError(f"image does not decode ({error})") from None


def usable_image(path: Path) -> bool:
    """True when `path` is a non-empty file that decodes completely."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        check_decodes(path.read_bytes())
    except TransientError:
        log.info("%s: incomplete or corrupt; fetching it again", path)
        return False
    return True
