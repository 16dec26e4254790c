"""A stand-in for the full WikiArt download, to rehearse full-size runs without its 25 GB.

`rehearse(folder, fraction)` writes the layout `data wikiart` produces, from the real label
files and the repository's real paintings:

    <folder>/labels/Style|Genre|Artist/...  the ArtGAN label files (at `fraction` < 1, only the
                                           rows of a deterministic subset of the paintings,
                                           lines byte for byte, headers kept)  -> ARTGAN_LABELS
    <folder>/wikiart/<label path>          one image at every path they name -> WIKIART_IMAGES
    <folder>/standins/                     the real paintings those files are made from

Every image is a hard link to a stand-in (a copy where the file system refuses links): the
real paintings of wikiart-style7, louvre-genre4 and nga, and, for a realistic cost of
decoding, some of them re-encoded at 1,000-2,000 px on the long side, used for enough paths
that the mean file size is the real archive's (about 310 KB). The pixels are real but not
the paintings the labels name: the tree rehearses cost, not accuracy. A painting is in the
subset when a hash of its path falls below `fraction`, so the three tasks keep the same
paintings, and a larger fraction contains a smaller one. The disk needed is stated, and
checked, before anything is written; a rerun skips what is there.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from artgan.data.labels import read_label_rows
from artgan.data.wikiart_download import IMAGES_FOLDER, LABEL_FILES, default_labels
from artgan.errors import ArtganError
from artgan.files import (
    atomic_path,
    check_removable,
    check_space,
    clear_write_errors,
    gigabytes,
    make_folder,
)
from artgan.paths import data_root
from artgan.progress import progress_bar

log = logging.getLogger(__name__)

CLASS_FILES = ("Style/style_class.txt", "Genre/genre_class", "Artist/artist_class")
SOURCES = ("wikiart-style7/images", "louvre-genre4/images", "nga/images")  # real paintings
LARGE_SIDES = (1000, 2000)  # long side of the re-encoded stand-ins, px
LARGE_COUNT = 120  # distinct large stand-ins
LARGE_QUALITY = 90
LARGE_BYTES_AT_MOST = 1_500_000  # per large stand-in, for the disk estimate before encoding
MEAN_BYTES = 310_000  # the real archive: 25.4 GB over 81,446 paintings
ENTRY_BYTES = 256  # a hard link's directory entry, roughly
MARKER = ".artgan-rehearsal"
LABELS_FOLDER, STANDINS_FOLDER = "labels", "standins"


@dataclass
class Rehearsal:
    """What `rehearse` made, for the command's summary."""

    folder: Path
    fraction: float
    rows: dict = field(default_factory=dict)  # label file -> rows kept
    paintings: int = 0  # distinct image paths
    made: int = 0
    copied: int = 0  # of `made`, copies where a link was refused
    already: int = 0
    large_share: float = 0.0
    mean_bytes: float = 0.0  # mean size of the images the tree holds

    @property
    def images(self):
        return self.folder / IMAGES_FOLDER

    @property
    def labels(self):
        return self.folder / LABELS_FOLDER


def rehearse(folder, fraction=1.0, labels=None, data=None, progress=True) -> Rehearsal:
    """Build (or complete) the stand-in tree in `folder` for `fraction` of the paintings."""
    if not 0 < fraction <= 1:
        raise ArtganError(f"`fraction` must be in (0, 1], got {fraction}")
    folder = Path(folder)
    check_removable(folder, MARKER)  # empty, missing, or one of ours: never mix with others'
    labels = Path(labels) if labels is not None else default_labels()
    sources = _sources(Path(data) if data is not None else data_root())
    kept = {name: _kept_lines(labels / name, fraction) for name in LABEL_FILES}
    wanted = sorted(set().union(*(paths for paths, _ in kept.values())))
    result = Rehearsal(
        folder, fraction, {name: len(paths) for name, (paths, _) in kept.items()}, len(wanted)
    )
    make_folder(folder)
    (folder / MARKER).touch()
    links = _links_work(folder)
    _check_disk(folder, sources, wanted, links)

    small = _copy_small(sources, folder / STANDINS_FOLDER)
    large = _make_large(small, folder / STANDINS_FOLDER, LARGE_COUNT)
    result.large_share = _large_share(small, large)
    for name, (_, text) in kept.items():
        with atomic_path(result.labels / name) as temporary:
            temporary.write_bytes(text)
    for name in CLASS_FILES:
        with atomic_path(result.labels / name) as temporary:
            shutil.copyfile(labels / name, temporary)

    sizes = []
    with clear_write_errors(result.images, only_space=True):
        for path in progress_bar(
            wanted, desc="stand-in images", unit="file", disable=not progress
        ):
            standin = _standin(path, small, large, result.large_share)
            sizes.append(standin.stat().st_size)
            target = result.images / path
            if os.path.lexists(target):
                result.already += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            result.copied += not _link_or_copy(standin, target)
            result.made += 1
    result.mean_bytes = float(np.mean(sizes)) if sizes else 0.0
    log.info(
        "%s: %s stand-in images (%s made, %s copied, %s already there), %.0f %% of them "
        "large; mean %.0f KB a painting",
        result.images,
        f"{len(wanted):,}",
        f"{result.made:,}",
        f"{result.copied:,}",
        f"{result.already:,}",
        100 * result.large_share,
        result.mean_bytes / 1e3,
    )
    return result


def _sources(root: Path) -> list[Path]:
    """The real paintings stand-ins are made from, in a fixed order."""
    found = [path for source in SOURCES for path in sorted((root / source).rglob("*.jpg"))]
    if not found:
        raise ArtganError(
            f"{root}: no real paintings in {', '.join(SOURCES)} to stand in "
            "for the WikiArt images (set ARTGAN_DATA to the shared data)"
        )
    return found


def in_subset(path: str, fraction: float) -> bool:
    """Whether painting `path` is in the `fraction` subset (the same in every label file)."""
    digest = hashlib.sha256(path.encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _kept_lines(label_file: Path, fraction: float):
    """(paths kept, the file's bytes with the other rows' lines left out)."""
    if not label_file.is_file():
        raise ArtganError(
            f"{label_file}: ArtGAN label file not found; set ARTGAN_LABELS to "
            "the folder holding Style/, Genre/ and Artist/"
        )
    rows = read_label_rows(label_file)
    paths = rows["path"].str.replace("\\", "/")
    safe = paths.map(_safe)
    chosen = safe & paths.map(lambda path: in_subset(path, fraction))
    dropped = set(rows["line"][~chosen])
    lines = label_file.read_bytes().split(b"\n")
    text = b"\n".join(line for number, line in enumerate(lines, start=1) if number not in dropped)
    return set(paths[chosen]), text


def _safe(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def _links_work(folder: Path) -> bool:
    probe, link = folder / ".link-probe", folder / ".link-probe-2"
    probe.write_bytes(b"")
    try:
        os.link(probe, link)
        return True
    except OSError:
        return False
    finally:
        link.unlink(missing_ok=True)
        probe.unlink(missing_ok=True)


def _check_disk(folder, sources, wanted, links):
    """State the space needed, and refuse (ArtganError) before writing when it is short."""
    small = sum(path.stat().st_size for path in sources)
    large = LARGE_COUNT * LARGE_BYTES_AT_MOST
    images = len(wanted) * (ENTRY_BYTES if links else max(MEAN_BYTES, LARGE_BYTES_AT_MOST))
    needed = small + large + images
    free = shutil.disk_usage(folder).free
    log.info(
        "%s: %s paintings; needs about %s (stand-ins %s, images %s%s), %s free",
        folder,
        f"{len(wanted):,}",
        gigabytes(needed),
        gigabytes(small + large),
        gigabytes(images),
        " as hard links" if links else " as copies: this file system refuses hard links",
        gigabytes(free),
    )
    check_space(folder / MARKER, needed)


def _copy_small(sources, standins: Path) -> list[Path]:
    """The real paintings, copied once into the tree (links must stay inside it)."""
    copies = []
    for number, source in enumerate(sources):
        copy = standins / "small" / f"{number:05d}{source.suffix.lower()}"
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(copy) as temporary:
                shutil.copyfile(source, temporary)
        copies.append(copy)
    return copies


def _make_large(small, standins: Path, count) -> list[Path]:
    """`count` stand-ins re-encoded at 1,000-2,000 px, from the largest real paintings."""
    rng = np.random.default_rng(0)
    biggest = sorted(small, key=lambda path: -path.stat().st_size)[:count]
    sides = rng.integers(LARGE_SIDES[0], LARGE_SIDES[1] + 1, size=len(biggest))
    made = []
    for number, (source, side) in enumerate(zip(biggest, sides)):
        large = standins / "large" / f"{number:03d}.jpg"
        if not large.exists():
            large.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(source) as opened:
                image = opened.convert("RGB")
                scale = int(side) / max(image.size)
                image = image.resize(
                    (round(image.width * scale), round(image.height * scale)),
                    Image.Resampling.LANCZOS,
                )
                with atomic_path(large) as temporary:
                    image.save(temporary, format="JPEG", quality=LARGE_QUALITY)
        made.append(large)
    return made


def _large_share(small, large) -> float:
    """The share of large stand-ins that brings the mean file size to the real archive's."""
    mean_small = np.mean([path.stat().st_size for path in small])
    mean_large = np.mean([path.stat().st_size for path in large])
    if mean_large <= mean_small:
        return 1.0
    return float(np.clip((MEAN_BYTES - mean_small) / (mean_large - mean_small), 0, 1))


def _standin(path, small, large, large_share):
    """The stand-in of painting `path`: fixed by its hash, large with `large_share` odds."""
    digest = hashlib.sha256(b"stand-in\0" + path.encode()).digest()
    pick = int.from_bytes(digest[8:16], "big")
    if int.from_bytes(digest[:8], "big") < large_share * 2**64:
        return large[pick % len(large)]
    return small[pick % len(small)]


def _link_or_copy(standin: Path, target: Path) -> bool:
    """Hard-link `target` to `standin` (True), or copy it where links are refused (False)."""
    try:
        os.link(standin, target)
        return True
    except OSError as error:
        if error.errno not in (
            errno.EXDEV,
            errno.EPERM,
            errno.EMLINK,
            errno.ENOTSUP,
            errno.EACCES,
        ):
            raise
    with atomic_path(target) as temporary:
        shutil.copyfile(standin, temporary)
    return False
