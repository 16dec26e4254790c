"""Distributed search on KerasTuner's chief/worker engine: real processes on loopback, real
Louvre images, a tiny budget. Workers and the chief are killed with SIGKILL on purpose."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from artgan.cli.search import worker_command
from artgan.config.spec import load_experiment
from artgan.errors import ArtganError
from artgan.files import read_json
from artgan.paths import REPO_ROOT
from artgan.tuning._kt_compat import adopt_oracle
from artgan.tuning.parallel.launcher import Launcher
from artgan.tuning.parallel.roles import check_same_search, check_tuner_id, parse_address
from artgan.tuning.parallel.strategy import gpu_groups

from support import TINY, killed_on_exit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def search_command(output, trials, epochs, *extra):
    sets = [*TINY, f"budget.max_trials={trials}", f"budget.epochs={epochs}", f"output={output}"]
    return [
        sys.executable,
        "-m",
        "artgan",
        "search",
        "genre",
        "--workers",
        "2",
        *sum((["--set", s] for s in sets), []),
        *extra,
    ]


@pytest.fixture()
def env(tmp_path, data_dir):
    return dict(os.environ, ARTGAN_CACHE=str(tmp_path / "cache"))


def start(command, env):
    """The search in the background, its output (stdout and stderr) readable as text."""
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def read_table(output):
    return pd.read_csv(output / "trials.csv", dtype={"trial_id": str, "worker": str})


def running_trial(output, worker=None, attempts=None):
    """(trial id, marker) of a trial a worker is running right now, per its artgan_trial.json."""
    for path in sorted((output / "tuner").glob("trial_*/artgan_trial.json")):
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if marker.get("status") != "RUNNING":
            continue
        if worker and marker["worker"] != worker or attempts and marker["attempts"] != attempts:
            continue
        return path.parent.name.removeprefix("trial_"), marker
    return None


def test_chief_and_two_workers_share_one_search(tmp_path, env):
    output = tmp_path / "run"
    result = subprocess.run(
        search_command(output, trials=4, epochs=1),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    table = read_table(output)
    assert sorted(table["trial_id"]) == ["0", "1", "2", "3"]
    assert (table["status"] == "COMPLETED").all()
    assert set(table["worker"]) <= {"worker1", "worker2"}
    assert table["worker"].nunique() == 2, table[["trial_id", "worker"]]
    assert (table["attempts"] == 1).all() and (table["epochs"] == 1).all()
    # The same results as a single-process search: one table, one log tree, best models.
    assert len(list((output / "tensorboard").iterdir())) == 4
    assert (output / "best" / "model_1.keras").is_file()
    curves = json.loads((output / "trials.json").read_text())
    assert all(row["history"]["val_accuracy"] for row in curves)
    state = json.loads((output / "workers.json").read_text())
    assert {w["state"] for w in state["workers"].values()} == {"done"}
    assert "val_accuracy" in (output / "logs" / "worker1.log").read_text()
    assert "launcher: trials 4 COMPLETED" in result.stdout

    # Rerun the finished search: nothing is trained again (the last trial each worker ended
    # used to be: attempts 1 -> 2, its score and best model overwritten).
    trial_files = sorted((output / "tuner").glob("trial_*/trial.json"))
    scores = {p.parent.name: read_json(p)["score"] for p in trial_files}
    again = subprocess.run(
        search_command(output, trials=4, epochs=1),
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming: 4 finished trial(s) kept" in again.stdout
    rerun = read_table(output)
    assert (rerun["attempts"] == 1).all() and (rerun["status"] == "COMPLETED").all()
    assert {p.parent.name: read_json(p)["score"] for p in trial_files} == scores


def test_killed_workers_trials_are_retried_or_failed_with_a_reason(tmp_path, env):
    """kill -9 both workers mid-trial: each is restarted under its id and gets its trial back
    (retried). Kill worker1 again on the retry: no restarts left, so that trial is FAILED with
    the reason, and worker2 finishes the search alone."""
    output = tmp_path / "run"
    command = search_command(output, 4, 3, "--max-restarts", "1")
    with killed_on_exit(start(command, env)) as process:

        def both_running():
            pair = running_trial(output, "worker1"), running_trial(output, "worker2")
            return all(pair) and pair

        first, second = wait_for(both_running, 240, "both workers to run a trial", process)
        os.kill(first[1]["pid"], signal.SIGKILL)
        os.kill(second[1]["pid"], signal.SIGKILL)
        lost_id, retry = wait_for(
            lambda: running_trial(output, "worker1", attempts=2),
            240,
            "worker1 to retry its trial",
            process,
        )
        assert lost_id == first[0]  # the oracle handed the restarted worker1 the same trial
        os.kill(retry["pid"], signal.SIGKILL)
        out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]

    table = read_table(output).set_index("trial_id")
    assert sorted(table.index) == ["0", "1", "2", "3"]  # every trial accounted for
    failed = table.loc[lost_id]
    assert failed["status"] == "FAILED" and failed["attempts"] == 2
    assert failed["failure"] == "worker lost"
    assert "worker1 was killed by SIGKILL while running trial" in failed["message"]
    assert "no restarts left" in failed["message"]
    retried = table.loc[second[0]]
    assert retried["status"] == "COMPLETED" and retried["attempts"] == 2
    assert retried["worker"] == "worker2"
    others = table.drop(index=[lost_id])
    assert (others["status"] == "COMPLETED").all()
    assert f"worker2 was killed by SIGKILL while running trial {second[0]}" in out
    assert f"trial {second[0]} is retried" in out
    assert f"trial {lost_id} is marked FAILED" in out
    # The retried trial's TensorBoard run holds its last attempt, and the first one's epochs
    # only when the retry resumed after them (from the trial's backup).
    assert len(list((output / "tensorboard" / second[0]).rglob("events.out.tfevents.*"))) <= 6


@pytest.mark.slow
@pytest.mark.distributed
def test_workers_prune_against_the_curves_in_the_run_folder(tmp_path, env):
    """Pruning in a chief + workers search: each worker reads the finished trials' curves
    from the shared run folder (here three planted ones at 100 %), so every trial stops
    after the warm-up, is PRUNED in the table and still scored."""
    output = tmp_path / "run"
    for number in range(3):
        planted = output / "tuner" / f"trial_planted{number}" / "artgan_trial.json"
        planted.parent.mkdir(parents=True)
        planted.write_text(json.dumps({"history": {"val_accuracy": [1.0] * 4}}))
    command = search_command(
        output,
        2,
        4,
        "--set",
        "pruning.type=median",
        "--set",
        "pruning.min_epochs=2",
        "--set",
        "pruning.min_trials=3",
    )
    result = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = read_table(output)
    assert sorted(table["trial_id"]) == ["0", "1"]
    assert (table["status"] == "PRUNED").all() and (table["pruned_at_epoch"] == 2).all()
    assert (table["epochs"] == 2).all() and table["score"].notna().all()
    assert set(table["worker"]) <= {"worker1", "worker2"}
    assert "pruned after epoch 2" in result.stdout
    assert (output / "best" / "model_1.keras").is_file()


def test_killing_the_chief_then_rerunning_resumes(tmp_path, env):
    output = tmp_path / "run"
    command = search_command(output, trials=3, epochs=2)
    first = output / "tuner" / "trial_0" / "trial.json"
    with killed_on_exit(start(command, env)) as process:
        wait_for(
            lambda: read_json(first).get("status") == "COMPLETED",
            240,
            "trial 0 to finish",
            process,
        )
        chief = json.loads((output / "workers.json").read_text())["chief"]["pid"]
        os.kill(chief, signal.SIGKILL)
        out, _ = process.communicate(timeout=120)
    assert process.returncode == 2, out[-3000:]
    assert "the chief was killed by SIGKILL" in out and "rerun the same command to resume" in out
    before = json.loads(first.read_text())
    kept = read_table(output)
    finished = int((kept["status"] == "COMPLETED").sum())
    assert finished >= 1

    result = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"resuming: {finished} finished trial(s) kept" in result.stdout
    table = read_table(output)
    assert sorted(table["trial_id"]) == ["0", "1", "2"]
    assert (table["status"] == "COMPLETED").all()
    after = json.loads(first.read_text())
    assert after["score"] == before["score"]  # the finished trial was not rerun


def test_a_full_disk_stops_the_search_and_the_rerun_spends_the_budget(tmp_path, env):
    """The image cache is built inside a trial: a worker that finds the disk full stops the
    search (exit status 75 to the launcher) instead of failing its trial and the next."""
    site = tmp_path / "site"  # every process of the search sees 100 bytes free
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import collections, shutil\n"
        "Usage = collections.namedtuple('Usage', 'total used free')\n"
        "shutil.disk_usage = lambda path: Usage(10**6, 10**6 - 100, 100)\n"
    )
    output = tmp_path / "run"
    command = search_command(output, trials=2, epochs=1)
    full = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])))
    result = subprocess.run(
        command, env=full, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stopped the search: the disk is full" in result.stderr.splitlines()[-1]
    assert "disk full: needs about" in result.stdout  # the worker's own line, echoed
    assert "Traceback" not in result.stdout + result.stderr
    statuses = [read_json(p)["status"] for p in (output / "tuner").glob("trial_*/trial.json")]
    assert statuses and set(statuses) == {"RUNNING"}  # begun, stopped, none spent

    again = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    table = read_table(output)
    assert sorted(table["trial_id"]) == ["0", "1"] and (table["status"] == "COMPLETED").all()


# ----------------------------------------------------------------------------- no processes


def test_gpus_are_dealt_out_to_workers():
    assert gpu_groups("0,1,2,3", 2) == ["0,2", "1,3"]
    assert gpu_groups("0,1", 2) == ["0", "1"]
    assert gpu_groups(None, 3) is None
    with pytest.raises(ArtganError, match="at least"):
        gpu_groups("0", 2)


def test_addresses_and_ids_are_checked():
    assert parse_address("10.0.0.5:8000") == ("10.0.0.5", 8000)
    for bad in ("10.0.0.5", ":80", "host:port", "host:0"):
        with pytest.raises(ArtganError, match="HOST:PORT"):
            parse_address(bad)
    assert check_tuner_id("chief") == "chief" and check_tuner_id("gpu-box.3") == "gpu-box.3"
    with pytest.raises(ArtganError, match="containing 'chief'"):
        check_tuner_id("mischief1")  # KerasTuner would make it a second chief
    with pytest.raises(ArtganError, match="letters"):
        check_tuner_id("a/b")


def test_worker_refuses_a_spec_that_differs_from_the_chiefs(tmp_path):
    from artgan.tuning.output import prepare_output

    experiment = REPO_ROOT / "experiments" / "genre.yaml"
    chief = load_experiment(experiment, [*TINY, f"output={tmp_path}"])
    prepare_output(chief, fresh=False)
    same = load_experiment(
        experiment,
        [*TINY, f"output={tmp_path}", "budget.max_trials=99", "distribution.strategy=mirrored"],
    )
    check_same_search(same)  # max_trials is the chief's business, devices each worker's
    for change, key in (
        ("budget.epochs=5", "budget.epochs"),
        ("budget.max_train_images=40", "budget.max_train_images"),
    ):
        other = load_experiment(experiment, [*TINY, f"output={tmp_path}", change])
        with pytest.raises(ArtganError, match=f"{key}: there"):
            check_same_search(other)
    empty = load_experiment(experiment, [*TINY, f"output={tmp_path / 'none'}"])
    with pytest.raises(ArtganError, match="no search yet"):
        check_same_search(empty)


def test_worker_command_needs_a_chief(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    result = subprocess.run(
        [sys.executable, "-m", "artgan", "worker", "genre", "--set", f"output={tmp_path}"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--chief HOST:PORT" in result.stderr


def test_any_process_adopts_an_existing_oracle(tmp_path, monkeypatch):
    """A search begun single-process (tuner0) must be reloaded, not overwritten, by a chief."""
    (tmp_path / "oracle.json").write_text("{}")
    (tmp_path / "tuner0.json").write_text("{}")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    adopt_oracle(tmp_path)
    assert (tmp_path / "chief.json").read_text() == "{}"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    adopt_oracle(fresh)  # nothing to adopt: KerasTuner starts a new search
    assert not (fresh / "chief.json").exists()


def test_launcher_options_are_checked(tmp_path):
    spec = load_experiment(REPO_ROOT / "experiments" / "genre.yaml", [f"output={tmp_path}"])
    command = worker_command("genre", ["budget.epochs=1"], spec.output_dir)
    with pytest.raises(ArtganError, match="`workers` must be 0 or more"):
        Launcher(spec, command, workers=-1)
    launcher = Launcher(spec, command, workers=2, gpus="0,1")
    command = launcher.child_command("worker2")
    assert command[-4:] == ["--chief", f"127.0.0.1:{launcher.port}", "--id", "worker2"]
    assert launcher.child_env("worker2", "1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert launcher.child_env("chief", None)["CUDA_VISIBLE_DEVICES"] == ""
    assert "KERASTUNER_TUNER_ID" not in launcher.child_env("worker1", None)
    # Every process it starts gets the same new token; only the chief gets the time-out.
    token = launcher.child_env("worker1", None)["ARTGAN_ORACLE_TOKEN"]
    assert len(token) >= 32 and launcher.child_env("chief", None)["ARTGAN_ORACLE_TOKEN"] == token
    assert Launcher(spec, command, workers=1).token != token
    assert launcher.child_command("chief")[-2:] == ["--trial-timeout", "1800"]
    assert "--trial-timeout" not in launcher.child_command("worker1")
    with pytest.raises(ArtganError, match="time-out 0 s is too short"):
        Launcher(spec, command, workers=1, trial_timeout=0)


def test_spec_distribution_selects_mirrored_strategy(tmp_path):
    import tensorflow as tf

    from artgan.data.splits import TaskData
    from artgan.tuning.hypermodel import CRNNHyperModel
    from artgan.tuning.tuner import make_tuner

    experiment = REPO_ROOT / "experiments" / "genre.yaml"
    for strategy, expected in (
        ("mirrored", tf.distribute.MirroredStrategy),
        ("default", type(None)),
    ):
        spec = load_experiment(
            experiment,
            [*TINY, f"output={tmp_path / strategy}", f"distribution.strategy={strategy}"],
        )
        tuner = make_tuner(spec, CRNNHyperModel(spec.space, TaskData.from_spec(spec)))
        assert isinstance(tuner.distribution_strategy, expected)
    with pytest.raises(ArtganError, match="distribution.strategy"):
        load_experiment(experiment, ["distribution.strategy=tpu"])


# ----------------------------------------------------------------------------- oracle access


@pytest.fixture()
def chief(tmp_path):
    """A KerasTuner oracle served by `serve_oracle` on loopback with a token and a 2 s trial
    time-out, in a thread; yields (oracle, address, token, log lines)."""
    with serving(tmp_path) as served:
        yield served


@contextmanager
def serving(tmp_path, spent=None):
    import threading

    import keras_tuner as kt

    from artgan.tuning._kt_compat import serve_oracle
    from artgan.tuning.parallel.access import new_token, server_interceptor
    from artgan.tuning.parallel.roles import free_port

    hps = kt.HyperParameters()
    hps.Choice("units", [8, 16, 32])
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=5, hyperparameters=hps, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "tuner")
    port, token, lines, stop = free_port(), new_token(), [], threading.Event()
    thread = threading.Thread(
        target=serve_oracle,
        daemon=True,
        args=(
            oracle,
            "127.0.0.1",
            port,
            [server_interceptor(token, lines.append)],
            2.0,
            stop,
            lines.append,
            0.2,
            spent,
        ),
    )
    thread.start()
    yield oracle, f"127.0.0.1:{port}", token, lines
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def stub(address, token=None):
    import grpc
    from keras_tuner.src import protos

    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    service = protos.get_service_grpc().OracleStub(channel)
    metadata = [("artgan-oracle-token", token)] if token is not None else None
    return service, metadata


def fabricated_trial(trial_id="9", score=0.999):
    import keras_tuner as kt

    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id=trial_id, status="COMPLETED")
    trial.metrics.register("score", "max")
    trial.metrics.update("score", score)
    trial.score = score
    return trial


def test_the_chief_refuses_calls_without_the_token(chief):
    import grpc
    from keras_tuner.src import protos

    oracle, address, token, lines = chief
    messages = protos.get_service()
    for wrong in (None, "", "not-" + token):
        service, metadata = stub(address, wrong)
        calls = [
            (service.GetSpace, messages.GetSpaceRequest()),
            (service.CreateTrial, messages.CreateTrialRequest(tuner_id="intruder")),
            (service.EndTrial, messages.EndTrialRequest(trial=fabricated_trial().to_proto())),
        ]
        for method, request in calls:
            with pytest.raises(grpc.RpcError) as refused:
                method(request, metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (
        oracle.trials == {} and oracle.ongoing_trials == {} and "intruder" not in oracle.tuner_ids
    )
    assert oracle.get_best_trials(1) == []
    assert any("refused an unauthenticated call from ipv4:127.0.0.1" in line for line in lines)


def test_the_chief_serves_a_worker_with_the_token_and_refuses_made_up_reports(chief):
    import grpc
    from keras_tuner.src import protos

    oracle, address, token, _ = chief
    messages = protos.get_service()
    service, metadata = stub(address, token)
    trial = service.CreateTrial(
        messages.CreateTrialRequest(tuner_id="worker1"), metadata=metadata, timeout=10
    ).trial
    assert trial.status == protos.get_proto().TrialStatus.RUNNING
    # Even with the token, a report on a trial that was never handed out is refused.
    with pytest.raises(grpc.RpcError) as refused:
        service.EndTrial(
            messages.EndTrialRequest(trial=fabricated_trial("9").to_proto()),
            metadata=metadata,
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    real = fabricated_trial(trial.trial_id, 0.5)
    service.UpdateTrial(
        messages.UpdateTrialRequest(trial_id=trial.trial_id, metrics={"score": 0.5}),
        metadata=metadata,
        timeout=10,
    )
    service.EndTrial(
        messages.EndTrialRequest(trial=real.to_proto()), metadata=metadata, timeout=10
    )
    assert list(oracle.trials) == [trial.trial_id]
    assert oracle.trials[trial.trial_id].status == "COMPLETED"
    assert oracle.trials[trial.trial_id].score == 0.5 and oracle.ongoing_trials == {}
    # What a resumed chief reloads: the ended trial is no longer listed as ongoing.
    saved = read_json(Path(oracle._project_dir) / "oracle.json")
    assert saved["ongoing_trials"] == {} and trial.trial_id in saved["end_order"]


def test_a_trial_held_by_a_silent_worker_times_out(chief):
    from keras_tuner.src import protos

    from support import wait_for

    oracle, address, token, lines = chief
    service, metadata = stub(address, token)
    trial = service.CreateTrial(
        protos.get_service().CreateTrialRequest(tuner_id="silent"), metadata=metadata, timeout=10
    ).trial
    wait_for(lambda: not oracle.ongoing_trials, 20, "the silent worker's trial to time out")
    ended = oracle.trials[trial.trial_id]
    assert ended.status == "FAILED"
    assert "no update from silent" in ended.message and "time-out 2 s" in ended.message
    assert "silent" not in oracle.tuner_ids  # the chief does not wait for it to finish
    # The chief logs right after it ends the trial, so the line may come a moment later.
    marked = f"trial {trial.trial_id} is marked FAILED"
    wait_for(lambda: any(marked in line for line in lines), 5, "the chief to log the time-out")


def test_tokens_for_chiefs_and_workers(tmp_path, monkeypatch):
    from artgan.tuning.parallel.access import (
        TOKEN_FILE,
        check_chief_access,
        chief_token,
        given_token,
        worker_token,
    )

    monkeypatch.delenv("ARTGAN_ORACLE_TOKEN", raising=False)
    monkeypatch.delenv("ARTGAN_ORACLE_TOKEN_FILE", raising=False)
    assert given_token() is None
    with pytest.raises(ArtganError, match="no token for the chief"):
        worker_token(tmp_path)
    token, note = chief_token(tmp_path)  # a chief started by hand without one makes one
    path = tmp_path / TOKEN_FILE
    assert str(path) in note and path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert chief_token(tmp_path)[0] == token  # a restarted chief keeps it
    assert worker_token(tmp_path) == token  # a worker sharing the output folder finds it
    other = tmp_path / "other.token"
    other.write_text("from-a-file\n")
    assert worker_token(tmp_path, other) == "from-a-file"
    monkeypatch.setenv("ARTGAN_ORACLE_TOKEN_FILE", str(other))
    assert given_token() == "from-a-file"
    monkeypatch.setenv("ARTGAN_ORACLE_TOKEN", "from-the-variable")
    assert given_token() == "from-the-variable"
    with pytest.raises(ArtganError, match="cannot be read"):
        given_token(tmp_path / "missing")
    check_chief_access("127.0.0.1", None)
    check_chief_access("0.0.0.0", "secret")
    with pytest.raises(ArtganError, match="without a token"):
        check_chief_access("0.0.0.0", None)


def test_a_worker_with_the_token_keeps_its_trial_alive_by_heartbeat(chief):
    """authenticate_client (what a worker uses): its calls carry the token, and while it holds
    a trial its heartbeat keeps the chief's 2 s time-out away; when it stops, the trial expires."""
    import time
    from types import SimpleNamespace

    from artgan.tuning._kt_compat import authenticate_client

    from support import wait_for

    oracle, address, token, _ = chief
    host, port = address.split(":")
    tuner = SimpleNamespace(oracle=SimpleNamespace(stub=None))
    stop = authenticate_client(tuner, host, int(port), ("artgan-oracle-token", token), beat=0.3)
    from keras_tuner.src import protos

    trial = tuner.oracle.stub.CreateTrial(
        protos.get_service().CreateTrialRequest(tuner_id="worker1"), timeout=10
    ).trial
    time.sleep(4)
    assert oracle.ongoing_trials["worker1"].trial_id == trial.trial_id
    assert oracle.trials[trial.trial_id].status == "RUNNING"
    stop.set()
    wait_for(lambda: not oracle.ongoing_trials, 20, "the trial to time out once the beat stops")
    assert oracle.trials[trial.trial_id].status == "FAILED"


def test_a_worker_with_a_wrong_token_stops_with_a_clear_error(chief, tmp_path, data_dir):
    from artgan.tuning.output import prepare_output

    oracle, address, token, lines = chief
    output = tmp_path / "run"
    prepare_output(
        load_experiment(REPO_ROOT / "experiments" / "genre.yaml", [*TINY, f"output={output}"]),
        fresh=False,
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KERASTUNER_", "ARTGAN_ORACLE"))
    }
    env.update(ARTGAN_ORACLE_TOKEN="wrong", ARTGAN_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "artgan",
            "worker",
            "genre",
            *sum((["--set", s] for s in TINY), []),
            "--set",
            f"output={output}",
            "--chief",
            address,
            "--id",
            "intruder",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "refused this worker's token" in result.stderr
    assert "joined the chief" not in result.stdout  # it never did
    assert oracle.trials == {} and "intruder" not in oracle.tuner_ids
    assert any("refused an unauthenticated call" in line for line in lines)


def test_the_time_budget_is_kept_on_the_chiefs_clock(tmp_path, monkeypatch):
    """The deadline used to be compared with each worker's own clock: one an hour ahead
    stopped at once, one behind ignored the budget. Now the chief alone decides, on its
    clock, and tells workers to stop as when the trial budget is spent."""
    import threading
    import time
    from types import SimpleNamespace

    from keras_tuner.src import protos

    from artgan.tuning import budget
    from artgan.tuning.tuner import TrialRecorder

    # A worker whose clock runs an hour ahead of the chief's, with 10 minutes left there.
    spec = load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml",
        [*TINY, f"output={tmp_path}", "budget.max_minutes=10"],
    )
    budget.start_clock(spec)
    monkeypatch.setattr(budget, "time", SimpleNamespace(time=lambda: time.time() + 3600))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")

    class Base:
        def pre_create_trial(self):
            self.asked = True

    worker = type("Worker", (TrialRecorder, Base), {"project_dir": str(tmp_path / "tuner")})()
    worker.pre_create_trial()  # asks the chief; not stopped by its own clock
    assert worker.asked

    spent = threading.Event()
    with serving(tmp_path / "chief", spent.is_set) as (oracle, address, token, _):
        service, metadata = stub(address, token)
        ask = protos.get_service().CreateTrialRequest
        first = service.CreateTrial(ask(tuner_id="worker1"), metadata=metadata, timeout=10).trial
        assert first.status == protos.get_proto().TrialStatus.RUNNING
        spent.set()  # the chief's clock reaches the deadline
        late = service.CreateTrial(ask(tuner_id="worker2"), metadata=metadata, timeout=10).trial
        assert late.status == protos.get_proto().TrialStatus.STOPPED
        assert list(oracle.trials) == [first.trial_id] and "worker2" not in oracle.tuner_ids
