"""Similar-painting search on the real NGA sample: ingest, index, query, retrieval metrics."""

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artgan.cli import main
from artgan.errors import ArtganError
from artgan.paths import REPO_ROOT
from artgan.similar.extractors import HandcraftedExtractor, make_extractor
from artgan.similar.index import Index, build_index
from artgan.similar.nga import NgaCollection, load_collection
from artgan.similar.retrieval import evaluate_scores, query_metrics, random_expected

from support import TINY

TINY = [*TINY, "budget.max_trials=1"]


# ----------------------------------------------------------------------------- metrics by hand


def test_query_metrics_by_hand():
    # relevant at ranks 2 and 4 of 5; k = 2
    assert query_metrics([0, 1, 0, 1, 0], 2) == pytest.approx((1 / 2, 1 / 2, (1 / 2) / 2, 1 / 2))
    # relevant at ranks 1, 3: AP@3 = (1/1 + 2/3) / min(3, 2)
    assert query_metrics([1, 0, 1], 3) == pytest.approx((2 / 3, 1.0, (1 + 2 / 3) / 2, 1.0))
    # three relevant, none in the top 2; first at rank 4
    assert query_metrics([0, 0, 0, 1, 1, 1], 2) == pytest.approx((0, 0, 0, 1 / 4))


def test_evaluation_on_a_hand_checked_example():
    """Six items; items 0 and 4 are the same image file; item 5 has no labels (never a query).

    query  candidates (ranked)  relevant   P@2  R@2  AP@2  RR
      0    2 1 3 5 (4 = dup)    1 3        1/2  1/2  1/4   1/2
      1    3 2 4 0 5            0 3 4      1/2  1/3  1/2   1
      2    0 1 4 3 5            3          0    0    0     1/4
      3    0 1 2 4 5            0 1 2 4    1    1/2  1     1
      4    1 3 2 5 (0 = dup)    1 3        1    1    1     1
    """
    labels = [{"a"}, {"a"}, {"b"}, {"a", "b"}, {"a"}, set()]
    files = ["f0", "f1", "f2", "f3", "f0", "f5"]
    rankings = {
        0: [2, 1, 3, 5],
        1: [3, 2, 4, 0, 5],
        2: [0, 1, 4, 3, 5],
        3: [0, 1, 2, 4, 5],
        4: [1, 3, 2, 5],
        5: [0, 1, 2, 3, 4],
    }
    scores = np.full((6, 6), -100.0)
    for query, ranked in rankings.items():
        for position, candidate in enumerate(ranked):
            scores[query, candidate] = 10 - position
    scores[0, 4] = scores[4, 0] = 50  # the duplicate file would rank first if it were not excluded
    queries, means, chance = evaluate_scores(scores, labels, files, k=2)
    assert queries == 5
    assert means == pytest.approx([3 / 5, (1 / 2 + 1 / 3 + 0 + 1 / 2 + 1) / 5, 2.75 / 5, 3.75 / 5])
    expected = np.mean(
        [
            random_expected(4, 2, 2),
            random_expected(5, 3, 2),
            random_expected(5, 1, 2),
            random_expected(5, 4, 2),
            random_expected(4, 2, 2),
        ],
        axis=0,
    )
    assert chance == pytest.approx(expected)


def test_random_baseline_by_hand_and_by_enumeration():
    # N=4 candidates, R=2 relevant, k=2: 6 equally likely placements of the relevant pair
    # {1,2}:AP 1 {1,3}:.5 {1,4}:.5 {2,3}:.25 {2,4}:.25 {3,4}:0 -> 5/12; RR 1/2+1/3*1/2+1/6*1/3 = 13/18
    assert random_expected(4, 2, 2) == pytest.approx((1 / 2, 1 / 2, 5 / 12, 13 / 18))
    for n, r, k in [(6, 1, 3), (7, 3, 5), (5, 5, 2), (3, 1, 10), (8, 3, 8)]:
        placements = set(itertools.permutations([1] * r + [0] * (n - r)))
        brute = np.mean([query_metrics(p, k) for p in placements], axis=0)
        assert random_expected(n, r, k) == pytest.approx(brute), (n, r, k)


# ----------------------------------------------------------------------------- NGA ingest


@pytest.fixture(scope="module")
def nga(data_dir):
    return load_collection(data_dir / "nga")


def test_nga_ingest_on_the_real_sample(nga):
    table = nga.table
    assert len(table) == 333 and table["objectid"].is_unique
    assert nga.row(19)["artists"] == ("Andrea del Castagno",)
    assert nga.row(19)["nationality"] == ("Italian",)
    assert nga.row(1)["artists"] == ("Daddi, Bernardo",)
    assert nga.row(6)["artists"] == ("Puccio di Simone", "Allegretto Nuzi")
    assert nga.row(0)["style"] == ("Gothic",) and nga.row(0)["school"] == ("Florentine",)
    anonymous = nga.row(283)  # "Anonymous Artist" is not a hand: no artist id for relevance
    assert anonymous["artists"] == ("Anonymous Artist",) and anonymous["artist_ids"] == ()
    assert anonymous["related_artists"] == ("related artist: Giorgione",)
    assert nga.duplicates == [(6, 7, 8), (402, 403)]
    unlabelled = [p.objectid for p in nga.problems if "no rows in the NGA tables" in p.reason]
    assert len(unlabelled) == 9 and 200081 in unlabelled
    assert len(nga.problems) == 9  # nothing else is wrong with the real sample
    lines = nga.summary().splitlines()  # said once, with a count, not once per image
    assert lines[2:] == [
        "9 problem(s):",
        "  9 images: image has no rows in the NGA tables "
        "(kept, unlabelled): 200081.jpg, 223717.jpg, 224160.jpg, 224926.jpg, "
        "227080.jpg, ... (4 more)",
    ]


@pytest.fixture()
def small_nga(tmp_path, data_dir):
    """A real-schema NGA folder: 4 good images, id 7 without an image, a file that won't decode."""
    source = data_dir / "nga"
    root = tmp_path / "nga"
    (root / "images").mkdir(parents=True)
    ids = [19, 1, 5, 6, 7]
    for name in ("objects_constituents.csv", "objects_terms.csv"):
        table = pd.read_csv(source / name, dtype=str, keep_default_na=False)
        table[table["objectid"].astype(int).isin(ids)].to_csv(root / name, index=False)
    pd.read_csv(source / "constituents.csv", dtype=str, keep_default_na=False).to_csv(
        root / "constituents.csv", index=False
    )
    for objectid in ids[:-1]:
        (root / "images" / f"{objectid}.jpg").symlink_to(source / "images" / f"{objectid}.jpg")
    (root / "images" / "999.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def test_bad_images_and_missing_images_are_reported_not_fatal(small_nga):
    collection = load_collection(small_nga)
    assert list(collection.table["objectid"]) == [1, 5, 6, 19]
    reasons = {str(problem) for problem in collection.problems}
    assert any(r.startswith("object 7:") and "no image file" in r for r in reasons), reasons
    assert any("999.jpg: unreadable image" in r for r in reasons), reasons
    assert any("notes.txt" in r for r in reasons), reasons
    # Without the up-front decode check the same file is reported by the embedding step instead.
    unchecked = load_collection(small_nga, check_decode=False)
    update = build_index(
        unchecked, HandcraftedExtractor(), small_nga / "index.npz", progress=False
    )
    assert [problem.objectid for problem in update.failed] == [999]
    assert sorted(update.index.ids) == [1, 5, 6, 19]


def test_missing_table_and_wrong_columns_name_the_file(small_nga):
    (small_nga / "objects_terms.csv").write_text("termid,objectid,type,term\n1,19,Style,Gothic\n")
    with pytest.raises(ArtganError, match=r"objects_terms\.csv: missing column\(s\) termtype"):
        load_collection(small_nga)
    (small_nga / "constituents.csv").unlink()
    with pytest.raises(ArtganError, match=r"constituents\.csv: NGA table not found"):
        load_collection(small_nga)
    with pytest.raises(ArtganError, match="NGA data folder not found"):
        load_collection(small_nga / "nowhere")


def test_optional_objects_table_gives_titles_escaped_in_pages(small_nga, tmp_path):
    from artgan.similar.index import Hit
    from artgan.similar.pages import caption, write_gallery

    (small_nga / "objects.csv").write_text(
        'objectid,title\n19,"The Youthful David"\n1,"<script>x</script>"\n'
    )
    collection = load_collection(small_nga)
    assert collection.row(19)["title"] == "The Youthful David"
    row = collection.row(19)
    page = write_gallery(
        tmp_path / "g.html",
        "object 19",
        row["path"],
        caption(row),
        [Hit(1, 1, 0.5)],
        collection,
        "test",
    )
    html = page.read_text()
    assert (
        "The Youthful David" in html
        and "&lt;script&gt;x&lt;/script&gt;" in html
        and "<script>" not in html
    )


def test_titles_that_look_like_formulas_stay_text_in_the_csv(small_nga, tmp_path):
    """A title `=HYPERLINK(...)` went as-is into nga_images.csv: a live formula in a
    spreadsheet. Cells that start like a formula get a leading quote (OWASP)."""
    from artgan.similar.pages import write_evaluation

    (small_nga / "objects.csv").write_text(
        'objectid,title\n19,"=HYPERLINK(""http://evil"",""x"")"\n1,"@SUM(A1)"\n5,"-2+3"\n'
        '6,"A Title"\n'
    )
    frame = pd.DataFrame(
        [
            {
                "relevance": "artist",
                "extractor": "+cmd",
                "queries": 3,
                "precision": 0.5,
                "recall": 0.25,
                "map": -0.5,
                "mrr": 0.5,
            }
        ]
    )
    frame.attrs.update(k=5, images=4)
    write_evaluation(frame, load_collection(small_nga), tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "nga_images.csv", dtype=str)
    titles = table.set_index("objectid")["title"]
    assert titles.to_dict() == {
        "1": "'@SUM(A1)",
        "5": "'-2+3",
        "6": "A Title",
        "19": '\'=HYPERLINK("http://evil","x")',
    }
    evaluation = pd.read_csv(tmp_path / "out" / "evaluation.csv")
    assert evaluation["extractor"].tolist() == ["'+cmd"] and evaluation["map"].tolist() == [-0.5]


# ----------------------------------------------------------------------------- the index


class CountingExtractor(HandcraftedExtractor):
    def __init__(self):
        super().__init__()
        self.embedded = []

    def embed(self, paths, progress=True):
        self.embedded.extend(paths)
        return super().embed(paths, progress=False)


def subset(collection, ids):
    table = collection.table[collection.table["objectid"].isin(ids)].reset_index(drop=True)
    return NgaCollection(table, root=collection.root)


def test_index_update_embeds_only_new_images(small_nga, cache_dir):
    collection = load_collection(small_nga)
    path = small_nga / "index.npz"
    first = CountingExtractor()
    build_index(subset(collection, [1, 19]), first, path, progress=False)
    assert len(first.embedded) == 2
    second = CountingExtractor()
    update = build_index(collection, second, path, progress=False)
    assert sorted(p.rsplit("/", 1)[1] for p in second.embedded) == ["5.jpg", "6.jpg"]
    assert (update.embedded, update.reused, update.removed) == (2, 2, 0)
    assert list(Index.load(path).ids) == [1, 5, 6, 19]
    third = CountingExtractor()
    update = build_index(subset(collection, [5, 6, 19]), third, path, progress=False)
    assert third.embedded == [] and (update.reused, update.removed) == (3, 1)
    # vectors are unit length, and reused rows equal freshly computed ones
    fresh = HandcraftedExtractor().embed(list(collection.table["path"]), progress=False).vectors
    index = Index.load(path)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(index.vectors, fresh[1:], atol=1e-6)


def test_index_write_is_atomic(small_nga, cache_dir, monkeypatch):
    collection = load_collection(small_nga)
    path = small_nga / "index.npz"
    before = build_index(collection, HandcraftedExtractor(), path, progress=False).index
    original = path.read_bytes()

    def crash(target, **arrays):
        Path(target).write_bytes(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr("artgan.similar.index.np.savez", crash)
    with pytest.raises(OSError, match="No space left"):
        before.save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in small_nga.iterdir()) == [
        "constituents.csv",
        "images",
        "index.npz",
        "objects_constituents.csv",
        "objects_terms.csv",
    ]
    monkeypatch.undo()
    path.write_bytes(original[:100])  # damaged by something else: clear message, then rebuilt
    with pytest.raises(ArtganError, match="not a readable similarity index.*rebuild"):
        Index.load(path)
    update = build_index(collection, HandcraftedExtractor(), path, progress=False)
    assert "rebuilding" in update.note and len(Index.load(path)) == 4


# ----------------------------------------------------------------------------- end to end


def test_handcrafted_search_beats_random_on_the_real_sample(data_dir, cache_dir, tmp_path, capsys):
    index = tmp_path / "handcrafted.npz"
    assert main(["similar", "index", "--index", str(index)]) == 0
    assert "embedded 333" in capsys.readouterr().out
    assert (
        main(["similar", "evaluate", "--index", str(index), "--out", str(tmp_path / "report")])
        == 0
    )
    out = capsys.readouterr().out
    assert "random (expected)" in out and "6/7/8, 402/403" in out
    table = pd.read_csv(tmp_path / "report" / "evaluation.csv").set_index(
        ["relevance", "extractor"]
    )
    assert set(table.index.get_level_values(0)) == {"artist", "style", "theme"}
    ours, chance = table.loc[("artist", "handcrafted")], table.loc[("artist", "random (expected)")]
    assert ours["queries"] == chance["queries"] > 100
    assert ours["map"] > 3 * chance["map"] and ours["precision"] > 3 * chance["precision"]
    assert "<table>" in (tmp_path / "report" / "evaluation.html").read_text()

    gallery = tmp_path / "q.html"
    assert (
        main(["similar", "query", "6", "--k", "5", "--index", str(index), "--html", str(gallery)])
        == 0
    )
    out = capsys.readouterr().out
    assert "excluded exact copies of the query image: 7, 8" in out
    ranked = [
        int(line.split()[1]) for line in out.splitlines() if re.match(r"\s*\d+\s+\d+\s", line)
    ]
    assert len(ranked) == 5 and not {6, 7, 8} & set(ranked)
    assert gallery.read_text().count("data:image/jpeg;base64,") == 6

    assert main(["similar", "query", "123456789", "--index", str(index)]) == 2
    assert "not in the index" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory, data_dir):
    """An experiment YAML whose output holds a tiny trained model (as `make search` leaves it)."""
    from artgan.config.spec import load_experiment
    from artgan.tuning.tuner import run_search

    folder = tmp_path_factory.mktemp("experiment")
    text = (REPO_ROOT / "experiments" / "genre.yaml").read_text()
    text = re.sub(
        r"(?m)^search_space: .*$",
        f"search_space: {REPO_ROOT / 'search_spaces' / 'crnn.yaml'}",
        text,
    )
    text = re.sub(r"(?m)^output: .*$", f"output: {folder / 'run'}", text)
    yaml = folder / "tiny.yaml"
    yaml.write_text(text)
    run_search(load_experiment(yaml, TINY))
    return yaml


@pytest.mark.slow
def test_learned_extractor_end_to_end(tiny_experiment, data_dir, cache_dir, tmp_path, capsys):
    model = tiny_experiment.parent / "run" / "best" / "model_1.keras"
    extractor = make_extractor(str(tiny_experiment))  # experiment -> its best model
    assert extractor.description["path"] == str(model) and extractor.size == 32
    # by default a layer the model learned: a frozen backbone's conv map is the same in
    # every model built on it, and would score every such model alike
    assert extractor.layer == "features_lstm"
    learned, handcrafted = tmp_path / "learned.npz", tmp_path / "hand.npz"
    assert (
        main(["similar", "index", "--extractor", str(tiny_experiment), "--index", str(learned)])
        == 0
    )
    assert main(["similar", "index", "--index", str(handcrafted)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "similar",
                "evaluate",
                "--index",
                str(learned),
                "--index",
                str(handcrafted),
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "report" / "evaluation.csv")
    assert len(table) == 9 and set(table["extractor"]) == {
        "random (expected)",
        "handcrafted",
        extractor.name,
    }
    layers = dict(zip(table["extractor"], table["layer"]))  # said beside each extractor
    assert layers[extractor.name] == "features_lstm" and layers["handcrafted"] == "-"
    printed = capsys.readouterr().out.splitlines()
    assert any(extractor.name in line and " features_lstm " in line for line in printed)
    index = Index.load(learned)
    assert len(index) == 333 and np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-5)
    # A file outside the index is embedded with the index's own model and preprocessing.
    image = data_dir / "nga" / "images" / "402.jpg"
    assert main(["similar", "query", str(image), "--k", "3", "--index", str(learned)]) == 0
    out = capsys.readouterr().out
    assert "excluded exact copies of the query image: 402, 403" in out
    with pytest.raises(ArtganError, match="no trained model yet"):
        missing = tiny_experiment.with_name("untrained.yaml")
        missing.write_text(
            tiny_experiment.read_text().replace(str(model.parent.parent), str(tmp_path / "none"))
        )
        make_extractor(str(missing))


@pytest.mark.parametrize("bad_id", ["19.5", "12345678901234567890123"])
def test_object_ids_that_are_not_plain_integers_are_refused_in_one_line(small_nga, bad_id):
    table = small_nga / "objects_terms.csv"
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[1, "objectid"] = bad_id
    frame.to_csv(table, index=False)
    with pytest.raises(
        ArtganError, match=rf"objects_terms.csv: line 3: objectid '{re.escape(bad_id)}' is not"
    ):
        load_collection(small_nga)


def test_an_image_named_by_a_23_digit_id_is_skipped_and_reported(small_nga):
    (small_nga / "images" / "12345678901234567890123.jpg").symlink_to(
        small_nga / "images" / "1.jpg"
    )
    collection = load_collection(small_nga)
    assert list(collection.table["objectid"]) == [1, 5, 6, 19]
    assert any(
        "12345678901234567890123.jpg: file name is neither" in str(p) for p in collection.problems
    )


def test_published_images_without_an_object_are_left_out(small_nga):
    """The real published_images.csv may list images of no object: they are skipped, and a
    bad id is still reported at its line in the file."""
    root = small_nga
    uuid = "0a1b2c3d-0000-4000-8000-000000000001"
    (root / "published_images.csv").write_text(
        f"uuid,depictstmsobjectid\n{uuid.replace('1', '2')},\n{uuid},19\n"
    )
    (root / "images" / "19.jpg").rename(root / "images" / f"{uuid}.jpg")
    collection = load_collection(root, check_decode=False)
    assert 19 in set(collection.table["objectid"])
    (root / "published_images.csv").write_text("uuid,depictstmsobjectid\nx,\ny,19.5\n")
    with pytest.raises(
        ArtganError, match=r"published_images.csv: line 3: depictstmsobjectid '19.5'"
    ):
        load_collection(root, check_decode=False)
