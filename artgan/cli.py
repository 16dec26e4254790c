"""`python -m artgan ...`: a thin command line over the package's modules.

User mistakes (`ArtganError`) print one clear message and exit with status 2; TensorFlow is
imported only by the commands that need it, so `--help` stays instant.
"""

import argparse
import os
import sys

from artgan import __version__
from artgan.errors import ArtganError

EPILOG = """\
examples:
  python -m artgan search genre --set budget.max_trials=3 --set budget.epochs=1
  python -m artgan search experiments/style.yaml --set space.input_size=64 --fresh
  python -m artgan predict runs/genre/best/model_1.keras painting.jpg --top 3
  python -m artgan evaluate runs/genre/best/model_1.keras \\
      --labels ../shared/data/louvre-genre4/genre_val.csv --images ../shared/data/louvre-genre4/images

environment:
  ARTGAN_DATA     root of the real data (default: ../shared/data beside the checkout)
  ARTGAN_CACHE    decoded-image cache (default: .cache/images in the checkout)
  WIKIART_IMAGES  the unpacked WikiArt images, for the *-full and artist experiments
  ARTGAN_LABELS   the ArtGAN label-file folder (default: $ARTGAN_DATA/artgan)
"""


def quiet_tensorflow():
    """Keep TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) off the screen."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def add_search(commands):
    parser = commands.add_parser(
        "search",
        help="run or resume a KerasTuner search described by an experiment spec",
        description="Run a KerasTuner search over CRNNs. Rerunning the same command resumes "
        "an interrupted search (finished trials are kept); --fresh starts over.",
    )
    parser.add_argument(
        "experiment", help="experiment YAML, or a task name (style, genre, artist)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value (budget.max_trials=3, budget.epochs=1, "
        "budget.max_train_images=200); space.NAME=VALUE pins a search-space parameter",
    )
    parser.add_argument("--fresh", action="store_true", help="discard earlier trials and start over")
    parser.set_defaults(run=run_search)


def run_search(args):
    from artgan.spec import experiment_file, load_experiment

    spec = load_experiment(experiment_file(args.experiment), args.overrides)
    from artgan.search import leaderboard, run_search as search

    table = search(spec, fresh=args.fresh)
    print("\nleaderboard (" + spec.tuner.objective + ")")
    print(leaderboard(table))
    print(f"\ntrials table: {spec.output_dir / 'trials.csv'}")
    print(f"TensorBoard:  make tensorboard  (logs in {spec.output_dir / 'tensorboard'})")


def add_predict(commands):
    parser = commands.add_parser(
        "predict",
        help="top-k classes for image files with a saved model",
        description="Print the top-k classes and probabilities for each image, using the "
        "class names and preprocessing stored in the model.",
    )
    parser.add_argument("model", help="a .keras file saved by artgan (runs/<task>/best/...)")
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.set_defaults(run=run_predict)


def run_predict(args):
    from artgan.saved import read_metadata

    read_metadata(args.model)  # a wrong path fails fast, before TensorFlow loads
    from artgan.evaluate import predict_files

    for path, ranked in predict_files(args.model, args.images, args.top):
        print(path)
        if isinstance(ranked, str):
            print(f"  could not read: {ranked}")
            continue
        for name, probability in ranked:
            print(f"  {probability:7.2%}  {name}")


def add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate",
        help="score a saved model on an ArtGAN-format label file",
        description="Run a saved model on every image of a label file; print accuracy, "
        "top-5 accuracy, macro-F1 and counts, and save per-image predictions as CSV.",
    )
    parser.add_argument("model", help="a .keras file saved by artgan")
    parser.add_argument("--labels", required=True, help="label file (ArtGAN CSV / artist file)")
    parser.add_argument("--images", required=True, help="folder the label paths are relative to")
    parser.add_argument("--classes", help="class file (default: the class names stored in the model)")
    parser.add_argument("--out", help="predictions CSV (default: <model>.predictions.csv)")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable rows/images and report them"
    )
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from artgan.saved import read_metadata

    read_metadata(args.model)
    from artgan.evaluate import evaluate_model

    result = evaluate_model(
        args.model, args.labels, args.images, classes=args.classes, out=args.out,
        on_error="skip" if args.skip_bad else "raise",
    )
    print(result.summary())


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m artgan",
        description="KerasTuner experiments for classifying paintings by style, genre and "
        "artist with convolutional-recurrent networks (ArtGAN / WikiArt).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"artgan {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (add_search, add_predict, add_evaluate):
        add(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    try:
        args.run(args)
    except ArtganError as error:
        print(f"artgan: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artgan: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
