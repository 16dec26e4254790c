"""Saved model files are checked before anything in them is read: zip bombs, folders, pipes."""

import json
import os
import tracemalloc
import zipfile

import pytest

from artgan.cli import main
from artgan.errors import ArtganError
from artgan.model import saved
from artgan.model.saved import read_metadata

METADATA = {"class_names": ["a", "b"], "input_size": 8, "resize": "letterbox"}
ZEROS = bytes(32 << 20)  # 32 MiB that deflate to about 32 kB


def model_file(path, members):
    """A `.keras`-shaped zip; `(data, compress)` members are deflated, plain bytes stored."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            data, kind = data if isinstance(data, tuple) else (data, zipfile.ZIP_STORED)
            archive.writestr(name, data, compress_type=kind)
    return path


def peak_allocation(function, *args):
    """(exception raised, most bytes Python held at once while `function` ran)."""
    tracemalloc.start()
    try:
        function(*args)
        raised = None
    except ArtganError as error:
        raised = error
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return raised, peak


@pytest.mark.parametrize("member", ["artgan.json", "model.weights.h5"])
def test_a_bomb_member_is_refused_before_it_is_read(tmp_path, member, capsys):
    members = {
        "config.json": b"{}",
        "artgan.json": json.dumps(METADATA).encode(),
        member: (ZEROS, zipfile.ZIP_DEFLATED),
    }
    bomb = model_file(tmp_path / "bomb.keras", members)
    assert bomb.stat().st_size < 100_000
    error, peak = peak_allocation(read_metadata, bomb)
    assert str(error) == f"{bomb}: refused: entry {member!r} inflates " + (
        f"{zipfile.ZipFile(bomb).getinfo(member).compress_size} to {len(ZEROS)} bytes (zip bomb?)"
    )
    assert peak < 4 << 20  # nothing inflated
    assert main(["predict", str(bomb), str(tmp_path / "x.jpg")]) == 2  # before Keras sees it
    assert capsys.readouterr().err.strip() == f"artgan: error: {error}"


def test_metadata_and_models_over_their_limits_are_refused(tmp_path, monkeypatch):
    big = model_file(tmp_path / "big.keras", {"artgan.json": b" " * (2 << 20)})  # stored
    with pytest.raises(
        ArtganError,
        match=r"refused: its artgan.json inflates to 2097152 bytes, "
        r"more than the limit of 1048576",
    ):
        read_metadata(big)
    monkeypatch.setattr(saved, "MAX_MODEL_BYTES", 1000)
    small = model_file(
        tmp_path / "m.keras",
        {"artgan.json": json.dumps(METADATA).encode(), "model.weights.h5": b"w" * 2000},
    )
    with pytest.raises(
        ArtganError, match="refused: its entries inflate to 2.* more than the limit of 1000"
    ):
        read_metadata(small)


def test_a_folder_or_pipe_named_like_a_model_is_named_for_what_it_is(tmp_path, capsys):
    (tmp_path / "model.keras").mkdir()
    assert main(["predict", str(tmp_path / "model.keras"), "x.jpg"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"artgan: error: {tmp_path / 'model.keras'}: is a directory, not a model file (.keras)"
    )
    os.mkfifo(tmp_path / "pipe.keras")
    with pytest.raises(ArtganError, match="pipe.keras: not a regular file"):
        read_metadata(tmp_path / "pipe.keras")
    with pytest.raises(ArtganError, match="nope.keras: model file not found"):
        read_metadata(tmp_path / "nope.keras")
    assert (
        read_metadata(
            model_file(tmp_path / "ok.keras", {"artgan.json": json.dumps(METADATA).encode()})
        )
        == METADATA
    )
