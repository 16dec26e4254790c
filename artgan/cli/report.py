"""`report` and `compare`: the HTML report of a run folder, the comparison of several."""

import argparse

from artgan.cli.heavy import load_tensorflow
from artgan.report.run import open_run


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write an HTML report of a search: leaderboard, confusion, feature similarity",
        description="Re-evaluate a search's best models on its validation split and write one "
        "self-contained HTML report (plus figures as PNG/SVG and numbers as CSV/JSON).",
    )
    parser.add_argument(
        "target", help="run folder (runs/<task>), experiment YAML, or task name (style, genre)"
    )
    parser.add_argument(
        "--top", type=at_least_one, default=3, help="best models to analyse (default 3)"
    )
    parser.add_argument(
        "--layer",
        help="layer for the feature-similarity section "
        "(default: features_lstm, the LSTM's output)",
    )
    parser.add_argument("--out", help="output folder (default: reports/<run folder name>)")
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> None:
    run = open_run(args.target)  # a wrong name or an unfinished run answers before TensorFlow
    load_tensorflow()
    from artgan.report.build import build_report

    report = build_report(run, top=args.top, layer=args.layer, out=args.out)
    print(f"report: {report.html}  ({report.seconds:.1f} s)")
    for note in report.notes:
        print(f"  missing: {note}")


def add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare searches on one HTML page: best so far, spread, per-class F1, spec diff",
        description="Write one self-contained HTML page comparing run folders of the same task "
        "and classes: best-so-far curves, best scores with their spread, per-class F1 of each "
        "run's best model on their shared validation split, and what differs between specs.",
    )
    parser.add_argument("runs", nargs="+", help="run folders (or experiment YAMLs, task names)")
    parser.add_argument("--out", help="output folder (default: reports/compare-<run>-<run>...)")
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs whose tasks or class sets differ",
    )
    parser.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> None:
    runs = [open_run(target) for target in args.runs]
    load_tensorflow()
    from artgan.report.compare import compare_runs

    html = compare_runs(runs, out=args.out, allow_mismatch=args.allow_mismatch)
    print(f"comparison: {html}")
