"""Run a distributed search on this machine: a chief and N worker processes, supervised.

The launcher starts the chief on a free port and the workers, streams their output (also
kept in <output>/logs/), restarts a worker killed by a signal under the *same* tuner id (the
oracle hands that id its unfinished trial again), marks a trial failed when its worker is
gone for good, and at the end reads the search back from disk and writes the trials table
and best models exactly as a single-process search does.
"""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from artgan.config.spec import ExperimentSpec
from artgan.errors import ArtganError
from artgan.files import read_json, write_text_atomic
from artgan.runfolder import RunFolder
from artgan.tuning._kt_compat import ongoing_trials
from artgan.tuning.budget import record_stop, start_clock
from artgan.tuning.check import check_search
from artgan.tuning.output import run_folder
from artgan.tuning.parallel.access import (
    TOKEN_ENV,
    TOKEN_FILE,
    TOKEN_FILE_ENV,
    given_token,
    is_loopback,
    new_token,
    write_token,
)
from artgan.tuning.parallel.roles import (
    CHIEF,
    DEFAULT_TRIAL_TIMEOUT,
    KERASTUNER_ENV,
    LAUNCHER,
    LOOPBACK,
    STOPPED,
    check_trial_timeout,
    connect_host,
    finalize,
    finished_count,
    free_port,
)
from artgan.tuning.parallel.strategy import gpu_groups

log = logging.getLogger(__name__)
DEFAULT_MAX_RESTARTS = 3
#: TensorFlow's start-up lines (absl INFO, which TF_CPP_MIN_LOG_LEVEL no longer silences).
TF_CHATTER = re.compile(
    r"I\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
    r"To enable the following instructions|This TensorFlow binary is optimized"
)


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
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
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
    """Start a chief and N workers here, supervise them, and write the results at the end.

    `command(tuner_id, address, trial_timeout=None, token_file=None)` gives the command line
    of one process of the search (the front end's own: the CLI's `worker` command); the
    launcher adds the token and KerasTuner's variables to its environment.
    """

    def __init__(
        self,
        spec,
        command,
        workers=2,
        host=LOOPBACK,
        port=0,
        max_restarts=DEFAULT_MAX_RESTARTS,
        gpus=None,
        poll=0.5,
        token_file=None,
        trial_timeout=DEFAULT_TRIAL_TIMEOUT,
    ):
        if workers < 0:
            raise ArtganError(f"`workers` must be 0 or more, got {workers}")
        if max_restarts < 0:
            raise ArtganError(f"`max_restarts` must be 0 or more, got {max_restarts}")
        self.spec = spec
        self.command = command
        self.count = workers
        self.host = host
        self.port = port or free_port(host if host not in ("", "::") else "0.0.0.0")
        self.max_restarts = max_restarts
        self.gpus = gpu_groups(gpus, workers)
        self.poll_seconds = poll
        self.output = spec.output_dir
        self.folder = RunFolder(self.output)
        self.trial_timeout = check_trial_timeout(trial_timeout)
        # The chief and the workers started here get the token in their environment; one
        # given to the launcher (`token_file`, the variables) is used, else a new one.
        self.token = given_token(token_file) or new_token()
        self.events = []
        self.failed = {}  # trial id -> reason, for trials whose worker is gone for good
        self.halted = None  # why a worker stopped the whole search (a full disk)
        self._lock = threading.Lock()
        self.chief = None
        self.workers = []

    # -- output
    def say(self, text):
        log.info(text)

    def event(self, text):
        self.events.append(text)
        self.say(f"launcher: {text}")
        self.save_state()

    def save_state(self):

        state = {
            "chief": {
                "address": f"{self.host}:{self.port}",
                "pid": self.chief and self.chief.pid,
                "state": self.chief and self.chief.state,
            },
            "workers": {
                w.name: {
                    "pid": w.pid,
                    "state": w.state,
                    "restarts": w.restarts,
                    "gpus": w.env.get("CUDA_VISIBLE_DEVICES"),
                }
                for w in self.workers
            },
            "events": self.events,
        }
        write_text_atomic(self.folder.workers_state, json.dumps(state, indent=1))

    # -- processes
    def child_command(self, tuner_id):
        if tuner_id == CHIEF:
            return self.command(CHIEF, f"{self.host}:{self.port}", self.trial_timeout)
        return self.command(tuner_id, f"{connect_host(self.host)}:{self.port}")

    def child_env(self, tuner_id, gpus):
        env = {
            k: v for k, v in os.environ.items() if k not in KERASTUNER_ENV and k != TOKEN_FILE_ENV
        }
        env.update(PYTHONUNBUFFERED="1", **{LAUNCHER: str(os.getpid()), TOKEN_ENV: self.token})
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if tuner_id == CHIEF:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the chief never trains
        elif gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus
        return env

    def make_child(self, tuner_id, gpus=None):
        return Child(
            tuner_id,
            self.child_command(tuner_id),
            self.child_env(tuner_id, gpus),
            self.folder.logs,
            self.say,
        )

    def run(self, fresh=False):
        """Run (or resume) the search; returns the trials table. Rerunning after any crash
        (chief, launcher or machine) resumes with the finished trials kept. The launcher holds
        the run folder's lock throughout; the chief and workers it starts do not take it."""
        with run_folder(self.spec, fresh):
            return self._run()

    def _run(self):
        self.folder.logs.mkdir(exist_ok=True)
        start_clock(self.spec)  # one deadline for every process, restarted workers included
        finished = finished_count(self.output)
        if finished:
            self.say(f"resuming: {finished} finished trial(s) kept in {self.folder.project}")
        self.chief = self.make_child(CHIEF)
        self.workers = [
            self.make_child(f"worker{i + 1}", self.gpus[i] if self.gpus else None)
            for i in range(self.count)
        ]
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
        self.say(
            "launcher: reading the search back from disk for the trials table and best models"
        )
        table = finalize(self.spec, self.failed)
        self.summary(table)
        if outcome != "finished":
            record_stop(self.output, outcome)
            raise ArtganError(outcome)
        return table

    def announce(self):
        names = ", ".join(
            f"{w.name} (pid {w.pid}{', GPU ' + w.env['CUDA_VISIBLE_DEVICES'] if self.gpus else ''})"
            for w in self.workers
        )
        self.event(
            f"chief (pid {self.chief.pid}) serves on {self.host}:{self.port}; "
            f"workers: {names or 'none here'}; logs in {self.folder.logs}"
        )
        if not self.count or not is_loopback(self.host):
            token_path = write_token(self.output, self.token)
            join = self.command(
                "<unique-name>",
                f"{self.public_host()}:{self.port}",
                token_file=f"<a copy of {TOKEN_FILE}>",
            )
            self.say(
                f"launcher: the chief's token is in {token_path} (mode 0600); join more "
                f"workers from other machines with:\n  python {' '.join(join[1:])}"
            )

    def public_host(self):
        return socket.gethostname() if connect_host(self.host) != self.host else self.host

    def supervise(self):
        waiting_note = None
        while True:
            time.sleep(self.poll_seconds)
            for worker in self.workers:
                if worker.state == "running" and worker.poll() is not None:
                    self.worker_exited(worker, worker.poll())
            if self.halted:
                self.stop_chief()
                return self.halted
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
                return (
                    f"every worker stopped before the search finished (see {self.folder.logs}); "
                    "rerun the same command to resume"
                )
            # Every local worker was told "no trials left": wait only for trials held elsewhere.
            dead = {w.name for w in self.workers}
            held = {
                tid: trial for tid, trial in ongoing_trials(self.output).items() if tid not in dead
            }
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
        return (
            f"the chief {describe_exit(code)} before the search finished; finished trials are "
            f"kept in {self.folder.project}: rerun the same command to resume"
        )

    def worker_exited(self, worker, code):
        if code == 0:
            worker.state = "done"
            self.save_state()
            return
        trial_id = ongoing_trials(self.output).get(worker.name)
        if code == STOPPED:  # the disk is full: no trial's fault, none is counted
            worker.state = "stopped"
            held = f"; trial {trial_id} is not counted" if trial_id is not None else ""
            self.halted = (
                f"{worker.name} stopped the search: the disk is full (see "
                f"{worker.log}){held}; free some space and rerun the same command "
                "to resume"
            )
            self.event(self.halted)
            return
        held = f"while running trial {trial_id}" if trial_id is not None else "between trials"
        attempt = self.attempt(trial_id)
        if trial_id is not None and attempt:
            held += f" (attempt {attempt})"
        how = describe_exit(code)
        if code < 0 and worker.restarts < self.max_restarts:
            worker.restarts += 1
            retry = (
                f"; the oracle gives {worker.name} its unfinished trial {trial_id} back, so "
                f"trial {trial_id} is retried from its last finished epoch"
                if trial_id is not None
                else ""
            )
            self.event(
                f"{worker.name} {how} {held}; restarting it under the same tuner id "
                f"(restart {worker.restarts} of {self.max_restarts}){retry}"
            )
            worker.start()
            self.save_state()
            return
        worker.state = "failed"
        if code < 0:
            why = f"no restarts left (`max_restarts` {self.max_restarts})"
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
        info = read_json(self.folder.trial_info(trial_id))
        return info.get("attempts")

    def summary(self, table):
        if table is None or table.empty:
            return
        counts = table["status"].value_counts().to_dict()
        by_worker = (
            table.groupby(table["worker"].fillna("?"))["trial_id"]
            .apply(lambda ids: ", ".join(map(str, sorted(ids))))
            .to_dict()
            if "worker" in table
            else {}
        )
        self.say(
            "launcher: trials "
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + "; by worker: "
            + "; ".join(f"{w}: {ids}" for w, ids in by_worker.items())
        )
        if "attempts" in table:
            for _, row in table[table["attempts"].fillna(1) > 1].iterrows():
                self.say(
                    f"launcher: trial {row['trial_id']} was retried: {row['status']} after "
                    f"{int(row['attempts'])} attempts (an earlier attempt's worker was killed)"
                )


def launch(
    spec: ExperimentSpec,
    command: Callable[..., list[str]],
    workers: int = 2,
    fresh: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Run a search with a chief and `workers` local worker processes started by `command`
    (see `Launcher`); returns its trials table."""
    check_search(spec)  # before any process starts or anything is written
    return Launcher(spec, command, workers, **options).run(fresh=fresh)
