"""Every use of KerasTuner's private parts, in one place (written for keras-tuner 1.4.8).

A KerasTuner upgrade means reading this module and running `tests/test_kt_compat.py`, which
checks that each private name below still exists (`missing_private_parts`). The rest of
artgan uses KerasTuner's public API only: `kt.HyperModel`, the tuners, `kt.Objective`,
`kt.HyperParameters`, `kt.errors.FailedTrialError`, `Trial.load` and the three environment
variables of its distributed mode.

* State files: `kt.src.utils.save_json` (its one JSON writer) is replaced by an atomic one
  (`install_atomic_state_writer`); truncated `trial.json`/`oracle.json` files are repaired and
  a fresh oracle refilled from the trial files (`repair_tuner_files`, `restore_trials`: the
  oracle's `start_order`, `end_order`, `_record_values`); a process killed between writing a
  trial and saving the oracle leaves a RUNNING trial that is queued again, and a trial that
  ended is never queued (`requeue_orphaned_trials`: `_retry_queue`); a new tuner id adopts
  another's state file (`adopt_oracle`: KerasTuner reloads only from `<tuner id>.json`).
* Checkpoints: where a trial's best-epoch weights are (`checkpoint_file`:
  `_get_checkpoint_fname`), so a resumed trial keeps the best epoch it had before; they are
  written to a temporary file and renamed (`install_atomic_state_writer` patches
  `tuner_utils.SaveBestEpoch._save_model`), so a kill -9 never leaves half a checkpoint.
* Distributed mode: whether this process is a worker (`kt.src.distribute.utils`,
  `tuner._is_worker`); the chief's gRPC server is rebuilt with interceptors and a trial
  time-out (`serve_oracle`, from `oracle_chief.start_server`, `OracleServicer`,
  `exit_chief`, `protos`); a worker's channel is replaced by one that sends a token and
  beats a heartbeat (`authenticate_client`: `OracleClient.stub`); a silent worker's trial is
  ended (`expire_trials`: `oracle.ongoing_trials`, `tuner_ids`); a trial whose worker is gone
  is failed after the fact (`mark_failed`: `_retry_queue`, `end_order`); who holds which
  trial is read from the chief's `oracle.json` (`ongoing_trials`).
* Errors: KerasTuner gives up after `max_consecutive_failed_trials` with a plain
  RuntimeError, told apart by its text (`gave_up_after_failures`).
"""

import collections
import functools
import importlib
import json
import logging
import os
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import keras_tuner as kt

from artgan.errors import ArtganError
from artgan.files import read_json, write_text_atomic
from artgan.runfolder import RunFolder

log = logging.getLogger(__name__)

TESTED_VERSIONS = ("1.4.8",)
#: KerasTuner's own variables for its distributed mode (public, documented).
TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
KERASTUNER_ENV = (TUNER_ID, ORACLE_IP, ORACLE_PORT)
#: (module, attribute path) of every private part used here, for `missing_private_parts`.
PRIVATE_PARTS = (
    ("keras_tuner.src.utils", "save_json"),
    ("keras_tuner.src.distribute.utils", "has_chief_oracle"),
    ("keras_tuner.src.distribute.utils", "is_chief_oracle"),
    ("keras_tuner.src.distribute.oracle_chief", "OracleServicer"),
    ("keras_tuner.src.distribute.oracle_chief", "exit_chief"),
    ("keras_tuner.src.protos", "get_service_grpc"),
    ("keras_tuner.src.protos", "get_service"),
    ("keras_tuner.src.protos", "get_proto"),
    ("keras_tuner.src.engine.oracle", "Oracle._record_values"),
    ("keras_tuner.src.engine.tuner", "Tuner._is_worker"),
    ("keras_tuner.src.engine.tuner", "Tuner._get_checkpoint_fname"),
    ("keras_tuner.src.engine.tuner_utils", "SaveBestEpoch._save_model"),
)
#: Oracle instance attributes used here (set in `Oracle.__init__`).
ORACLE_ATTRIBUTES = (
    "_retry_queue",
    "start_order",
    "end_order",
    "ongoing_trials",
    "tuner_ids",
    "trials",
)


def missing_private_parts():
    """The private names above that this KerasTuner lacks (empty when artgan fits it)."""
    missing = []
    for module, path in PRIVATE_PARTS:
        target = importlib.import_module(module)
        for part in path.split("."):
            target = getattr(target, part, None)
        if target is None:
            missing.append(f"{module}.{path}")
    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)
    missing += [f"Oracle.{name}" for name in ORACLE_ATTRIBUTES if not hasattr(oracle, name)]
    return missing


def install_atomic_state_writer():
    """Route KerasTuner's JSON state writes through `write_text_atomic`, and its best-epoch
    checkpoints through a rename (idempotent)."""
    kt.src.utils.save_json = _save_json_atomically
    saver = kt.src.engine.tuner_utils.SaveBestEpoch
    if not getattr(saver._save_model, "artgan_atomic", False):
        saver._save_model = _atomic_checkpoint(saver._save_model)


def _atomic_checkpoint(save):
    """`SaveBestEpoch._save_model`, writing `saving.<name>` and renaming it over the old."""

    def save_atomically(self):
        final = Path(self.filepath)
        partial = final.with_name("saving." + final.name)
        self.filepath = str(partial)
        try:
            save(self)
        finally:
            self.filepath = str(final)
        if partial.exists():
            partial.replace(final)

    save_atomically.artgan_atomic = True
    return save_atomically


def is_worker_process():
    """True in a distributed worker (its oracle lives in the chief: only the chief repairs)."""
    roles = kt.src.distribute.utils
    return roles.has_chief_oracle() and not roles.is_chief_oracle()


def _save_json_atomically(path, obj):
    """KerasTuner writes trial.json, oracle.json and its tuner state in place, so a full disk
    left them truncated and every resume failed; through atomic_path the old file survives
    and the error is a one-line "disk full"."""
    text = json.dumps(obj)
    write_text_atomic(path, text)
    return text


def _unreadable(path):
    try:
        return not isinstance(json.loads(Path(path).read_text()), dict)
    except ValueError:
        return True


def repair_tuner_files(project):
    """Make a project KerasTuner can reload after a crash or a full disk truncated its files
    (older versions wrote them in place). An unreadable trial.json becomes a FAILED trial
    under the same id (ids count trials, so dropping one would reuse a folder); an unreadable
    oracle.json is set aside with the tuner state files, so KerasTuner starts a fresh oracle
    and `restore_trials` refills it. Returns (repaired trial ids, whether to restore)."""
    repaired = []
    for path in sorted(Path(project).glob("trial_*/trial.json")):
        if not _unreadable(path):
            continue
        trial_id = path.parent.name.removeprefix("trial_")
        message = f"{path} was unreadable (truncated by a full disk?); the trial's result is lost"
        write_text_atomic(
            path,
            json.dumps(
                {
                    "trial_id": trial_id,
                    "hyperparameters": {"space": [], "values": {}},
                    "metrics": {"metrics": {}},
                    "score": None,
                    "best_step": None,
                    "status": kt.engine.trial.TrialStatus.FAILED,
                    "message": message,
                }
            ),
        )
        log.warning("%s; marked failed", message)
        repaired.append(trial_id)
    oracle = Path(project) / "oracle.json"
    if not oracle.is_file() or not _unreadable(oracle):
        return repaired, False
    for state in [oracle, *(p for p in Path(project).glob("*.json") if p != oracle)]:
        state.replace(state.with_name(state.name + ".unreadable"))
    log.warning(
        "%s was unreadable (truncated by a full disk?); set aside as %s.unreadable, "
        "the oracle is rebuilt from the trial files",
        oracle,
        oracle.name,
    )
    return repaired, True


def restore_trials(oracle, project):
    """Refill a fresh oracle with the trials on disk (after `repair_tuner_files` set aside an
    unreadable oracle.json). KerasTuner-private: its trial orders and tried-values record."""
    for path in sorted(Path(project).glob("trial_*/trial.json")):
        trial = kt.engine.trial.Trial.load(str(path))
        oracle.trials[trial.trial_id] = trial
        oracle.start_order.append(trial.trial_id)
        if trial.status != kt.engine.trial.TrialStatus.RUNNING:
            oracle.end_order.append(trial.trial_id)
        if trial.hyperparameters.values:
            oracle._record_values(trial)  # so the same values are not tried again
    oracle.save()


#: Trial states that end a trial for good: such a trial is never trained again.
ENDED = (
    kt.engine.trial.TrialStatus.COMPLETED,
    kt.engine.trial.TrialStatus.FAILED,
    kt.engine.trial.TrialStatus.STOPPED,
)


def requeue_orphaned_trials(oracle, skip=()):
    """Queue for retry every reloaded trial still marked RUNNING, and nothing that ended.

    KerasTuner's reload retries the trials its oracle.json lists as ongoing, but a process
    killed after a new trial's trial.json was written and before oracle.json was saved
    leaves a RUNNING trial that nothing would ever finish. The other way round,
    `Oracle.end_trial` saves oracle.json *before* it takes the trial off the ongoing list
    (`_servicer` saves again, but a kill can land in between), so a finished trial can be
    listed as ongoing, and reload would train it again: a trial that ended (COMPLETED,
    FAILED) is dropped from the queue, and each trial is queued once (an INVALID trial
    waiting for its `max_retries` retry stays). (A distributed worker's oracle lives in the
    chief: it has no queue here.) Trials in `skip` (repaired, their values lost) are never
    retried.
    """
    queue = getattr(oracle, "_retry_queue", None)
    if queue is None:
        return
    kept = []
    for trial_id in queue:
        trial = oracle.trials.get(trial_id)
        ended = trial is None or trial.status in ENDED
        if trial_id not in skip and trial_id not in kept and not ended:
            kept.append(trial_id)
    queue[:] = kept
    for trial_id, trial in oracle.trials.items():
        if trial.status == kt.engine.trial.TrialStatus.RUNNING and trial_id not in queue:
            queue.append(trial_id)


def all_trials(tuner):
    """Every trial of the search. A distributed worker's oracle lives in the chief process,
    so a worker reads the trial files the chief saves instead."""
    if not tuner._is_worker():  # private; `is_worker_process` reads the same variables
        return list(tuner.oracle.trials.values())
    trials = []
    for path in sorted(Path(tuner.project_dir).glob("trial_*/trial.json")):
        try:
            trials.append(kt.engine.trial.Trial.load(str(path)))
        except (OSError, ValueError, KeyError):  # being rewritten right now: next refresh
            continue
    return trials


def checkpoint_file(tuner, trial_id):
    """The file KerasTuner keeps a trial's best-epoch weights in."""
    return tuner._get_checkpoint_fname(trial_id)


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


@kt.synchronized
def _then_save(oracle, action):
    """`action()` (one that ends a trial), then save the oracle, under KerasTuner's lock for
    it. `Oracle.end_trial` saves before it takes the trial off the ongoing list, so without
    this save a chief's oracle.json lists every trial it ended last as still running (a
    single-process tuner's `on_trial_end` saves again)."""
    result = action()
    oracle.save()
    return result


@kt.synchronized
def _forget(oracle, tuner_id):
    oracle.tuner_ids.discard(tuner_id)


def _servicer(oracle, seen, spent=None):
    """KerasTuner's servicer, refusing reports on trials that are not out (a fabricated or
    timed-out trial), noting when each trial was last heard of (for `expire_trials`), and
    handing out no trial once `spent()` (the time budget, on this process's clock) is true:
    the worker is told to stop, as when the trial budget is spent."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    def out(trial_id):
        return any(t.trial_id == trial_id for t in list(oracle.ongoing_trials.values()))

    class Servicer(OracleServicer):
        def CreateTrial(self, request, context):
            if spent is not None and spent():
                _forget(oracle, request.tuner_id)  # what the oracle does when it says stop
                self.stop_triggered = True
                stop = kt.engine.trial.Trial(
                    oracle.get_space(),
                    trial_id="time-budget",
                    status=kt.engine.trial.TrialStatus.STOPPED,
                )
                return protos.get_service().CreateTrialResponse(trial=stop.to_proto())
            response = super().CreateTrial(request, context)
            seen[response.trial.trial_id] = time.monotonic()
            return response

        def GetTrial(self, request, context):  # also a worker's heartbeat
            if out(request.trial_id):
                seen[request.trial_id] = time.monotonic()
            return super().GetTrial(request, context)

        def UpdateTrial(self, request, context):
            if not out(request.trial_id):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"trial {request.trial_id} is not running"
                )
            seen[request.trial_id] = time.monotonic()
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            if not out(request.trial.trial_id):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"trial {request.trial.trial_id} is not running",
                )
            return _then_save(oracle, lambda: OracleServicer.EndTrial(self, request, context))

    return Servicer(oracle)


def expire_trials(oracle, seen, timeout, now=None, say=log.info):
    """End (FAILED, with the reason) every trial out longer than `timeout` seconds with no
    update, and forget its worker, so the search can finish without it."""
    from keras_tuner.src.engine import trial as trial_module

    now = time.monotonic() if now is None else now
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        last = seen.setdefault(trial.trial_id, now)
        if now - last < timeout:
            continue
        reason = (
            f"no update from {tuner_id} for {now - last:.0f} s (trial time-out "
            f"{timeout:g} s): the worker stopped reporting"
        )
        ended = trial_module.Trial(
            trial.hyperparameters,
            trial_id=trial.trial_id,
            status=trial_module.TrialStatus.FAILED,
            message=reason,
        )
        # Forget the worker first: whoever sees the trial no longer ongoing (end_trial pops
        # it last) also sees the worker gone, never one without the other.
        oracle.tuner_ids.discard(tuner_id)
        _then_save(oracle, functools.partial(oracle.end_trial, ended))
        seen.pop(trial.trial_id, None)
        say(f"chief: trial {trial.trial_id} is marked FAILED: {reason}")


def serve_oracle(
    oracle,
    host,
    port,
    interceptors=(),
    trial_timeout=None,
    stop=None,
    say=log.info,
    tick=1.0,
    spent=None,
):
    """KerasTuner's `oracle_chief.start_server`, with gRPC `interceptors`, a trial time-out
    and a time budget (`spent()` true: no new trial; see `_servicer`). Returns when
    KerasTuner's own end is reached (a worker was told to stop, no trial is out, every
    worker that asked was told) or when `stop` (a threading.Event) is set."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    seen = {}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=1), interceptors=list(interceptors)
    )
    servicer = _servicer(oracle, seen, spent)
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


def authenticate_client(tuner, host, port, metadata, beat):
    """Point a worker tuner's OracleClient at the chief through a channel that sends
    `metadata` (a (key, value) pair: the token) with every call, and, while it holds a trial, asks the chief about that trial every `beat` seconds
    (KerasTuner reports a trial only when it ends; the chief's time-out needs a sign of life).
    Returns an Event that stops the heartbeat."""
    from keras_tuner.src import protos

    class Details(
        collections.namedtuple(
            "Details", "method timeout metadata credentials wait_for_ready compression"
        ),
        grpc.ClientCallDetails,
    ):
        pass

    held = {"trial": None}
    stop = threading.Event()

    class SendToken(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            sent = [*(details.metadata or ()), tuple(metadata)]
            outcome = continuation(
                Details(
                    details.method,
                    details.timeout,
                    sent,
                    details.credentials,
                    details.wait_for_ready,
                    details.compression,
                ),
                request,
            )
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
                stub.GetTrial(
                    protos.get_service().GetTrialRequest(trial_id=trial_id),
                    timeout=max(beat, 10.0),
                )
            except grpc.RpcError:
                pass  # the next real call reports a chief that is gone

    threading.Thread(target=heartbeat, name="artgan-heartbeat", daemon=True).start()
    return stop


def mark_failed(tuner, failed):
    """Fail, after the fact, the RUNNING trials in `failed` ({trial id: reason})."""
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
    return read_json(RunFolder(output).oracle).get("ongoing_trials", {})


GAVE_UP = "Number of consecutive failures"


def gave_up_after_failures(error: BaseException) -> list[str] | None:
    """The lines of KerasTuner's message when `error` is it giving up after too many failed
    trials in a row (first: the count; last: the last trial's error), else None."""
    text = str(error).strip()
    return (
        text.splitlines() if isinstance(error, RuntimeError) and text.startswith(GAVE_UP) else None
    )
