"""`python -m artgan data wikiart|nga`: fetch the full data sets, resumably and verified;
`python -m artgan rehearse`: a stand-in for the WikiArt download, to rehearse full-size runs."""

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from artgan.data.download import Retry
from artgan.data.nga_download import DEFAULT_CLASSIFICATION, DEFAULT_SIZE, DEFAULT_WORKERS, get_nga
from artgan.data.rehearsal import rehearse
from artgan.data.wikiart_download import get_wikiart
from artgan.errors import ArtganError
from artgan.paths import work_root

EPILOG = """\
environment (a mirror can be set once instead of passing --url):
  ARTGAN_WIKIART_URL     the wikiart.zip URL
  ARTGAN_WIKIART_SHA256  its expected sha256 (checked after the download when set)
  ARTGAN_NGA_URL         base URL of the NGA tables (<url>/objects.csv, ...)
  ARTGAN_LABELS          the ArtGAN label folder the WikiArt images are unpacked for
"""


def add_data(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "data",
        help="download the full WikiArt images or the NGA open data (resumable, verified)",
        description="Download data sets the way users get them. Interrupted downloads resume "
        "when the command is rerun; finished files are skipped.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sources = parser.add_subparsers(title="data sets", metavar="DATASET", required=True)

    wikiart = sources.add_parser(
        "wikiart",
        help="the ArtGAN WikiArt (Refined) images, 25.4 GB zip",
        description="Download wikiart.zip (HTTP range requests resume it), check its size "
        "(and sha256 when given), unpack the images the ArtGAN label files name, and check that "
        "every labelled image is present. Prints the WIKIART_IMAGES setting to use.",
    )
    wikiart.add_argument(
        "--to",
        default=str(work_root() / "data" / "wikiart"),
        help="download folder (default: data/wikiart in the checkout, else the current folder)",
    )
    wikiart.add_argument(
        "--url",
        help="zip URL, e.g. a mirror (default: $ARTGAN_WIKIART_URL, "
        "else the ArtGAN README's link)",
    )
    wikiart.add_argument(
        "--sha256", help="expected sha256 of the zip (default: $ARTGAN_WIKIART_SHA256)"
    )
    wikiart.add_argument(
        "--labels", help="ArtGAN label folder (default: $ARTGAN_LABELS, else $ARTGAN_DATA/artgan)"
    )
    wikiart.add_argument(
        "--all", action="store_true", help="unpack every image, not only labelled ones"
    )
    wikiart.add_argument(
        "--max-unpacked-gb",
        type=float,
        default=64,
        help="refuse to unpack more than this many GB (default 64)",
    )
    add_common(wikiart)
    wikiart.set_defaults(run=with_progress_log(run_wikiart))

    nga = sources.add_parser(
        "nga",
        help="the National Gallery of Art open-data tables and images",
        description="Download the NGA open-data tables, select objects with an open-access "
        "primary image, and fetch each image through IIIF into <folder>/images/<objectid>.jpg, "
        "the layout `similar --nga FOLDER` reads.",
    )
    nga.add_argument(
        "--to",
        default=str(work_root() / "data" / "nga"),
        help="NGA folder (default: data/nga in the checkout, else the current folder)",
    )
    nga.add_argument(
        "--url",
        help="base URL of the tables (default: $ARTGAN_NGA_URL, else the "
        "NGA opendata repository's data/ folder)",
    )
    nga.add_argument(
        "--classification",
        default=DEFAULT_CLASSIFICATION,
        help=f"objects.csv classification to keep (default {DEFAULT_CLASSIFICATION}; "
        "'all' for every object)",
    )
    nga.add_argument(
        "--limit", type=int, help="fetch at most this many images (lowest object ids)"
    )
    nga.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"longest image side in pixels (default {DEFAULT_SIZE})",
    )
    nga.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"parallel image requests (default {DEFAULT_WORKERS})",
    )
    add_common(nga)
    nga.set_defaults(run=with_progress_log(run_nga))


def add_rehearse(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="build a stand-in WikiArt tree (real label files, real paintings hard-linked at "
        "every labelled path) to rehearse full-size runs",
        description="Write FOLDER/labels (the ArtGAN label files, or the rows of a "
        "deterministic FRACTION of the paintings) and FOLDER/wikiart (one real painting, hard "
        "linked, at every path they name; a realistic share re-encoded at 1,000-2,000 px). "
        "States the disk it needs first and refuses when it is short; a rerun completes it. "
        "docs/rehearsal.md measures searches on it.",
    )
    parser.add_argument(
        "--to",
        default=str(work_root() / "data" / "rehearsal"),
        help="folder to build (default: data/rehearsal in the checkout, ignored by git; else the current folder)",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="share of the paintings, 0 < F <= 1 (default 1: all 81,446)",
    )
    parser.add_argument(
        "--labels", help="ArtGAN label folder (default: $ARTGAN_LABELS, else $ARTGAN_DATA/artgan)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=with_progress_log(run_rehearse))


def run_rehearse(args: argparse.Namespace) -> None:
    result = rehearse(args.to, args.fraction, labels=args.labels, progress=not args.quiet)
    rows = ", ".join(f"{Path(name).name} {count:,}" for name, count in result.rows.items())
    print(
        f"stand-in WikiArt tree for {result.fraction:g} of the paintings: "
        f"{result.paintings:,} images ({result.made:,} made, {result.already:,} already there); "
        f"label rows: {rows}"
    )
    print(f"WIKIART_IMAGES={result.images} ARTGAN_LABELS={result.labels}")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retries", type=int, default=6, help="tries per request (default 6)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def retry_policy(args: argparse.Namespace) -> Retry:
    if args.retries < 1:
        raise ArtganError("--retries must be at least 1")
    return Retry(attempts=args.retries)


def with_progress_log(
    run: Callable[[argparse.Namespace], None],
) -> Callable[[argparse.Namespace], None]:
    """Run `run(args)` showing what the library logs (what it skips, resumes and retries)
    on the console, above the progress bars rather than through them."""

    def wrapped(args: argparse.Namespace) -> None:
        with logging_redirect_tqdm():
            return run(args)

    return wrapped


def run_wikiart(args: argparse.Namespace) -> None:
    result = get_wikiart(
        args.to,
        url=args.url,
        sha256=args.sha256,
        labels=args.labels,
        everything=args.all,
        retry=retry_policy(args),
        max_total=int(args.max_unpacked_gb * 1024**3),
        progress=not args.quiet,
    )
    state = (
        "already downloaded"
        if not result.downloaded and not result.resumed_from
        else (
            f"downloaded {result.downloaded} bytes"
            + (f", resumed at byte {result.resumed_from}" if result.resumed_from else "")
        )
    )
    print(f"zip: {result.zip_path} ({state})")
    print(
        f"unpacked {result.unpacked} image(s), {result.already} already there; all "
        f"{result.labelled} images of {len(result.label_files)} label files are present"
    )
    print(f"WIKIART_IMAGES={result.images}")


def run_nga(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise ArtganError("--limit must be at least 1")
    if args.size < 1 or args.workers < 1:
        raise ArtganError("--size and --workers must be at least 1")
    result = get_nga(
        args.to,
        url=args.url,
        classification=args.classification,
        limit=args.limit,
        size=args.size,
        workers=args.workers,
        retry=retry_policy(args),
        progress=not args.quiet,
    )
    print(
        f"NGA data in {result.folder}: {result.tables_fetched} table(s) downloaded; "
        f"{result.selected} image(s) selected, {result.fetched} fetched, {result.skipped} already there"
    )
    if result.failed:
        raise ArtganError(
            f"{len(result.failed)} image(s) could not be fetched (first: "
            f"{result.failed[0]}); rerun the same command to retry them"
        )
    print(f"next: python -m artgan similar index --nga {result.folder}")
