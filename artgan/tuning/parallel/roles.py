"""Scale a search out: KerasTuner's chief/worker engine over processes and machines, and
`tf.distribute` for several GPUs inside one trial.

KerasTuner already distributes a search: one *chief* process holds the oracle and serves
trials over gRPC; any number of *workers* ask it for a trial, train it and report back.
Each process is configured by three environment variables:

    KERASTUNER_TUNER_ID      chief, or a unique worker id (worker1, gpu-box-3, ...)
    KERASTUNER_ORACLE_IP     where the chief listens / workers connect
    KERASTUNER_ORACLE_PORT

This module only wires artgan to that engine; it schedules nothing itself.

* `python -m artgan worker EXP --chief HOST:PORT [--id NAME]` runs one process of either
  role (`--id chief` serves; the env-var form above works too).
* `python -m artgan search EXP --workers N` is a launcher: it starts a chief on a free
  loopback port and N local workers, streams their output (also kept in <output>/logs/),
  restarts a worker killed by a signal under the *same* tuner id (the oracle hands that id
  its unfinished trial again, so the trial resumes after its last finished epoch), and when the
  search is over reloads the project from disk in this process and writes the trials table
  and best models exactly as a single-process search does.

Every process must see the same data path, output folder and (ideally) image cache: trials
are written straight into <output>/tuner/ and <output>/tensorboard/ by the worker that
runs them, and the oracle's state by the chief.
"""

import ctypes
import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import contextmanager, nullcontext

import grpc
import keras
import pandas as pd

from artgan.config.spec import ExperimentSpec, differences
from artgan.data.splits import TaskData
from artgan.errors import ArtganError, DiskFull
from artgan.files import read_json
from artgan.runfolder import RunFolder
from artgan.tuning._kt_compat import (
    KERASTUNER_ENV,
    ORACLE_IP,
    ORACLE_PORT,
    TUNER_ID,
    authenticate_client,
    mark_failed,
    serve_oracle,
)
from artgan.tuning.budget import past_deadline, record_stop, start_clock, stop_reason
from artgan.tuning.check import check_search
from artgan.tuning.hypermodel import CRNNHyperModel
from artgan.tuning.output import run_folder
from artgan.tuning.parallel.access import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TOKEN_HEADER,
    check_chief_access,
    chief_token,
    given_token,
    server_interceptor,
    worker_token,
)
from artgan.tuning.results import report_skipped, save_best_models, write_trials_table
from artgan.tuning.tuner import SearchStopped, callbacks, make_tuner

log = logging.getLogger(__name__)

LAUNCHER = "ARTGAN_LAUNCHER_PID"  # set in the processes a launcher starts
CHIEF = "chief"
#: Exit status of a launched worker that stopped the search (a full disk; EX_TEMPFAIL): the
#: launcher stops the others and counts no trial.
STOPPED = 75
LOOPBACK = "127.0.0.1"


def parse_address(text, option="`chief`"):
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ArtganError(f"{option} {text!r}: expected HOST:PORT, e.g. 10.0.0.5:8000")
    return host, int(port)


def check_tuner_id(tuner_id):
    """KerasTuner treats any id *containing* 'chief' as the oracle; ids also name files."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", tuner_id or ""):
        raise ArtganError(f"`tuner_id` {tuner_id!r}: use letters, digits, '.', '_' or '-' only")
    if tuner_id != CHIEF and CHIEF in tuner_id.lower():
        raise ArtganError(
            f"`tuner_id` {tuner_id!r}: KerasTuner treats every id containing 'chief' as the chief; "
            "pick another worker id"
        )
    return tuner_id


def free_port(host=LOOPBACK):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return probe.getsockname()[1]
    except OSError as error:
        raise ArtganError(f"`host` {host}: cannot listen there ({error})") from None


def connect_host(host):
    """Where local processes reach a chief that binds `host` (0.0.0.0 means any address)."""
    return LOOPBACK if host in ("0.0.0.0", "", "::") else host


def wait_for_chief(host, port, timeout):
    """Block until something listens at host:port (KerasTuner's own client waits an hour
    without a word when the address is wrong)."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ArtganError(
                    f"no chief answered at {host}:{port} within {timeout:.0f} s. Start it first "
                    "(a search with `workers` 0, `host` 0.0.0.0 and a `port`) and "
                    "check the address and firewall."
                ) from None
            if not said:
                log.info(f"waiting for the chief at {host}:{port} ...")
                said = True
            time.sleep(1)


def die_with_launcher():
    """In a launched process: exit when the launcher dies (even by kill -9), so no orphan
    keeps training into a search nobody supervises. Linux only; elsewhere a no-op."""
    launcher = os.environ.get(LAUNCHER)
    if not launcher or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # it died before prctl took effect
        sys.exit(1)


@contextmanager
def no_kerastuner_env():
    """Run KerasTuner as a plain single process (for reading results back)."""
    saved = {name: os.environ.pop(name) for name in KERASTUNER_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def finished_count(output):
    return sum(
        read_json(path).get("status") == "COMPLETED" for path in RunFolder(output).trial_files()
    )


def check_same_search(spec):
    """A worker must train what the chief's search defined: the same `spec.comparable()`
    (data and label contents, space, tuner, seed, epochs, image subsets, early stopping,
    training), the definition a resumed search is held to as well."""
    output = spec.output_dir
    saved_file = RunFolder(output).comparable
    if not saved_file.is_file():
        raise ArtganError(
            f"{output} holds no search yet. Start the chief first and give every worker "
            "the same `output` folder on a shared filesystem."
        )
    saved = read_json(saved_file)
    if not saved:
        raise ArtganError(f"{saved_file}: cannot be read")
    differ = differences(spec.comparable(), saved)
    if differ:
        raise ArtganError(
            f"this worker's spec differs from the chief's search in {output} "
            f"({'; '.join(differ)}). Use the same experiment file and `overrides` as the chief."
        )


def default_worker_id():
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "host"
    return check_tuner_id(f"{host}-{os.getpid()}".replace("chief", "chf"))


DEFAULT_TRIAL_TIMEOUT = 30 * 60.0  # seconds a RUNNING trial may go without any update
HEARTBEAT = 60.0  # seconds between a worker's "still on it" calls while it holds a trial

# ----------------------------------------------------------------------------- one process


def run_process(
    spec: ExperimentSpec,
    chief: str | None = None,
    tuner_id: str | None = None,
    wait: float = 600.0,
    token_file: str | None = None,
    trial_timeout: float = DEFAULT_TRIAL_TIMEOUT,
) -> pd.DataFrame | None:
    """One process of a distributed search: serve as the chief (`tuner_id` "chief") or run
    trials as a worker.

    The address and id come from the arguments, else from KerasTuner's own variables; the
    token from `token_file`, else $ARTGAN_ORACLE_TOKEN, else $ARTGAN_ORACLE_TOKEN_FILE, else
    <output>/oracle.token (which a chief started without a token writes).
    """
    check_search(spec)  # before a chief writes anything or a worker takes a trial
    die_with_launcher()
    if chief:
        host, port = parse_address(chief)
    elif os.environ.get(ORACLE_IP) and os.environ.get(ORACLE_PORT):
        host, port = parse_address(
            f"{os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]}", f"{ORACLE_IP}/{ORACLE_PORT}"
        )
    else:
        raise ArtganError(
            f"where is the chief? Give `chief` HOST:PORT, or set {ORACLE_IP} and {ORACLE_PORT}"
        )
    tuner_id = check_tuner_id(tuner_id or os.environ.get(TUNER_ID) or default_worker_id())
    os.environ.update({TUNER_ID: tuner_id, ORACLE_IP: host, ORACLE_PORT: str(port)})
    if tuner_id == CHIEF:
        return serve(spec, host, port, token_file, trial_timeout)
    try:
        work(spec, host, port, tuner_id, wait, token_file)
    except DiskFull as error:
        if LAUNCHER not in os.environ:
            raise
        log.error(f"{tuner_id}: {error}")
        _exit(STOPPED)
    if LAUNCHER in os.environ:
        _exit(0)
    return None


def _exit(status):
    """Exit a launched process now: everything is on disk; skip TensorFlow's teardown
    (seconds on a busy machine), which the launcher would otherwise wait for."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _tuner(spec, distribute):
    keras.utils.set_random_seed(spec.seed)
    data = TaskData.from_spec(spec)
    hypermodel = CRNNHyperModel.from_spec(spec, data)
    return make_tuner(spec, hypermodel, distribute=distribute), data


def check_trial_timeout(seconds):
    """A trial time-out must leave room for a couple of missed heartbeats."""
    if seconds is not None and seconds < 2 * HEARTBEAT:
        raise ArtganError(
            f"trial time-out {seconds:g} s is too short: workers report every {HEARTBEAT:g} s "
            f"while they train, so give at least {2 * HEARTBEAT:g} s"
        )
    return seconds


def serve(spec, host, port, token_file=None, trial_timeout=DEFAULT_TRIAL_TIMEOUT):
    """The chief: hold the oracle and serve trials until KerasTuner decides the search is
    over. Started by hand (not by a launcher) it also writes the table and best models."""
    check_trial_timeout(trial_timeout)
    launched = LAUNCHER in os.environ  # then the launcher holds the run folder's lock
    if launched:
        token, note = given_token(token_file), None
    else:
        token, note = chief_token(spec.output_dir, token_file)
    check_chief_access(host, token)
    with nullcontext(spec.output_dir) if launched else run_folder(spec, fresh=False) as output:
        if not launched:  # a launcher started the clock itself
            start_clock(spec)
        tuner, _ = _tuner(spec, distribute=False)
        finished = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        if note:
            log.info(f"chief: {note}")
        log.info(
            f"chief: serving trials on {host}:{port} for {RunFolder(output).project} "
            f"({finished} finished trial(s) kept; "
            f"{'token required' if token else 'NO token: loopback only'}; "
            f"a trial silent for {trial_timeout:g} s is failed)"
        )
        tuner.save()  # what tuner.search() does before KerasTuner's own server
        interceptors = [server_interceptor(token)] if token else []
        # Until it is over. The time budget is kept here, on the chief's clock: a worker's
        # clock may differ from the one that started it.
        serve_oracle(
            tuner.oracle,
            host,
            port,
            interceptors,
            trial_timeout,
            spent=lambda: past_deadline(output),
        )
        log.info("chief: every trial handed out has come back; stopping")
        if not launched:
            return finalize(spec)
    return None


def work(spec, host, port, tuner_id, wait, token_file=None):
    """A worker: ask the chief for trials and train them until it says stop."""
    wait_for_chief(host, port, wait)  # a listening chief has written the spec we check
    check_same_search(spec)
    token = worker_token(spec.output_dir, token_file)
    tuner, data = _tuner(spec, distribute=True)
    heartbeat = authenticate_client(tuner, host, port, (TOKEN_HEADER, token), HEARTBEAT)
    try:
        tuner.oracle.get_space()  # a first call, so a refused token is said before "joined"
        log.info(
            f"{tuner_id}: joined the chief at {host}:{port}; {len(data.train)} train / "
            f"{len(data.val)} val images -> {spec.output_dir}"
        )
        tuner.search(epochs=spec.budget.epochs, callbacks=callbacks(spec))
    except SearchStopped as stop:  # its trial stays RUNNING: the chief hands it out again
        raise stop.one_line() from None
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        raise ArtganError(
            f"the chief at {host}:{port} refused this worker's token: give the chief's token "
            f"(`token_file`, {TOKEN_ENV} or {TOKEN_FILE_ENV})"
        ) from None
    finally:
        heartbeat.set()
    log.info(f"{tuner_id}: the chief hands out no more trials (trial or time budget spent); done")


def finalize(spec, failed=None):
    """Reload the search from disk in this process (no chief, no KerasTuner variables) and
    write what a single-process search writes: trials table, skipped rows, best models.

    `failed` ({trial id: reason}) marks trials whose worker is gone for good as FAILED, so
    the table accounts for them and a resumed search does not hand them out again.
    """
    with no_kerastuner_env():
        tuner, data = _tuner(spec, distribute=False)
        if failed:
            mark_failed(tuner, failed)
        save_best_models(tuner, spec, data, spec.output_dir)  # first: it times them
        table = write_trials_table(tuner, spec.output_dir)
        record_stop(
            spec.output_dir,
            stop_reason(spec.output_dir, len(tuner.oracle.trials), spec.budget.max_trials),
        )
        report_skipped(data, spec.output_dir)
    return table
