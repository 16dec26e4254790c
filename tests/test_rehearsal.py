"""The stand-in WikiArt tree: the real label files (or a subset of their rows, byte for byte)
and a real painting hard-linked at every path they name; disk stated and checked first."""

import shutil
from collections import namedtuple

import pytest

from artgan.config.spec import experiment_file, load_experiment
from artgan.data import rehearsal
from artgan.data.labels import read_label_rows
from artgan.data.splits import TaskData
from artgan.errors import ArtganError


@pytest.fixture()
def few_paintings(tmp_path, data_dir, monkeypatch):
    """A data root with 6 real paintings (stand-ins are copied from it), 2 large stand-ins."""
    root = tmp_path / "data"
    for source in ("wikiart-style7/images/Baroque", "louvre-genre4/images/train/portrait"):
        (root / source).mkdir(parents=True)
        for path in sorted((data_dir / source).iterdir())[:3]:
            shutil.copyfile(path, root / source / path.name)
    monkeypatch.setattr(rehearsal, "LARGE_COUNT", 2)
    return root


def test_a_subset_tree_serves_every_task_as_the_download_would(
    tmp_path, data_dir, few_paintings, monkeypatch
):
    labels = data_dir / "artgan"
    made = rehearsal.rehearse(
        tmp_path / "tree", 0.02, labels=labels, data=few_paintings, progress=False
    )
    for name, count in made.rows.items():
        published = (labels / name).read_bytes().split(b"\n")
        kept = (made.labels / name).read_bytes().split(b"\n")
        assert set(kept) <= set(published) and count == len(read_label_rows(made.labels / name))
        assert 0.01 < count / len(read_label_rows(labels / name)) < 0.03
    assert (made.labels / "Artist" / "artist_train").read_text().startswith("(Path to image)")
    assert b"\r\n" in (made.labels / "Style" / "style_train.csv").read_bytes()

    large = sorted((tmp_path / "tree" / "standins" / "large").iterdir())
    from PIL import Image

    assert all(1000 <= max(Image.open(path).size) <= 2000 for path in large)
    files = list(made.images.rglob("*.jpg"))
    assert len(files) == made.paintings == made.made and made.copied == 0
    assert all(path.stat().st_nlink > 1 for path in files)  # hard links, not copies

    monkeypatch.setenv("WIKIART_IMAGES", str(made.images))  # as a user with the download
    monkeypatch.setenv("ARTGAN_LABELS", str(made.labels))
    for task in ("artist", "style-full", "genre-full"):
        data = TaskData.from_spec(load_experiment(experiment_file(task)))
        assert len(data.train) and len(data.val) and not data.train.skipped

    again = rehearsal.rehearse(
        tmp_path / "tree", 0.02, labels=labels, data=few_paintings, progress=False
    )
    assert again.already == made.paintings and again.made == 0


def test_a_larger_fraction_holds_the_smaller_one():
    paths = [f"Style/{i}.jpg" for i in range(2000)]
    small = {p for p in paths if rehearsal.in_subset(p, 0.1)}
    large = {p for p in paths if rehearsal.in_subset(p, 0.3)}
    assert small < large and 0.07 < len(small) / 2000 < 0.13


def test_refuses_short_disk_and_foreign_folders_before_writing(
    tmp_path, data_dir, few_paintings, monkeypatch
):
    usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ArtganError, match="^disk full: needs about"):
        rehearsal.rehearse(tmp_path / "tree", 0.01, labels=data_dir / "artgan", data=few_paintings)
    assert sorted(p.name for p in (tmp_path / "tree").iterdir()) == [rehearsal.MARKER]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(ArtganError, match="did not make it"):
        rehearsal.rehearse(foreign, 0.01, labels=data_dir / "artgan", data=few_paintings)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]
    with pytest.raises(ArtganError, match=r"`fraction` must be in \(0, 1\]"):
        rehearsal.rehearse(tmp_path / "tree", 0, labels=data_dir / "artgan", data=few_paintings)
