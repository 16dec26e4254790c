"""The KerasTuner private parts artgan uses (all in artgan/tuning/_kt_compat.py) still exist."""

import keras_tuner as kt

from artgan.tuning import _kt_compat


def test_kerastuner_is_a_tested_version():
    assert kt.__version__ in _kt_compat.TESTED_VERSIONS, (
        f"keras-tuner {kt.__version__} is untested: read artgan/tuning/_kt_compat.py against it, "
        "then add it to TESTED_VERSIONS")


def test_every_private_part_used_still_exists():
    assert _kt_compat.missing_private_parts() == []


def test_the_guard_notices_a_missing_part(monkeypatch):
    monkeypatch.delattr(kt.src.distribute.oracle_chief, "exit_chief")
    monkeypatch.delattr(kt.src.engine.oracle.Oracle, "_record_values")
    assert _kt_compat.missing_private_parts() == [
        "keras_tuner.src.distribute.oracle_chief.exit_chief",
        "keras_tuner.src.engine.oracle.Oracle._record_values"]


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
