"""`report`: the HTML report of a run folder."""




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
    from artgan.report.build import build_report

    report = build_report(args.target, top=args.top, layer=args.layer, out=args.out)
    print(f"report: {report.html}  ({report.seconds:.1f} s)")
    for note in report.notes:
        print(f"  missing: {note}")
