"""`python -m artgan ...`: a thin command line over the package's modules, one module per
command group (search, models, report, similar).

User mistakes (`ArtganError`) print one clear message, with the library's parameter names
shown as this CLI's flags, and exit with status 2. The library logs; `main` shows its INFO
messages on stdout. TensorFlow is imported only by the commands that need it, inside their
`run_*` functions after their arguments, task and spec are checked (`heavy.load_tensorflow`),
so `--help` and every mistake answer at once.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from artgan import __version__
from artgan.cli.data import add_data, add_rehearse
from artgan.cli.models import add_evaluate, add_explain, add_features, add_predict
from artgan.cli.report import add_compare, add_report
from artgan.cli.search import add_search, add_worker
from artgan.cli.similar import add_similar
from artgan.errors import ArtganError
from artgan.paths import checkout_cache

#: How this CLI spells the library's parameters in error messages (see `ArtganError`).
FLAGS = {
    "tuner_id": "--id",
    "chief": "--chief",
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "max_restarts": "--max-restarts",
    "gpus": "--gpus",
    "token_file": "--token-file",
    "trial_timeout": "--trial-timeout",
    "fresh": "--fresh",
    "overrides": "--set",
    "output": "--set output=PATH",
    "top": "--top",
    "layer": "--layer",
    "k": "--k",
    "extractor": "--extractor",
    "allow_mismatch": "--allow-mismatch",
    "runs": "RUNS",
    "out": "--out",
    "fraction": "--fraction",
}


EPILOG = """\
examples:
  python -m artgan search genre --set budget.max_trials=3 --set budget.epochs=1 \\
      --set output=runs/genre-quick      (then: report runs/genre-quick)
  python -m artgan search experiments/style.yaml --set space.input_size=64 --fresh
  python -m artgan search genre --workers 2          (a chief and 2 worker processes)
  python -m artgan worker genre --chief HOST:PORT --id gpu-box-1   (join from elsewhere)
  python -m artgan predict runs/genre/best/model_1.keras painting.jpg --top 3
  python -m artgan evaluate runs/genre/best/model_1.keras \\
      --labels ../shared/data/louvre-genre4/genre_val.csv --images ../shared/data/louvre-genre4/images
  python -m artgan similar index --extractor handcrafted   (then: similar query 19 --k 10)
  python -m artgan similar evaluate --k 10
  python -m artgan report genre --top 3        (writes reports/genre/report.html)
  python -m artgan explain runs/genre/best/model_1.keras painting.jpg --out heat/
  python -m artgan compare runs/genre runs/genre-random   (reports/compare-genre-genre-random/)
  python -m artgan data wikiart --to /data/wikiart   (or: data nga --limit 100)
  python -m artgan rehearse --to /tmp/rehearsal --fraction 0.1   (stand-in WikiArt tree)
  python -m artgan features runs/genre/best/model_1.keras --layer features_lstm \\
      --labels ../shared/data/louvre-genre4/genre_val.csv --images ../shared/data/louvre-genre4/images --out val.npz

environment:
  ARTGAN_DATA     root of the real data (default: ../shared/data beside the checkout;
                  required when artgan is installed)
  ARTGAN_CACHE    decoded-image cache (default: .cache/images in the checkout, else
                  ~/.cache/artgan)
  WIKIART_IMAGES  the unpacked WikiArt images, for the *-full and artist experiments
  ARTGAN_LABELS   the ArtGAN label-file folder (default: $ARTGAN_DATA/artgan)
  TF_ENABLE_ONEDNN_OPTS  TensorFlow's oneDNN CPU kernels (default here: 1, also on CPUs
                  where TensorFlow leaves them off, e.g. AVX2 without AVX-512: training
                  runs 2.5x faster there; 0 turns them off)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m artgan",
        description="KerasTuner experiments for classifying paintings by style, genre and "
        "artist with convolutional-recurrent networks (ArtGAN / WikiArt).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"artgan {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (
        add_search,
        add_worker,
        add_predict,
        add_evaluate,
        add_explain,
        add_similar,
        add_report,
        add_compare,
        add_features,
        add_data,
        add_rehearse,
    ):
        add(commands)
    return parser


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a message comes, not to the one there when
    the handler was made (a redirected or captured stdout may be closed since)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def show_logs(stream: TextIO | None = None) -> None:
    """Show artgan's INFO messages as plain lines on `stream` (default: the current stdout)."""
    logger = logging.getLogger("artgan")
    for handler in [h for h in logger.handlers if getattr(h, "artgan_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream else _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.artgan_cli = True  # type: ignore[union-attr]  # ours, replaced on the next call
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_logs()
    if checkout_cache():  # an installed artgan keeps the user's cache folder
        os.environ.setdefault("ARTGAN_CACHE", str(checkout_cache()))
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # read once, when TensorFlow loads
    try:
        args.run(args)
    except ArtganError as error:
        print(f"artgan: error: {error.render(FLAGS)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artgan: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
