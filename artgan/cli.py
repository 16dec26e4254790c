"""`python -m artgan ...`: a thin command line over the package's modules.

User mistakes (`ArtganError`) print one clear message and exit with status 2; TensorFlow is
imported only by the commands that need it, so `--help` stays instant.
"""

import argparse
import os
import sys

from artgan import __version__
from artgan.errors import ArtganError
from artgan.data_cli import add_data
from artgan.similar_cli import add_similar

EPILOG = """\
examples:
  python -m artgan search genre --set budget.max_trials=3 --set budget.epochs=1
  python -m artgan search experiments/style.yaml --set space.input_size=64 --fresh
  python -m artgan search genre --workers 2          (a chief and 2 worker processes)
  python -m artgan worker genre --chief HOST:PORT --id gpu-box-1   (join from elsewhere)
  python -m artgan predict runs/genre/best/model_1.keras painting.jpg --top 3
  python -m artgan evaluate runs/genre/best/model_1.keras \\
      --labels ../shared/data/louvre-genre4/genre_val.csv --images ../shared/data/louvre-genre4/images
  python -m artgan similar index --extractor handcrafted   (then: similar query 19 --k 10)
  python -m artgan similar evaluate --k 10
  python -m artgan report genre --top 3        (writes reports/genre/report.html)
  python -m artgan data wikiart --to /data/wikiart   (or: data nga --limit 100)
  python -m artgan features runs/genre/best/model_1.keras --layer features_lstm \\
      --labels ../shared/data/louvre-genre4/genre_val.csv --images ../shared/data/louvre-genre4/images --out val.npz

environment:
  ARTGAN_DATA     root of the real data (default: ../shared/data beside the checkout)
  ARTGAN_CACHE    decoded-image cache (default: .cache/images in the checkout)
  WIKIART_IMAGES  the unpacked WikiArt images, for the *-full and artist experiments
  ARTGAN_LABELS   the ArtGAN label-file folder (default: $ARTGAN_DATA/artgan)
"""


def quiet_tensorflow():
    """Load TensorFlow without its C++ start-up chatter (GPUs stay visible).

    TF 2.21 writes its oneDNN notice and CUDA probing lines straight to file descriptor 2,
    ignoring TF_CPP_MIN_LOG_LEVEL, so stderr is pointed at /dev/null while TensorFlow loads
    and lists its devices. Python errors still show: they are printed after it is restored.
    Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
    scale = parser.add_argument_group(
        "scaling out (KerasTuner chief/worker; README 'Scaling out')")
    scale.add_argument(
        "--workers", type=int, metavar="N",
        help="run a chief and N worker processes here (0: only the chief, for workers that "
        "join from other machines with `python -m artgan worker`)",
    )
    scale.add_argument("--host", default="127.0.0.1",
                       help="address the chief binds (default 127.0.0.1; 0.0.0.0 for other machines)")
    scale.add_argument("--port", type=int, default=0, help="chief port (default: a free one)")
    scale.add_argument("--max-restarts", type=int, default=3,
                       help="restarts per worker killed by a signal (default 3)")
    scale.add_argument("--gpus", metavar="LIST",
                       help="GPU ids dealt out to the workers, e.g. 0,1,2,3 (one or more each)")
    add_access(scale)
    parser.set_defaults(run=run_search)


def add_access(parser):
    parser.add_argument("--token-file", metavar="PATH",
                        help="file holding the chief's token (default: $ARTGAN_ORACLE_TOKEN, "
                        "$ARTGAN_ORACLE_TOKEN_FILE, else <output>/oracle.token)")
    parser.add_argument("--trial-timeout", type=float, default=1800, metavar="SECONDS",
                        help="the chief fails a trial whose worker sends no update for this long "
                        "(default 1800; longer than your slowest epoch)")


def run_search(args):
    from artgan.spec import experiment_file, load_experiment

    spec = load_experiment(experiment_file(args.experiment), args.overrides)
    if args.workers is None and (args.gpus or args.port or args.host != "127.0.0.1"):
        raise ArtganError("--host, --port and --gpus go with --workers N")
    from artgan.search import check_produced, leaderboard, run_search as search

    if args.workers is None:
        table = search(spec, fresh=args.fresh)
    else:
        from artgan.distributed import launch

        table = launch(spec, experiment_file(args.experiment), args.overrides, args.workers,
                       fresh=args.fresh, host=args.host, port=args.port,
                       max_restarts=args.max_restarts, gpus=args.gpus,
                       token_file=args.token_file, trial_timeout=args.trial_timeout)
    print("\nleaderboard (" + spec.tuner.objective + ")")
    print(leaderboard(table))
    print(f"\ntrials table: {spec.output_dir / 'trials.csv'}")
    print(f"TensorBoard:  make tensorboard  (logs in {spec.output_dir / 'tensorboard'})")
    check_produced(table, spec.output_dir)


def add_worker(commands):
    parser = commands.add_parser(
        "worker",
        help="join a distributed search as a worker (or serve it: --id chief)",
        description="Ask a KerasTuner chief for trials and train them until it has none left. "
        "Give the chief's address with --chief HOST:PORT, or set KERASTUNER_ORACLE_IP, "
        "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID. Use the same experiment and --set "
        "options as the chief, and the same data path and output folder (shared filesystem). "
        "Rerunning with the same --id after a crash gets that worker's unfinished trial back.",
    )
    parser.add_argument("experiment", help="experiment YAML, or a task name (style, genre, artist)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="spec overrides, as given to the chief")
    parser.add_argument("--chief", metavar="HOST:PORT", help="the chief's address")
    parser.add_argument("--id", dest="tuner_id",
                        help="unique worker id (default: $KERASTUNER_TUNER_ID, else <host>-<pid>); "
                        "'chief' serves the oracle instead")
    parser.add_argument("--wait", type=float, default=600,
                        help="seconds to wait for the chief to answer (default 600)")
    add_access(parser)
    parser.set_defaults(run=run_worker)


def run_worker(args):
    from artgan.spec import experiment_file, load_experiment

    spec = load_experiment(experiment_file(args.experiment), args.overrides)
    from artgan.distributed import run_process

    table = run_process(spec, args.chief, args.tuner_id, args.wait, args.token_file,
                        args.trial_timeout)
    if table is not None:  # a chief started by hand writes the results itself
        from artgan.search import check_produced, leaderboard

        print(leaderboard(table))
        check_produced(table, spec.output_dir)


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

    unreadable = 0
    for path, ranked in predict_files(args.model, args.images, args.top):
        print(path)
        if isinstance(ranked, str):
            print(f"  could not read: {ranked}")
            unreadable += 1
            continue
        for name, probability in ranked:
            print(f"  {probability:7.2%}  {name}")
    if unreadable == len(args.images):
        raise ArtganError(f"none of the {unreadable} image(s) could be read (reasons above)")


def add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate",
        help="score a saved model on an ArtGAN-format label file",
        description="Run a saved model on every image of a label file; print accuracy, "
        "top-5 accuracy, macro-F1 and counts, and save per-image predictions as CSV.",
    )
    add_labelled_images(parser)
    parser.add_argument("--out", help="predictions CSV (default: <model>.predictions.csv)")
    parser.set_defaults(run=run_evaluate)


def add_labelled_images(parser):
    """The arguments naming a saved model and the labelled images to run it on."""
    parser.add_argument("model", help="a .keras file saved by artgan")
    parser.add_argument("--labels", required=True, help="label file (ArtGAN CSV / artist file)")
    parser.add_argument("--images", required=True, help="folder the label paths are relative to")
    parser.add_argument("--classes", help="class file (default: the class names stored in the model)")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable rows/images and report them"
    )


def run_evaluate(args):
    from artgan.saved import read_metadata

    read_metadata(args.model)
    from artgan.evaluate import evaluate_model

    result = evaluate_model(
        args.model, args.labels, args.images, classes=args.classes, out=args.out,
        on_error="skip" if args.skip_bad else "raise", write=False,
    )
    print(result.summary(), flush=True)  # the scores, even if the predictions cannot be written
    print(f"predictions      {result.write_predictions()}")


def add_report(commands):
    parser = commands.add_parser(
        "report",
        help="write an HTML report of a search: leaderboard, confusion, feature similarity",
        description="Re-evaluate a search's best models on its validation split and write one "
        "self-contained HTML report (plus figures as PNG/SVG and numbers as CSV/JSON).",
    )
    parser.add_argument(
        "target", help="run folder (runs/<task>), experiment YAML, or task name (style, genre)"
    )
    parser.add_argument("--top", type=int, default=3, help="best models to analyse (default 3)")
    parser.add_argument(
        "--layer", help="layer for the feature-similarity section (default: features_conv)"
    )
    parser.add_argument("--out", help="output folder (default: reports/<run folder name>)")
    parser.set_defaults(run=run_report)


def run_report(args):
    from artgan.report import build_report

    report = build_report(args.target, top=args.top, layer=args.layer, out=args.out)
    print(f"report: {report.html}  ({report.seconds:.1f} s)")
    for note in report.notes:
        print(f"  missing: {note}")


def add_features(commands):
    parser = commands.add_parser(
        "features",
        help="export a saved model's features of a layer for a label file (.npz/.parquet)",
        description="Run a saved model up to a named layer on every image of a label file and "
        "write features, labels, paths, class names and the layer name.",
    )
    add_labelled_images(parser)
    parser.add_argument("--layer", help="layer name (default: features_conv, the last conv block)")
    parser.add_argument("--out", required=True, help="output file: .npz, or .parquet with pyarrow")
    parser.set_defaults(run=run_features)


def run_features(args):
    from artgan.features import export_features

    out, rows, dim = export_features(
        args.model, args.labels, args.images, args.out, layer=args.layer, classes=args.classes,
        on_error="skip" if args.skip_bad else "raise",
    )
    print(f"wrote {rows} x {dim} features to {out}")


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
    for add in (add_search, add_worker, add_predict, add_evaluate, add_similar, add_report,
                add_features, add_data):
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
