"""`search` (one process, or a launcher with local workers) and `worker` (join a chief)."""

import sys
from pathlib import Path

from artgan.cli.heavy import load_tensorflow
from artgan.config.spec import experiment_file, load_experiment
from artgan.errors import ArtganError
from artgan.model.saved import read_metadata
from artgan.runfolder import RunFolder
from artgan.tuning.budget import search_state, time_split
from artgan.tuning.check import check_search


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
    parser.add_argument(
        "--fresh", action="store_true", help="discard earlier trials and start over"
    )
    scale = parser.add_argument_group("scaling out (KerasTuner chief/worker; docs/distributed.md)")
    scale.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run a chief and N worker processes here (0: only the chief, for workers that "
        "join from other machines with `python -m artgan worker`)",
    )
    scale.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the chief binds (default 127.0.0.1; 0.0.0.0 for other machines)",
    )
    scale.add_argument("--port", type=int, default=0, help="chief port (default: a free one)")
    scale.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts per worker killed by a signal (default 3)",
    )
    scale.add_argument(
        "--gpus",
        metavar="LIST",
        help="GPU ids dealt out to the workers, e.g. 0,1,2,3 (one or more each)",
    )
    add_access(scale)
    parser.set_defaults(run=run_search)


def add_access(parser):
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the chief's token (default: $ARTGAN_ORACLE_TOKEN, "
        "$ARTGAN_ORACLE_TOKEN_FILE, else <output>/oracle.token)",
    )
    parser.add_argument(
        "--trial-timeout",
        type=float,
        default=1800,
        metavar="SECONDS",
        help="the chief fails a trial whose worker sends no update for this long "
        "(default 1800; longer than your slowest epoch)",
    )


def run_search(args):
    spec = load_experiment(experiment_file(args.experiment), args.overrides)
    check_search(spec)  # again in the search itself; here before TensorFlow loads
    if args.workers is None and (args.gpus or args.port or args.host != "127.0.0.1"):
        raise ArtganError("--host, --port and --gpus go with --workers N")
    load_tensorflow()
    from artgan.tuning.results import check_produced, leaderboard
    from artgan.tuning.tuner import run_search as search

    if args.workers is None:
        table = search(spec, fresh=args.fresh)
    else:
        from artgan.tuning.parallel.launcher import launch

        command = worker_command(experiment_file(args.experiment), args.overrides, spec.output_dir)
        table = launch(
            spec,
            command,
            args.workers,
            fresh=args.fresh,
            host=args.host,
            port=args.port,
            max_restarts=args.max_restarts,
            gpus=args.gpus,
            token_file=args.token_file,
            trial_timeout=args.trial_timeout,
        )
    print("\nleaderboard (" + spec.tuner.objective + ")")
    print(leaderboard(table))
    folder = RunFolder(spec.output_dir)
    state = search_state(spec.output_dir)
    stopped = state.get("stopped")
    if stopped:
        print(f"\nstopped: {stopped}")
    if state.get("seconds"):
        print(f"time: {time_split(state['seconds'])}")
    if folder.ensemble.is_file():
        ensemble = read_metadata(folder.ensemble)
        accuracy = ensemble.get("val_accuracy")
        score = "" if accuracy is None else f": val accuracy {accuracy:.4f}"
        print(f"ensemble of trials {', '.join(ensemble['members'])} ({folder.ensemble}){score}")
    print(f"\ntrials table: {folder.trials_csv}")
    print(f"TensorBoard:  make tensorboard  (logs in {folder.tensorboard})")
    check_produced(table, spec.output_dir)


def worker_command(experiment, overrides, output):
    """The command line of one process of a launched search: `python -m artgan worker ...`
    with the experiment and overrides as given (see `artgan.tuning.parallel.launcher`)."""
    experiment = str(Path(experiment).resolve()) if Path(experiment).exists() else str(experiment)
    sets = [arg for item in overrides for arg in ("--set", item)]

    def command(tuner_id, address, trial_timeout=None, token_file=None):
        return [
            sys.executable,
            "-m",
            "artgan",
            "worker",
            experiment,
            *sets,
            "--set",
            f"output={output}",
            "--chief",
            address,
            "--id",
            tuner_id,
            *(["--trial-timeout", f"{trial_timeout:g}"] if trial_timeout else []),
            *(["--token-file", token_file] if token_file else []),
        ]

    return command


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
    parser.add_argument(
        "experiment", help="experiment YAML, or a task name (style, genre, artist)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="spec overrides, as given to the chief",
    )
    parser.add_argument("--chief", metavar="HOST:PORT", help="the chief's address")
    parser.add_argument(
        "--id",
        dest="tuner_id",
        help="unique worker id (default: $KERASTUNER_TUNER_ID, else <host>-<pid>); "
        "'chief' serves the oracle instead",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=600,
        help="seconds to wait for the chief to answer (default 600)",
    )
    add_access(parser)
    parser.set_defaults(run=run_worker)


def run_worker(args):
    spec = load_experiment(experiment_file(args.experiment), args.overrides)
    check_search(spec)  # again in `run_process`; here before TensorFlow loads
    load_tensorflow()
    from artgan.tuning.parallel.roles import run_process

    table = run_process(
        spec, args.chief, args.tuner_id, args.wait, args.token_file, args.trial_timeout
    )
    if table is not None:  # a chief started by hand writes the results itself
        from artgan.tuning.results import check_produced, leaderboard

        print(leaderboard(table))
        check_produced(table, spec.output_dir)
