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
  its unfinished trial again, so the trial is retried from its first epoch), and when the
  search is over reloads the project from disk in this process and writes the trials table
  and best models exactly as a single-process search does.

Every process must see the same data path, output folder and (ideally) image cache: trials
are written straight into <output>/tuner/ and <output>/tensorboard/ by the worker that
runs them, and the oracle's state by the chief.
"""

import collections
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from artgan.errors import ArtganError
from artgan.files import read_json, write_text_atomic
from artgan.spec import differences

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
KERASTUNER_ENV = (TUNER_ID, ORACLE_IP, ORACLE_PORT)
LAUNCHER = "ARTGAN_LAUNCHER_PID"  # set in the processes a launcher starts
CHIEF = "chief"
LOOPBACK = "127.0.0.1"
STATE_FILE = "workers.json"
LOG_DIR = "logs"
DEFAULT_MAX_RESTARTS = 3
#: TensorFlow's start-up lines (absl INFO, which TF_CPP_MIN_LOG_LEVEL no longer silences).
TF_CHATTER = re.compile(r"I\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
                        r"To enable the following instructions|This TensorFlow binary is optimized")


# ----------------------------------------------------------------------------- helpers


def distribution_strategy(spec):
    """The tf.distribute strategy for one trial, from the spec's `distribution:` section."""
    if spec.distribution.strategy == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        print(f"MirroredStrategy over {strategy.num_replicas_in_sync} device(s)")
        return strategy
    return None


def adopt_oracle(project):
    """Make this process reload an existing project instead of starting over.

    KerasTuner reloads only if the tuner's *own* state file `<tuner id>.json` exists; without
    it a fresh oracle is built and its first save overwrites `oracle.json`, losing every
    trial. A search started by one process id (tuner0) and continued by another (chief), or
    read back by the launcher, would hit that, so the (empty) tuner state of another id is
    copied over when this id has none.
    """
    project = Path(project)
    own = project / f"{os.environ.get(TUNER_ID, 'tuner0')}.json"
    if own.exists() or not (project / "oracle.json").is_file():
        return
    others = [p for p in sorted(project.glob("*.json")) if p.name != "oracle.json"]
    own.write_text(others[0].read_text() if others else "{}")


def parse_address(text, option="--chief"):
    host, sep, port = str(text).strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ArtganError(f"{option} {text!r}: expected HOST:PORT, e.g. 10.0.0.5:8000")
    return host, int(port)


def check_tuner_id(tuner_id):
    """KerasTuner treats any id *containing* 'chief' as the oracle; ids also name files."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", tuner_id or ""):
        raise ArtganError(f"--id {tuner_id!r}: use letters, digits, '.', '_' or '-' only")
    if tuner_id != CHIEF and CHIEF in tuner_id.lower():
        raise ArtganError(
            f"--id {tuner_id!r}: KerasTuner treats every id containing 'chief' as the chief; "
            "pick another worker id"
        )
    return tuner_id


def free_port(host=LOOPBACK):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return probe.getsockname()[1]
    except OSError as error:
        raise ArtganError(f"--host {host}: cannot listen there ({error})") from None


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
                    "(python -m artgan search EXP --workers 0 --host 0.0.0.0 --port PORT) and "
                    "check the address and firewall."
                ) from None
            if not said:
                print(f"waiting for the chief at {host}:{port} ...", flush=True)
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
    trials = Path(output).glob("tuner/trial_*/trial.json")
    return sum(read_json(path).get("status") == "COMPLETED" for path in trials)


def check_same_search(spec):
    """A worker must train what the chief's search defined: the same `spec.comparable()`
    (data and label contents, space, tuner, seed, epochs, image subsets, early stopping,
    training), the definition a resumed search is held to as well."""
    from artgan.search import COMPARABLE

    output = spec.output_dir
    saved_file = output / COMPARABLE
    if not saved_file.is_file():
        raise ArtganError(
            f"{output} holds no search yet. Start the chief first and give every worker "
            "the same output folder (--set output=...) on a shared filesystem."
        )
    saved = read_json(saved_file)
    if not saved:
        raise ArtganError(f"{saved_file}: cannot be read")
    differ = differences(spec.comparable(), saved)
    if differ:
        raise ArtganError(
            f"this worker's spec differs from the chief's search in {output} "
            f"({'; '.join(differ)}). Use the same experiment file and --set options as the chief."
        )


def default_worker_id():
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "host"
    return check_tuner_id(f"{host}-{os.getpid()}".replace("chief", "chf"))


# ----------------------------------------------------------------------------- oracle access
# Who may talk to the chief: a shared secret (token) in every gRPC call's metadata.

TOKEN_ENV = "ARTGAN_ORACLE_TOKEN"
TOKEN_FILE_ENV = "ARTGAN_ORACLE_TOKEN_FILE"
TOKEN_FILE = "oracle.token"  # in the output folder, written by a chief started without one
TOKEN_HEADER = "artgan-oracle-token"
DEFAULT_TRIAL_TIMEOUT = 30 * 60.0  # seconds a RUNNING trial may go without any update
HEARTBEAT = 60.0  # seconds between a worker's "still on it" calls while it holds a trial


def new_token():
    import secrets

    return secrets.token_urlsafe(32)


def read_token_file(path):
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise ArtganError(f"token file {path}: cannot be read ({error.strerror})") from None
    if not token:
        raise ArtganError(f"token file {path} is empty")
    return token


def given_token(token_file=None):
    """The token given to this process: --token-file, else $ARTGAN_ORACLE_TOKEN, else the file
    named by $ARTGAN_ORACLE_TOKEN_FILE; None if none (an empty variable counts as none)."""
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV, "").strip():
        return read_token_file(os.environ[TOKEN_FILE_ENV].strip())
    return None


def write_token(output, token):
    """<output>/oracle.token, readable by its owner only."""
    path = Path(output) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def chief_token(output, token_file=None):
    """(token, note) for a chief: the one given, else the one a previous chief wrote to
    <output>/oracle.token, else a new one written there (note says so, for the user)."""
    token = given_token(token_file)
    if token:
        return token, None
    path = Path(output) / TOKEN_FILE
    if path.is_file():
        return read_token_file(path), f"using the token in {path}"
    token = new_token()
    write_token(output, token)
    return token, (f"no token given: wrote a new one to {path} (mode 0600); give it to the "
                   f"workers with --token-file or {TOKEN_ENV}")


def worker_token(output, token_file=None):
    token = given_token(token_file)
    if token:
        return token
    path = Path(output) / TOKEN_FILE
    if path.is_file():
        return read_token_file(path)
    raise ArtganError(
        f"no token for the chief: give --token-file PATH, or set {TOKEN_ENV} or {TOKEN_FILE_ENV} "
        f"(a chief started by hand writes its token to <output>/{TOKEN_FILE})"
    )


def is_loopback(host):
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_chief_access(host, token):
    if not token and not is_loopback(host):
        raise ArtganError(
            f"refusing to serve the oracle on {host} without a token: anyone who reaches the "
            f"port could take trials and report made-up scores. Set {TOKEN_ENV}, or give "
            "--token-file PATH, or listen on 127.0.0.1"
        )


# ---------------------------------------------------------------- KerasTuner private parts
# Written for keras-tuner 1.4.8. Everything artgan does with KerasTuner's internals of the
# distributed mode is here and nowhere else in this module:
#   * the chief's gRPC server (keras_tuner/src/distribute/oracle_chief.py: `start_server`,
#     `OracleServicer`, `exit_chief`) is rebuilt by `serve_oracle` with a token interceptor,
#     instead of `tuner.search()` calling `start_server` (which has no hook for one);
#   * the worker's channel (oracle_client.py: `OracleClient.stub`, made from an insecure
#     channel in its __init__) is replaced by `authenticate_client` with one that sends the
#     token and beats a heartbeat (GetTrial) while it holds a trial;
#   * a silent worker's trial is ended by `expire_trials`, which reads the oracle's
#     `ongoing_trials` and drops the dead worker from `tuner_ids` (else the chief waits for
#     it forever, `exit_chief`);
#   * `mark_failed` fails, after the fact, a trial whose local worker is gone for good
#     (the oracle's `_retry_queue` and `end_order`); `ongoing_trials` reads who holds what
#     from the chief's oracle.json.


def _server_interceptor(token, say):
    import hmac

    import grpc

    expected = token.encode()
    refused = {"count": 0}

    def refuse(request, context):
        refused["count"] += 1
        if refused["count"] <= 10 or refused["count"] % 100 == 0:
            say(f"chief: refused an unauthenticated call from {context.peer()} "
                f"({refused['count']} so far)")
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "artgan: missing or wrong oracle token")

    deny = grpc.unary_unary_rpc_method_handler(refuse)

    class Interceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation, handler_call_details):
            sent = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_HEADER, "")
            if isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected):
                return continuation(handler_call_details)
            return deny

    return Interceptor()


def _servicer(oracle, seen):
    """KerasTuner's servicer, refusing reports on trials that are not out (a fabricated or
    timed-out trial), and noting when each trial was last heard of (for `expire_trials`)."""
    import grpc
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    def out(trial_id):
        return any(t.trial_id == trial_id for t in list(oracle.ongoing_trials.values()))

    class Servicer(OracleServicer):
        def CreateTrial(self, request, context):
            response = super().CreateTrial(request, context)
            seen[response.trial.trial_id] = time.monotonic()
            return response

        def GetTrial(self, request, context):  # also a worker's heartbeat
            if out(request.trial_id):
                seen[request.trial_id] = time.monotonic()
            return super().GetTrial(request, context)

        def UpdateTrial(self, request, context):
            if not out(request.trial_id):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"trial {request.trial_id} is not running")
            seen[request.trial_id] = time.monotonic()
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            if not out(request.trial.trial_id):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"trial {request.trial.trial_id} is not running")
            return super().EndTrial(request, context)

    return Servicer(oracle)


def expire_trials(oracle, seen, timeout, now=None, say=print):
    """End (FAILED, with the reason) every trial out longer than `timeout` seconds with no
    update, and forget its worker, so the search can finish without it."""
    from keras_tuner.src.engine import trial as trial_module

    now = time.monotonic() if now is None else now
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        last = seen.setdefault(trial.trial_id, now)
        if now - last < timeout:
            continue
        reason = (f"no update from {tuner_id} for {now - last:.0f} s (trial time-out "
                  f"{timeout:g} s): the worker stopped reporting")
        ended = trial_module.Trial(trial.hyperparameters, trial_id=trial.trial_id,
                                   status=trial_module.TrialStatus.FAILED, message=reason)
        oracle.end_trial(ended)
        oracle.tuner_ids.discard(tuner_id)
        seen.pop(trial.trial_id, None)
        say(f"chief: trial {trial.trial_id} is marked FAILED: {reason}")


def serve_oracle(oracle, host, port, token, trial_timeout=DEFAULT_TRIAL_TIMEOUT, stop=None,
                 say=print, tick=1.0):
    """KerasTuner's `oracle_chief.start_server`, with the token check and trial time-out.
    Returns when KerasTuner's own end is reached (a worker was told to stop, no trial is out,
    every worker that asked was told) or when `stop` (a threading.Event) is set."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    seen = {}
    interceptors = [_server_interceptor(token, say)] if token else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), interceptors=interceptors)
    servicer = _servicer(oracle, seen)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(f"{host}:{port}"):
        raise ArtganError(f"the chief cannot listen on {host}:{port}")
    server.start()
    try:
        while not (stop is not None and stop.is_set()):
            time.sleep(tick)
            if trial_timeout:
                try:
                    expire_trials(oracle, seen, trial_timeout, say=say)
                except RuntimeError as error:  # KerasTuner: too many consecutive failures
                    raise ArtganError(f"the chief stops the search: {error}") from None
            if servicer.stop_triggered and exit_chief(oracle):
                break
    finally:
        server.stop(grace=1)


def authenticate_client(tuner, host, port, token, beat=HEARTBEAT):
    """Point a worker tuner's OracleClient at the chief through a channel that sends the
    token, and, while it holds a trial, asks the chief about that trial every `beat` seconds
    (KerasTuner reports a trial only when it ends; the chief's time-out needs a sign of life).
    Returns an Event that stops the heartbeat."""
    import grpc
    from keras_tuner.src import protos

    class Details(collections.namedtuple("Details", "method timeout metadata credentials "
                                         "wait_for_ready compression"), grpc.ClientCallDetails):
        pass

    held = {"trial": None}
    stop = threading.Event()

    class SendToken(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            metadata = [*(details.metadata or ()), (TOKEN_HEADER, token)]
            outcome = continuation(Details(details.method, details.timeout, metadata,
                                           details.credentials, details.wait_for_ready,
                                           details.compression), request)
            if details.method.endswith("/CreateTrial") and outcome.exception() is None:
                trial = outcome.result().trial
                running = trial.status == protos.get_proto().TrialStatus.RUNNING
                held["trial"] = trial.trial_id if running else None
            elif details.method.endswith("/EndTrial"):
                held["trial"] = None
            return outcome

    channel = grpc.intercept_channel(grpc.insecure_channel(f"{host}:{port}"), SendToken())
    stub = protos.get_service_grpc().OracleStub(channel)
    tuner.oracle.stub = stub

    def heartbeat():
        while not stop.wait(beat):
            trial_id = held["trial"]
            if trial_id is None:
                continue
            try:
                stub.GetTrial(protos.get_service().GetTrialRequest(trial_id=trial_id),
                              timeout=max(beat, 10.0))
            except grpc.RpcError:
                pass  # the next real call reports a chief that is gone

    threading.Thread(target=heartbeat, name="artgan-heartbeat", daemon=True).start()
    return stop


def mark_failed(tuner, failed):
    import keras_tuner as kt

    oracle = tuner.oracle
    for trial_id, reason in failed.items():
        trial = oracle.trials.get(trial_id)
        if trial is None or trial.status != kt.engine.trial.TrialStatus.RUNNING:
            continue
        trial.status = kt.engine.trial.TrialStatus.FAILED
        trial.message = reason
        if trial_id in oracle._retry_queue:  # Oracle.reload() queued the unfinished trial
            oracle._retry_queue.remove(trial_id)
        oracle.end_order.append(trial_id)
        trial.save(os.path.join(tuner.get_trial_dir(trial_id), "trial.json"))
    oracle.save()



def ongoing_trials(output):
    """{tuner id: trial id} of the trials the chief has handed out and not yet got back."""
    return read_json(Path(output) / "tuner" / "oracle.json").get("ongoing_trials", {})

# ----------------------------------------------------------------------------- one process


def run_process(spec, chief=None, tuner_id=None, wait=600.0, token_file=None,
                trial_timeout=DEFAULT_TRIAL_TIMEOUT):
    """`python -m artgan worker`: serve as the chief (`--id chief`) or run trials as a worker.

    The address and id come from the arguments, else from KerasTuner's own variables; the
    token from `token_file`, else $ARTGAN_ORACLE_TOKEN, else $ARTGAN_ORACLE_TOKEN_FILE, else
    <output>/oracle.token (which a chief started without a token writes).
    """
    from artgan.model import PARAMETERS

    spec.space.check(PARAMETERS)  # before a chief writes anything or a worker takes a trial
    die_with_launcher()
    if chief:
        host, port = parse_address(chief)
    elif os.environ.get(ORACLE_IP) and os.environ.get(ORACLE_PORT):
        host, port = parse_address(f"{os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]}",
                                   f"{ORACLE_IP}/{ORACLE_PORT}")
    else:
        raise ArtganError(
            f"where is the chief? Give --chief HOST:PORT, or set {ORACLE_IP} and {ORACLE_PORT}"
        )
    tuner_id = check_tuner_id(tuner_id or os.environ.get(TUNER_ID) or default_worker_id())
    os.environ.update({TUNER_ID: tuner_id, ORACLE_IP: host, ORACLE_PORT: str(port)})
    if tuner_id == CHIEF:
        return serve(spec, host, port, token_file, trial_timeout)
    work(spec, host, port, tuner_id, wait, token_file)
    if LAUNCHER in os.environ:
        # Everything is on disk; skip TensorFlow's teardown (seconds on a busy machine),
        # which the launcher would otherwise wait for before finishing the search.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return None


def _tuner(spec, distribute):
    import keras

    from artgan.search import CRNNHyperModel, TaskData, make_tuner

    keras.utils.set_random_seed(spec.seed)
    data = TaskData.from_spec(spec)
    hypermodel = CRNNHyperModel.from_spec(spec, data)
    return make_tuner(spec, hypermodel, distribute=distribute), data


def check_trial_timeout(seconds):
    """A trial time-out must leave room for a couple of missed heartbeats."""
    if seconds is not None and seconds < 2 * HEARTBEAT:
        raise ArtganError(
            f"trial time-out {seconds:g} s is too short: workers report every {HEARTBEAT:g} s "
            f"while they train, so give at least {2 * HEARTBEAT:g} s")
    return seconds


def serve(spec, host, port, token_file=None, trial_timeout=DEFAULT_TRIAL_TIMEOUT):
    """The chief: hold the oracle and serve trials until KerasTuner decides the search is
    over. Started by hand (not by a launcher) it also writes the table and best models."""
    from artgan.search import PROJECT, run_folder

    check_trial_timeout(trial_timeout)
    launched = LAUNCHER in os.environ  # then the launcher holds the run folder's lock
    if launched:
        token, note = given_token(token_file), None
    else:
        token, note = chief_token(spec.output_dir, token_file)
    check_chief_access(host, token)
    with nullcontext(spec.output_dir) if launched else run_folder(spec, fresh=False) as output:
        tuner, _ = _tuner(spec, distribute=False)
        finished = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        if note:
            print(f"chief: {note}", flush=True)
        print(f"chief: serving trials on {host}:{port} for {output / PROJECT} "
              f"({finished} finished trial(s) kept; "
              f"{'token required' if token else 'NO token: loopback only'}; "
              f"a trial silent for {trial_timeout:g} s is failed)", flush=True)
        tuner.save()  # what tuner.search() does before KerasTuner's own server
        serve_oracle(tuner.oracle, host, port, token, trial_timeout,
                     say=lambda text: print(text, flush=True))  # blocks until the search is over
        print("chief: every trial handed out has come back; stopping", flush=True)
        if not launched:
            return finalize(spec)
    return None


def work(spec, host, port, tuner_id, wait, token_file=None):
    """A worker: ask the chief for trials and train them until it says stop."""
    from artgan.search import callbacks

    wait_for_chief(host, port, wait)  # a listening chief has written the spec we check
    check_same_search(spec)
    token = worker_token(spec.output_dir, token_file)
    tuner, data = _tuner(spec, distribute=True)
    heartbeat = authenticate_client(tuner, host, port, token)
    print(f"{tuner_id}: joined the chief at {host}:{port}; {len(data.train)} train / "
          f"{len(data.val)} val images -> {spec.output_dir}", flush=True)
    import grpc

    try:
        tuner.search(epochs=spec.budget.epochs, callbacks=callbacks(spec))
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        raise ArtganError(
            f"the chief at {host}:{port} refused this worker's token: give the chief's token "
            f"(--token-file PATH, {TOKEN_ENV} or {TOKEN_FILE_ENV})"
        ) from None
    finally:
        heartbeat.set()
    print(f"{tuner_id}: the chief has no trials left; done", flush=True)


def finalize(spec, failed=None):
    """Reload the search from disk in this process (no chief, no KerasTuner variables) and
    write what a single-process search writes: trials table, skipped rows, best models.

    `failed` ({trial id: reason}) marks trials whose worker is gone for good as FAILED, so
    the table accounts for them and a resumed search does not hand them out again.
    """
    from artgan.search import report_skipped, save_best_models, write_trials_table

    with no_kerastuner_env():
        tuner, data = _tuner(spec, distribute=False)
        if failed:
            mark_failed(tuner, failed)
        table = write_trials_table(tuner, spec.output_dir)
        report_skipped(data, spec.output_dir)
        save_best_models(tuner, spec, data, spec.output_dir)
    return table


# ----------------------------------------------------------------------------- launcher


class Child:
    """One supervised process (the chief or a worker) and its output pump."""

    def __init__(self, name, command, env, log_dir, echo):
        self.name, self.command, self.env = name, command, env
        self.log = Path(log_dir) / f"{name}.log"
        self.echo = echo
        self.popen = None
        self.restarts = 0
        self.state = "starting"
        self.pump = None

    def start(self):
        self.popen = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
        )
        self.state = "running"
        self.pump = threading.Thread(target=self._pump, args=(self.popen,), daemon=True)
        self.pump.start()

    def _pump(self, popen):
        with open(self.log, "a") as log:
            for line in popen.stdout:
                log.write(line)
                log.flush()
                if not TF_CHATTER.match(line):  # kept in the log, not repeated per process
                    self.echo(f"[{self.name}] {line.rstrip()}")

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def poll(self):
        return self.popen.poll() if self.popen else None

    def stop(self, grace=10.0):
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines=15):
        if self.pump is not None:
            self.pump.join(timeout=5)  # the last lines of a process that just exited
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def describe_exit(code):
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Launcher:
    """Start a chief and N workers here, supervise them, and write the results at the end."""

    def __init__(self, spec, experiment, overrides=(), workers=2, host=LOOPBACK, port=0,
                 max_restarts=DEFAULT_MAX_RESTARTS, gpus=None, poll=0.5, stream=None,
                 token_file=None, trial_timeout=DEFAULT_TRIAL_TIMEOUT):
        if workers < 0:
            raise ArtganError("--workers must be 0 or more")
        if max_restarts < 0:
            raise ArtganError("--max-restarts must be 0 or more")
        self.spec = spec
        self.experiment = str(Path(experiment).resolve()) if Path(experiment).exists() else str(experiment)
        self.overrides = list(overrides)
        self.count = workers
        self.host = host
        self.port = port or free_port(host if host not in ("", "::") else "0.0.0.0")
        self.max_restarts = max_restarts
        self.gpus = gpu_groups(gpus, workers)
        self.poll_seconds = poll
        self.stream = stream or sys.stdout
        self.output = spec.output_dir
        self.trial_timeout = check_trial_timeout(trial_timeout)
        # The chief and the workers started here get the token in their environment; one
        # given to the launcher (--token-file, the variables) is used, else a new one.
        self.token = given_token(token_file) or new_token()
        self.events = []
        self.failed = {}  # trial id -> reason, for trials whose worker is gone for good
        self._lock = threading.Lock()
        self.chief = None
        self.workers = []

    # -- output
    def say(self, text):
        with self._lock:
            print(text, file=self.stream, flush=True)

    def event(self, text):
        self.events.append(text)
        self.say(f"launcher: {text}")
        self.save_state()

    def save_state(self):

        state = {
            "chief": {"address": f"{self.host}:{self.port}", "pid": self.chief and self.chief.pid,
                      "state": self.chief and self.chief.state},
            "workers": {w.name: {"pid": w.pid, "state": w.state, "restarts": w.restarts,
                                 "gpus": w.env.get("CUDA_VISIBLE_DEVICES")} for w in self.workers},
            "events": self.events,
        }
        write_text_atomic(self.output / STATE_FILE, json.dumps(state, indent=1))

    # -- processes
    def command(self, tuner_id):
        sets = sum((["--set", item] for item in self.overrides), [])
        return [sys.executable, "-m", "artgan", "worker", self.experiment, *sets,
                "--set", f"output={self.output}",
                "--chief", f"{connect_host(self.host) if tuner_id != CHIEF else self.host}:{self.port}",
                "--id", tuner_id,
                *(["--trial-timeout", f"{self.trial_timeout:g}"] if tuner_id == CHIEF else [])]

    def child_env(self, tuner_id, gpus):
        env = {k: v for k, v in os.environ.items()
               if k not in KERASTUNER_ENV and k != TOKEN_FILE_ENV}
        env.update(PYTHONUNBUFFERED="1", **{LAUNCHER: str(os.getpid()), TOKEN_ENV: self.token})
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if tuner_id == CHIEF:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the chief never trains
        elif gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus
        return env

    def make_child(self, tuner_id, gpus=None):
        return Child(tuner_id, self.command(tuner_id), self.child_env(tuner_id, gpus),
                     self.output / LOG_DIR, self.say)

    def run(self, fresh=False):
        """Run (or resume) the search; returns the trials table. Rerunning after any crash
        (chief, launcher or machine) resumes with the finished trials kept. The launcher holds
        the run folder's lock throughout; the chief and workers it starts do not take it."""
        from artgan.search import run_folder

        with run_folder(self.spec, fresh):
            return self._run()

    def _run(self):
        (self.output / LOG_DIR).mkdir(exist_ok=True)
        finished = finished_count(self.output)
        if finished:
            self.say(f"resuming: {finished} finished trial(s) kept in {self.output / 'tuner'}")
        self.chief = self.make_child(CHIEF)
        self.workers = [self.make_child(f"worker{i + 1}", self.gpus[i] if self.gpus else None)
                        for i in range(self.count)]
        try:
            self.chief.start()
            for worker in self.workers:
                worker.start()
            self.announce()
            outcome = self.supervise()
        finally:
            for child in [*self.workers, self.chief]:
                if child is not None:
                    child.stop()
            if self.chief is not None and self.chief.state == "running":
                self.chief.state = "stopped"
            self.save_state()
        self.say("launcher: reading the search back from disk for the trials table and best models")
        table = finalize(self.spec, self.failed)
        self.summary(table)
        if outcome != "finished":
            raise ArtganError(outcome)
        return table

    def announce(self):
        names = ", ".join(f"{w.name} (pid {w.pid}{', GPU ' + w.env['CUDA_VISIBLE_DEVICES'] if self.gpus else ''})"
                          for w in self.workers)
        self.event(f"chief (pid {self.chief.pid}) serves on {self.host}:{self.port}; "
                   f"workers: {names or 'none here'}; logs in {self.output / LOG_DIR}")
        if not self.count or not is_loopback(self.host):
            token_path = write_token(self.output, self.token)
            self.say(f"launcher: the chief's token is in {token_path} (mode 0600); join more "
                     f"workers from other machines with:\n"
                     f"  python -m artgan worker {self.experiment} "
                     + "".join(f"--set {o} " for o in self.overrides)
                     + f"--chief {self.public_host()}:{self.port} --id <unique-name> "
                     f"--token-file <a copy of {TOKEN_FILE}>")

    def public_host(self):
        return socket.gethostname() if connect_host(self.host) != self.host else self.host

    def supervise(self):
        waiting_note = None
        while True:
            time.sleep(self.poll_seconds)
            for worker in self.workers:
                if worker.state == "running" and worker.poll() is not None:
                    self.worker_exited(worker, worker.poll())
            chief_code = self.chief.poll()
            running = [w for w in self.workers if w.state == "running"]
            done = [w for w in self.workers if w.state == "done"]
            if chief_code is not None:
                self.chief.state = "exited"
                if chief_code != 0:
                    return self.chief_died(chief_code)
                # KerasTuner's own end: no trial is out and every worker that asked was told
                # to stop; one still starting up never got a trial, so it can go.
                for worker in running:
                    worker.stop()
                    worker.state = "done"
                return "finished"
            if running or not self.workers:
                continue
            if not done:
                self.event("no worker is left and the search is not finished; stopping the chief")
                self.stop_chief()
                return (f"every worker stopped before the search finished (see {self.output / LOG_DIR}); "
                        "rerun the same command to resume")
            # Every local worker was told "no trials left": wait only for trials held elsewhere.
            dead = {w.name for w in self.workers}
            held = {tid: trial for tid, trial in ongoing_trials(self.output).items() if tid not in dead}
            if held:
                note = ", ".join(f"trial {trial} ({tid})" for tid, trial in sorted(held.items()))
                if note != waiting_note:
                    self.event(f"waiting for trials held by workers on other machines: {note}")
                    waiting_note = note
                continue
            self.stop_chief()
            return "finished"

    def stop_chief(self):
        self.chief.stop()
        self.chief.state = "stopped"
        self.save_state()

    def chief_died(self, code):
        self.event(f"the chief {describe_exit(code)}; stopping the workers")
        if code > 0:
            self.say(self.chief.tail())
        for worker in self.workers:
            worker.stop()
        return (f"the chief {describe_exit(code)} before the search finished; finished trials are "
                f"kept in {self.output / 'tuner'}: rerun the same command to resume")

    def worker_exited(self, worker, code):
        if code == 0:
            worker.state = "done"
            self.save_state()
            return
        trial_id = ongoing_trials(self.output).get(worker.name)
        held = f"while running trial {trial_id}" if trial_id is not None else "between trials"
        attempt = self.attempt(trial_id)
        if trial_id is not None and attempt:
            held += f" (attempt {attempt})"
        how = describe_exit(code)
        if code < 0 and worker.restarts < self.max_restarts:
            worker.restarts += 1
            retry = (f"; the oracle gives {worker.name} its unfinished trial {trial_id} back, so "
                     f"trial {trial_id} is retried from its first epoch" if trial_id is not None else "")
            self.event(f"{worker.name} {how} {held}; restarting it under the same tuner id "
                       f"(restart {worker.restarts} of {self.max_restarts}){retry}")
            worker.start()
            self.save_state()
            return
        worker.state = "failed"
        if code < 0:
            why = f"no restarts left (--max-restarts {self.max_restarts})"
        else:
            why = f"not restarted: an error exit repeats on retry; see {worker.log}"
        if trial_id is not None:
            reason = f"{worker.name} {how} {held}; {why}"
            self.failed[str(trial_id)] = reason
            self.event(f"{reason}: trial {trial_id} is marked FAILED")
        else:
            self.event(f"{worker.name} {how} {held}; {why}")
        if code > 0:
            self.say(worker.tail())

    def attempt(self, trial_id):
        if trial_id is None:
            return None
        from artgan.search import TRIAL_INFO

        info = read_json(self.output / "tuner" / f"trial_{trial_id}" / TRIAL_INFO)
        return info.get("attempts")

    def summary(self, table):
        if table is None or table.empty:
            return
        counts = table["status"].value_counts().to_dict()
        by_worker = table.groupby(table["worker"].fillna("?"))["trial_id"].apply(
            lambda ids: ", ".join(map(str, sorted(ids)))).to_dict() if "worker" in table else {}
        self.say("launcher: trials " + ", ".join(f"{n} {s}" for s, n in counts.items())
                 + "; by worker: " + "; ".join(f"{w}: {ids}" for w, ids in by_worker.items()))
        if "attempts" in table:
            for _, row in table[table["attempts"].fillna(1) > 1].iterrows():
                self.say(f"launcher: trial {row['trial_id']} was retried: {row['status']} after "
                         f"{int(row['attempts'])} attempts (an earlier attempt's worker was killed)")


def gpu_groups(gpus, workers):
    """'0,1,2,3' over 2 workers -> ['0,2', '1,3']: every worker gets its own GPUs."""
    if gpus is None:
        return None
    ids = [g.strip() for g in str(gpus).split(",") if g.strip()]
    if workers and len(ids) < workers:
        raise ArtganError(
            f"--gpus lists {len(ids)} GPU(s) for {workers} workers: give each worker at least "
            "one (two processes on one GPU each try to take all its memory)"
        )
    return [",".join(ids[i::workers]) for i in range(workers)] if workers else []


def launch(spec, experiment, overrides=(), workers=2, fresh=False, **options):
    """`python -m artgan search EXP --workers N`: the trials table of the finished search."""
    from artgan.model import PARAMETERS

    spec.space.check(PARAMETERS)  # before any process starts or anything is written
    return Launcher(spec, experiment, overrides, workers, **options).run(fresh=fresh)
