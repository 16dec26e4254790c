"""`python -m artgan similar index|query|evaluate`: similar-painting search over NGA data.

A command family of its own; like the rest of the CLI it imports TensorFlow only when an
extractor other than `handcrafted` is used, after the collection and arguments are checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from artgan.cli.heavy import load_tensorflow
from artgan.errors import ArtganError
from artgan.paths import work_root
from artgan.similar.nga import joined, load_collection
from artgan.similar.pages import caption as describe
from artgan.similar.pages import write_evaluation, write_gallery
from artgan.similar.retrieval import evaluate, format_table

if TYPE_CHECKING:
    from artgan.similar.extractors import Extractor


def index_dir() -> Path:
    """Where `similar index` keeps its indexes (one per extractor): runs/similar in the
    checkout, else in the current folder."""
    return work_root() / "runs" / "similar"


EXTRACTOR_HELP = (
    "'handcrafted' (colour/texture, no training needed), 'efficientnet_lite0' (ImageNet "
    "features, no training needed), 'model:PATH.keras', or an experiment "
    "name/YAML whose best model (<output>/best/model_1.keras) is used"
)


def add_similar(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "similar",
        help="find similar paintings in the NGA collection and score the retrieval",
        description="Embed the NGA paintings, query the nearest ones, and evaluate retrieval "
        "against the museum's artist/style/theme metadata.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    index = actions.add_parser(
        "index", help="embed every image (only new or changed ones on reruns)"
    )
    add_source(index)
    index.set_defaults(run=run_index)

    query = actions.add_parser(
        "query", help="the k most similar paintings to an object id or image file"
    )
    query.add_argument("target", metavar="IMAGE_OR_OBJECT_ID")
    query.add_argument("--k", type=int, default=10, help="how many results (default 10)")
    query.add_argument("--html", metavar="OUT", help="also write a gallery page with thumbnails")
    add_source(query)
    query.set_defaults(run=run_query)

    evaluate = actions.add_parser(
        "evaluate", help="precision/recall@k, mAP@k, MRR vs a random ranking"
    )
    evaluate.add_argument("--k", type=int, default=10, help="cut-off rank (default 10)")
    evaluate.add_argument("--extractor", action="append", help=f"repeatable; {EXTRACTOR_HELP}")
    evaluate.add_argument("--index", action="append", help="repeatable; index file(s) to compare")
    evaluate.add_argument("--nga", help="NGA data folder (default: $ARTGAN_DATA/nga)")
    evaluate.add_argument(
        "--out",
        default=str(work_root() / "reports" / "similar"),
        help="report folder (default: reports/similar)",
    )
    evaluate.set_defaults(run=run_evaluate)


def add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--extractor", default="handcrafted", help=f"default handcrafted; {EXTRACTOR_HELP}"
    )
    parser.add_argument(
        "--layer", help="feature layer of a model extractor (default: the model's own)"
    )
    parser.add_argument("--nga", help="NGA data folder (default: $ARTGAN_DATA/nga)")
    parser.add_argument("--index", help="index file (default: runs/similar/<extractor>.npz)")


def index_path(args: argparse.Namespace, extractor: Extractor | None = None) -> Path:
    from artgan.similar.extractors import make_extractor
    from artgan.similar.index import default_index_path

    if args.index:
        return Path(args.index)
    return default_index_path(extractor or make_extractor(args.extractor, args.layer), index_dir())


def run_index(args: argparse.Namespace) -> None:
    from artgan.similar.extractors import make_extractor
    from artgan.similar.index import build_index

    collection = load_collection(args.nga)
    print(collection.summary())
    if args.extractor != "handcrafted":
        load_tensorflow()
    extractor = make_extractor(args.extractor, args.layer)
    update = build_index(collection, extractor, index_path(args, extractor))
    print(update.summary())


def run_query(args: argparse.Namespace) -> None:
    from artgan.similar.index import Index, query

    if args.extractor != "handcrafted":
        load_tensorflow()
    index = Index.load(index_path(args))
    collection = load_collection(args.nga, check_decode=False)
    label, hits, excluded = query(index, collection, args.target, args.k)
    known = set(collection.table["objectid"])
    rows = []
    for hit in hits:
        row = collection.row(hit.objectid) if hit.objectid in known else None
        rows.append(
            {
                "rank": hit.rank,
                "objectid": hit.objectid,
                "score": f"{hit.score:.3f}",
                "artist": joined(row["artists"]) if row is not None else "?",
                "style": joined(row["style"]) if row is not None else "?",
            }
        )
    copies = [objectid for objectid in excluded if str(objectid) != args.target.strip()]
    print(f"most similar to {label} ({index.name})")
    if copies:
        print(f"excluded exact copies of the query image: {', '.join(map(str, copies))}")
    print(pd.DataFrame(rows).to_string(index=False) if rows else "(no other images in the index)")
    if args.html:
        by_id = label.startswith("object ")
        image = collection.row(int(args.target))["path"] if by_id else args.target
        caption = describe(collection.row(int(args.target))) if by_id else args.target
        page = write_gallery(
            args.html,
            label,
            image,
            caption,
            [h for h in hits if h.objectid in known],
            collection,
            index.name,
            copies,
        )
        print(f"gallery: {page}")


def run_evaluate(args: argparse.Namespace) -> None:
    from artgan.similar.extractors import make_extractor
    from artgan.similar.index import Index, default_index_path

    paths = [Path(path) for path in args.index or []]
    if any(spec != "handcrafted" for spec in args.extractor or []):
        load_tensorflow()
    paths += [
        default_index_path(make_extractor(spec), index_dir()) for spec in args.extractor or []
    ]
    if not paths:
        paths = sorted(index_dir().glob("*.npz"))
        if not paths:
            raise ArtganError(
                f"no index in {index_dir()}; run `python -m artgan similar index` first"
            )
    indexes = [Index.load(path) for path in paths]
    collection = load_collection(args.nga, check_decode=False)
    frame = evaluate(collection, indexes, args.k)
    print(
        f"retrieval on {frame.attrs['images']} NGA images, k={args.k} "
        f"(query's own file and exact duplicates excluded; duplicates: "
        f"{', '.join('/'.join(map(str, g)) for g in collection.duplicates) or 'none'})"
    )
    if frame.attrs["dropped"]:
        print(
            f"note: {frame.attrs['dropped']} collection image(s) are missing from some index and were left out"
        )
    print(format_table(frame))
    csv_path, html_path = write_evaluation(frame, collection, args.out)
    print(f"\ntable: {csv_path}\npage:  {html_path}")
