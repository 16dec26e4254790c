"""The KerasTuner private parts artgan uses (all in artgan/tuning/_kt_compat.py) still exist."""

import keras_tuner as kt

from artgan.tuning import _kt_compat


def test_kerastuner_is_a_tested_version():
    assert kt.__version__ in _kt_compat.TESTED_VERSIONS, (
        f"keras-tuner {kt.__version__} is untested: read artgan/tuning/_kt_compat.py against it, "
        "then add it to TESTED_VERSIONS"
    )


def test_every_private_part_used_still_exists():
    assert _kt_compat.missing_private_parts() == []


def test_the_guard_notices_a_missing_part(monkeypatch):
    monkeypatch.delattr(kt.src.distribute.oracle_chief, "exit_chief")
    monkeypatch.delattr(kt.src.engine.oracle.Oracle, "_record_values")
    assert _kt_compat.missing_private_parts() == [
        "keras_tuner.src.distribute.oracle_chief.exit_chief",
        "keras_tuner.src.engine.oracle.Oracle._record_values",
    ]


def test_the_atomic_writer_is_installed_by_a_call_not_an_import():
    import importlib

    original = kt.src.utils.save_json
    try:
        kt.src.utils.save_json = original
        importlib.reload(_kt_compat)
        assert kt.src.utils.save_json is original
        _kt_compat.install_atomic_state_writer()
        assert kt.src.utils.save_json is _kt_compat._save_json_atomically
    finally:
        kt.src.utils.save_json = original


def test_a_reloaded_oracle_never_trains_an_ended_trial_again(tmp_path):
    """`Oracle.end_trial` saves oracle.json before it takes the trial off the ongoing list, so
    a chief killed in between (or one that never saved again) left finished trials listed as
    ongoing, and KerasTuner's reload queued them to be trained again."""
    hps = kt.HyperParameters()
    hps.Choice("units", [8, 16, 32, 64])

    def oracle():
        made = kt.oracles.RandomSearchOracle(
            objective=kt.Objective("score", "max"),
            max_trials=4,
            hyperparameters=hps,
            seed=1,
            max_retries_per_trial=1,
        )
        made._set_project_dir(str(tmp_path), "tuner")
        return made

    first = oracle()
    ended = {}
    for worker, status in (
        ("worker1", "COMPLETED"),
        ("worker2", "FAILED"),
        ("worker3", "INVALID"),
    ):
        trial = first.create_trial(worker)
        first.update_trial(trial.trial_id, {"score": 0.5})
        trial.status = status
        first.end_trial(trial)  # saved while still listed as ongoing: the kill lands here
        ended[status] = trial.trial_id

    second = oracle()
    second.reload()
    _kt_compat.requeue_orphaned_trials(second)
    # The INVALID trial has one retry left (max_retries_per_trial): it runs once more, then
    # only new trials come; the COMPLETED and FAILED ones never run again.
    handed = [second.create_trial(f"worker{n}") for n in range(1, 4)]
    assert [t.trial_id for t in handed][0] == ended["INVALID"]
    assert {t.trial_id for t in handed[1:]}.isdisjoint(ended.values())
    assert second.trials[ended["COMPLETED"]].status == "COMPLETED"
    assert second.trials[ended["FAILED"]].status == "FAILED"
