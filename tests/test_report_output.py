"""The report's output folder: artgan removes only what an earlier report of its own wrote."""

import json
import os

import pytest

from artgan.errors import ArtganError
from artgan.report.output import MARKER, Writer


def write_report(folder, names):
    """What a report does with its Writer: its files, then metrics.json listing them."""
    writer = Writer(folder)
    for name in names:
        writer.text(name, name)
    writer.manifest({})
    return writer


def test_a_metrics_file_in_a_foreign_folder_deletes_nothing(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_text("my thesis")
    (folder / "metrics.json").write_text(json.dumps({"files": ["precious.txt"]}))
    with pytest.raises(
        ArtganError, match=f"holds metrics.json, precious.txt but no {MARKER} file"
    ):
        Writer(folder)
    assert (folder / "precious.txt").read_text() == "my thesis"
    assert not (folder / MARKER).exists()


def test_a_rerun_removes_only_what_the_last_report_wrote(tmp_path):
    folder = tmp_path / "report"
    write_report(folder, ["report.html", "old_figure.png"])
    assert (folder / MARKER).read_text().split() == [
        "report.html",
        "old_figure.png",
        "metrics.json",
    ]
    (folder / "notes.txt").write_text("the user's own notes")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the report's")
    (folder / "old_figure.png").unlink()
    os.symlink(outside, folder / "old_figure.png")  # a link where the report wrote a file
    manifest = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**manifest, "files": ["notes.txt"]}))

    write_report(folder, ["report.html"])
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER,
        "metrics.json",
        "notes.txt",
        "report.html",
    ]
    assert outside.read_text() == "not the report's"  # the link went, not its target
    assert (folder / "notes.txt").read_text() == "the user's own notes"


def test_a_file_the_report_did_not_write_is_not_replaced(tmp_path):
    folder = tmp_path / "report"
    write_report(folder, ["report.html"])
    (folder / "leaderboard.csv").write_text("someone else's table")
    writer = Writer(folder)
    with pytest.raises(ArtganError, match="leaderboard.csv: exists and artgan did not write it"):
        writer.text("new", "leaderboard.csv")
    assert (folder / "leaderboard.csv").read_text() == "someone else's table"


def test_a_linked_marker_is_refused(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (tmp_path / "list").write_text("precious.txt\n")
    (folder / "precious.txt").write_text("keep")
    os.symlink(tmp_path / "list", folder / MARKER)
    with pytest.raises(ArtganError, match="a link or folder, not a file artgan wrote"):
        Writer(folder)
    assert (folder / "precious.txt").read_text() == "keep"
