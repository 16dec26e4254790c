"""The ArtGAN "WikiArt (Refined)" images: download `wikiart.zip`, unpack what the label files
name, and check that every labelled image is there.

The zip (25.4 GB, linked from the README of github.com/cs-chan/ArtGAN, `WikiArt Dataset/`)
holds `wikiart/<Style>/<artist_title>.jpg`; the label paths are relative to that `wikiart/`
folder. Unpacking refuses unsafe entries (absolute paths, `..`, symlinks), entries that would
unpack to the same file, and archives that would inflate beyond a limit, writes each file
atomically, skips files already unpacked, and never overwrites a file that differs from the
archive's.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from artgan.data.download import Retry, fetch_file, setting
from artgan.data.labels import read_label_rows
from artgan.errors import ArtganError
from artgan.files import atomic_path, check_space, check_zip_sizes
from artgan.paths import data_root
from artgan.progress import progress_bar

log = logging.getLogger(__name__)

WIKIART_URL = "http://web.fsktm.um.edu.my/~cschan/source/ICIP2017/wikiart.zip"
URL_VARIABLE = "ARTGAN_WIKIART_URL"
SHA256_VARIABLE = "ARTGAN_WIKIART_SHA256"  # no official checksum is published; set one to check
IMAGES_FOLDER = "wikiart"  # the folder inside the zip that label paths are relative to
ZIP_NAME = "wikiart.zip"
MAX_TOTAL = 64 * 1024**3  # bytes unpacked at most (the real images are about 26 GB)
MAX_ZIP_BYTES = 64 * 1024**3  # the zip's download limit (the real one is 25.4 GB)

# The published ArtGAN label files, relative to the label folder (ARTGAN_LABELS).
LABEL_FILES = (
    "Style/style_train.csv",
    "Style/style_val.csv",
    "Genre/genre_train.csv",
    "Genre/genre_val.csv",
    "Artist/artist_train",
    "Artist/artist_val",
)


def default_url():
    return setting(URL_VARIABLE, WIKIART_URL)


def default_sha256():
    return setting(SHA256_VARIABLE, None)


def default_labels() -> Path:
    return Path(setting("ARTGAN_LABELS", str(data_root() / "artgan")))


@dataclass
class WikiartResult:
    """What `get_wikiart` did, for the command's summary."""

    images: Path
    zip_path: Path
    downloaded: int = 0
    resumed_from: int = 0
    unpacked: int = 0
    already: int = 0
    labelled: int = 0
    label_files: list[Path] = field(default_factory=list)


def get_wikiart(
    folder,
    url=None,
    sha256=None,
    labels=None,
    everything=False,
    retry: Retry = Retry(),
    max_total=MAX_TOTAL,
    progress=True,
) -> WikiartResult:
    """Download the zip into `folder`, unpack the labelled images (all with `everything`)
    into `folder/wikiart`, and verify that every label row's image exists there."""
    folder = Path(folder)
    files = label_files(labels)
    wanted = labelled_paths(files)
    zip_path = folder / ZIP_NAME
    fetched = fetch_file(
        url or default_url(),
        zip_path,
        max_bytes=MAX_ZIP_BYTES,
        retry=retry,
        sha256=sha256 or default_sha256(),
        progress=progress,
    )
    result = WikiartResult(
        folder / IMAGES_FOLDER,
        zip_path,
        fetched.received,
        fetched.resumed_from,
        labelled=len(wanted),
        label_files=files,
    )
    result.unpacked, result.already = unpack(
        zip_path, folder, None if everything else wanted, max_total, progress
    )
    check_complete(result.images, wanted)
    return result


def label_files(labels=None) -> list[Path]:
    """The ArtGAN label files present in the label folder (ArtganError when there are none)."""
    root = Path(labels) if labels is not None else default_labels()
    found = [root / name for name in LABEL_FILES if (root / name).is_file()]
    if not found:
        raise ArtganError(
            f"{root}: no ArtGAN label files ({', '.join(LABEL_FILES)}); "
            "set ARTGAN_LABELS to the folder holding Style/, Genre/ and Artist/"
        )
    return found


def labelled_paths(files) -> set[str]:
    """Every image path the label files name, relative to the `wikiart/` folder."""
    paths = set()
    for path in files:
        paths.update(read_label_rows(path)["path"].str.replace("\\", "/"))
    return paths


def unpack(zip_path: Path, folder: Path, wanted=None, max_total=MAX_TOTAL, progress=True):
    """Extract the entries in `wanted` (all when None) into `folder/wikiart`; returns
    (files written, files already there). Unsafe archives are refused before anything is
    written."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArtganError(
            f"{zip_path}: not a readable zip ({error}); delete it and rerun"
        ) from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        for info in members:
            check_entry(zip_path, info)
        chosen = [info for info in members if wanted is None or image_path(info) in wanted]
        check_duplicates(zip_path, chosen)
        check_zip_sizes(zip_path, chosen, max_total)
        todo = [info for info in chosen if not unpacked_already(folder, info)]
        check_space(zip_path, sum(info.file_size for info in todo))
        for info in progress_bar(
            todo, desc="unpacking", unit="file", disable=not progress, leave=False
        ):
            extract_entry(archive, info, folder)
    log.info(
        "%s: unpacked %d file(s), %d already there", zip_path, len(todo), len(chosen) - len(todo)
    )
    return len(todo), len(chosen) - len(todo)


def image_path(info: zipfile.ZipInfo) -> str:
    """An entry's path relative to the `wikiart/` folder the label paths start from (an
    archive without that top folder is taken as its content)."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    return "/".join(parts[1:] if len(parts) > 1 and parts[0] == IMAGES_FOLDER else parts)


def target_path(folder: Path, info: zipfile.ZipInfo) -> Path:
    """Where an entry is unpacked: always `<folder>/wikiart/<path the labels use>`."""
    return folder / IMAGES_FOLDER / image_path(info)


def check_entry(zip_path, info: zipfile.ZipInfo) -> None:
    """Refuse entries that could write outside the target folder: absolute paths, drive
    letters, `..` components and symbolic links."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    mode = info.external_attr >> 16
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
        reason = "its path leaves the target folder"
    elif stat.S_ISLNK(mode):
        reason = "it is a symbolic link"
    else:
        return
    raise ArtganError(
        f"{zip_path}: refused: entry {info.filename!r}: {reason}; nothing was unpacked"
    )


def check_duplicates(zip_path, members) -> None:
    """Refuse entries that unpack to the same file (`wikiart/X` and `X`, or one name twice):
    the later would silently replace the earlier, and every rerun find it "differs"."""
    first: dict[str, zipfile.ZipInfo] = {}
    clashes = []
    for info in members:
        earlier = first.setdefault(image_path(info), info)
        if earlier is not info:
            clashes.append(f"{earlier.filename!r} and {info.filename!r}")
    if clashes:
        more = f"; ... {len(clashes) - 3} more" if len(clashes) > 3 else ""
        shown = "; ".join(clashes[:3]) + more
        raise ArtganError(
            f"{zip_path}: refused: entries unpack to the same file: {shown}; nothing was unpacked"
        )


def unpacked_already(folder: Path, info: zipfile.ZipInfo) -> bool:
    """True when the entry's file exists with the archive's size; a different file there is
    not ours to overwrite (ArtganError)."""
    target = target_path(folder, info)
    if not target.exists() and not target.is_symlink():
        return False
    if target.is_file() and not target.is_symlink() and target.stat().st_size == info.file_size:
        return True
    raise ArtganError(
        f"{target}: exists and differs from {info.filename!r} in the zip; "
        "artgan does not overwrite it: move it away and rerun"
    )


def extract_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path) -> None:
    """Write one entry atomically (a killed run leaves no half-written image)."""
    target = target_path(folder, info)
    try:
        with archive.open(info) as source, atomic_path(target) as temporary:
            with open(temporary, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ArtganError(
            f"{archive.filename}: entry {info.filename!r} is corrupt ({error}); "
            "delete the zip and rerun to download it again"
        ) from None


def check_complete(images: Path, wanted) -> None:
    """ArtganError listing label rows whose image is missing under `images`."""
    missing = sorted(path for path in wanted if not (images / path).is_file())
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ArtganError(
            f"{images}: {len(missing)} labelled image(s) missing after unpacking "
            f"(not in the zip?): {shown}"
        )
    log.info("%s: all %d labelled images present", images, len(wanted))
