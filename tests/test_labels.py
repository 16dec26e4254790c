"""Label loading: the published ArtGAN files, the small real sets, and every bad input."""

import os
import re

import numpy as np
import pytest

from artgan.data import labels as labels_module
from artgan.data.labels import (
    LabelTable,
    SkippedRow,
    load_labels,
    read_class_file,
    read_label_rows,
    skipped_report,
    stratified_rows,
)
from artgan.errors import ArtganError

STYLE = ("artgan/Style", "style_class.txt", 27)
GENRE = ("artgan/Genre", "genre_class", 10)
ARTIST = ("artgan/Artist", "artist_class", 23)

# (label file, rows, first path, first label, first line)
ARTGAN_FILES = {
    "style_train": (
        STYLE,
        "style_train.csv",
        57025,
        "Impressionism/edgar-degas_landscape-on-the-orne.jpg",
        12,
        1,
    ),
    "style_val": (
        STYLE,
        "style_val.csv",
        24421,
        "Impressionism/edgar-degas_dancers-on-set-1880.jpg",
        12,
        1,
    ),
    "genre_train": (
        GENRE,
        "genre_train.csv",
        45503,
        "Northern_Renaissance/hieronymus-bosch_st-jacques-and-the-magician-hermogenes.jpg",
        7,
        1,
    ),
    "genre_val": (
        GENRE,
        "genre_val.csv",
        19492,
        "Rococo/william-hogarth_w-a-rake-s-progress-the-gaming-house-1735.jpg",
        2,
        1,
    ),
    "artist_train": (
        ARTIST,
        "artist_train",
        13346,
        "Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg",
        22,
        3,
    ),
    "artist_val": (
        ARTIST,
        "artist_val",
        5706,
        "Impressionism/claude-monet_water-lilies-6.jpg",
        4,
        3,
    ),
}

# genre_val.csv lists one painting twice with different labels: lines 6088 (1) and 8094 (4)
GENRE_VAL_DUPLICATE = "Post_Impressionism/maurice-de-vlaminck_the-village.jpg"


def line_listed(message, line):
    """True when an error message lists `line` as a bad row (not just a substring)."""
    return re.search(rf"\bline {line}:", message) is not None


# ------------------------------------------------------------ published ArtGAN files


@pytest.mark.parametrize("name", ARTGAN_FILES)
def test_artgan_label_rows_exact(data_dir, name):
    (folder, _, _), file, rows, first_path, first_label, first_line = ARTGAN_FILES[name]
    frame = read_label_rows(data_dir / folder / file)
    assert len(frame) == rows
    assert list(frame.columns) == ["path", "label", "line"]
    assert frame["label"].dtype == np.int64
    assert frame.iloc[0][["path", "label", "line"]].tolist() == [
        first_path,
        first_label,
        first_line,
    ]
    # line numbers are the file's own: no row is lost or shifted by CRLF / header handling
    assert frame["line"].iloc[-1] == first_line + rows - 1


@pytest.mark.parametrize("name", [n for n in ARTGAN_FILES if n != "genre_val"])
def test_artgan_load_labels_without_images(data_dir, name):
    (folder, class_file, classes), file, rows, first_path, first_label, _ = ARTGAN_FILES[name]
    table = load_labels(data_dir / folder / file, data_dir / folder / class_file)
    assert len(table) == rows
    assert table.num_classes == classes
    assert table.image_root is None and table.skipped == ()
    assert table.frame["label"].nunique() == classes  # every class is used
    assert (table.class_counts() > 0).all()
    assert table.frame["path"].iloc[0] == first_path
    assert table.labels()[0] == first_label


def test_artgan_genre_val_duplicate_is_reported_with_both_lines(data_dir):
    folder = data_dir / "artgan/Genre"
    with pytest.raises(ArtganError) as info:
        load_labels(folder / "genre_val.csv", folder / "genre_class")
    message = str(info.value)
    assert "genre_val.csv" in message and GENRE_VAL_DUPLICATE in message
    assert line_listed(message, 8094) and "line 6088" in message

    table = load_labels(folder / "genre_val.csv", folder / "genre_class", on_error="skip")
    assert len(table) == 19491
    assert [(row.line, row.path) for row in table.skipped] == [(8094, GENRE_VAL_DUPLICATE)]
    kept = table.frame[table.frame["path"] == GENRE_VAL_DUPLICATE]
    assert kept[["label", "line"]].values.tolist() == [[1, 6088]]  # the first one is kept


def test_artgan_class_files(data_dir):
    style = read_class_file(data_dir / "artgan/Style/style_class.txt")
    genre = read_class_file(data_dir / "artgan/Genre/genre_class")
    artist = read_class_file(data_dir / "artgan/Artist/artist_class")
    assert (len(style), len(genre), len(artist)) == (27, 10, 23)
    assert (style[0], style[12], style[26]) == (
        "Abstract_Expressionism",
        "Impressionism",
        "Ukiyo_e",
    )
    assert (genre[2], genre[9]) == ("genre_painting", "still_life")
    assert (artist[0], artist[22]) == ("Albrecht_Durer", "Vincent_van_Gogh")


def test_artgan_style_train_loads_fast(data_dir):
    import time

    start = time.perf_counter()
    load_labels(
        data_dir / "artgan/Style/style_train.csv", data_dir / "artgan/Style/style_class.txt"
    )
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------ small real sets with images

SMALL_SETS = {
    "wikiart-style7 train": (
        "wikiart-style7",
        "style_train.csv",
        "style_class.txt",
        4200,
        {3: 600, 4: 600, 9: 600, 12: 600, 20: 600, 23: 600, 24: 600},
    ),
    "wikiart-style7 val": (
        "wikiart-style7",
        "style_val.csv",
        "style_class.txt",
        1050,
        {3: 150, 4: 150, 9: 150, 12: 150, 20: 150, 23: 150, 24: 150},
    ),
    "louvre-genre4 train": (
        "louvre-genre4",
        "genre_train.csv",
        "genre_class",
        950,
        {2: 210, 4: 250, 6: 250, 9: 240},
    ),
    "louvre-genre4 val": (
        "louvre-genre4",
        "genre_val.csv",
        "genre_class",
        200,
        {2: 50, 4: 50, 6: 50, 9: 50},
    ),
    "web-genre-wild": (
        "web-genre-wild",
        "genre_wild.csv",
        "genre_class",
        71,
        {2: 4, 4: 9, 7: 1, 9: 57},
    ),
    "web-genre-wild provenance": (
        "web-genre-wild",
        "provenance.csv",
        "genre_class",
        71,
        {2: 4, 4: 9, 7: 1, 9: 57},
    ),
}


@pytest.mark.parametrize("name", SMALL_SETS)
def test_small_real_sets_with_images(data_dir, name):
    folder, file, class_file, rows, counts = SMALL_SETS[name]
    root = data_dir / folder
    table = load_labels(root / file, root / class_file, root / "images")
    assert len(table) == rows and table.skipped == ()
    assert table.image_root == root / "images"
    used = table.class_counts()
    assert used[used > 0].to_dict() == counts
    paths = table.image_paths()
    assert len(paths) == rows and all(path.is_file() for path in paths)


def test_header_csv_matches_headerless_file(data_dir):
    """provenance.csv (image_path,class_index,...) holds the same rows as genre_wild.csv."""
    root = data_dir / "web-genre-wild"
    with_header = read_label_rows(root / "provenance.csv")
    plain = read_label_rows(root / "genre_wild.csv")
    assert with_header[["path", "label"]].equals(plain[["path", "label"]])
    assert with_header["line"].iloc[0] == 2  # line 1 is the header


# ------------------------------------------------------------ a small dataset on tmp_path


@pytest.fixture()
def tiny(tmp_path):
    """Three classes and three (empty) images: enough to exercise every check."""
    (tmp_path / "classes.txt").write_text("0 cat\n1 dog\n2 owl\n")
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        (images / name).write_bytes(b"")
    return tmp_path


def write(folder, text, name="labels.csv", encoding="utf-8"):
    path = folder / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def load(folder, label_file, **kwargs):
    return load_labels(label_file, folder / "classes.txt", folder / "images", **kwargs)


def test_header_csv_with_reordered_and_extra_columns(tiny):
    text = 'note,class_index,image_path\n"has, comma",1,a.jpg\nplain,2,sub/c.jpg\n'
    table = load(tiny, write(tiny, text))
    assert table.frame.values.tolist() == [["a.jpg", 1, 2], ["sub/c.jpg", 2, 3]]


def test_header_without_class_index_is_an_error(tiny):
    with pytest.raises(ArtganError, match=r"labels\.csv:1: .*no 'class_index'"):
        load(tiny, write(tiny, "image_path,label\na.jpg,1\n"), on_error="skip")


def test_bom_crlf_whitespace_and_trailing_blank_lines(tiny):
    text = "\ufeff a.jpg , 0 \r\nsub/c.jpg,2\r\n\r\n  \r\n\r\n"
    table = load(tiny, write(tiny, text))
    assert table.frame.values.tolist() == [["a.jpg", 0, 1], ["sub/c.jpg", 2, 2]]
    header = load(tiny, write(tiny, "\ufeffimage_path,class_index\r\nb.jpg,1\r\n"))
    assert header.frame.values.tolist() == [["b.jpg", 1, 2]]


def test_bom_in_class_file(tiny):
    write(tiny, "\ufeff0 cat\r\n1 dog\r\n\r\n", name="classes")
    assert read_class_file(tiny / "classes") == ["cat", "dog"]


def test_artist_layout_line_numbers(tiny):
    text = "(Path to image),, (Groundtruth class) \n\na.jpg,,0\nb.jpg,1\nsub/c.jpg,,2\nb.jpg,x,1\n"
    with pytest.raises(ArtganError) as info:
        load(tiny, write(tiny, text, name="artist_x"))
    message = str(info.value)
    assert "artist_x" in message and line_listed(message, 4) and line_listed(message, 6)
    table = load(tiny, tiny / "artist_x", on_error="skip")
    assert table.frame["line"].tolist() == [3, 5]
    assert [row.line for row in table.skipped] == [4, 6]
    assert all(
        row.reason.startswith("malformed line: expected 'path,,label'") for row in table.skipped
    )


# each case: label file text, the bad line, the reason's start, paths kept with on_error="skip"
BAD_ROWS = {
    "too many fields": ("a.jpg,0\nb.jpg,1,2\n", 2, "malformed line: expected 2 fields", ["a.jpg"]),
    "too few fields": ("a.jpg,0\nb.jpg\n", 2, "malformed line: expected 2 fields", ["a.jpg"]),
    "non-integer label": ("a.jpg,0\nb.jpg,dog\n", 2, "malformed line: label 'dog'", ["a.jpg"]),
    "float label": ("a.jpg,0\nb.jpg,1.0\n", 2, "malformed line: label '1.0'", ["a.jpg"]),
    "empty path": ("a.jpg,0\n,1\n", 2, "malformed line: empty image path", ["a.jpg"]),
    "label too large": ("a.jpg,0\nb.jpg,3\n", 2, "label out of range: 3 not in 0..2", ["a.jpg"]),
    "negative label": ("a.jpg,-1\nb.jpg,1\n", 1, "label out of range: -1", ["b.jpg"]),
    "duplicate path": (
        "a.jpg,0\nb.jpg,1\na.jpg,2\n",
        3,
        "duplicate path: first listed on line 1 (label 0, here 2)",
        ["a.jpg", "b.jpg"],
    ),
    "absolute path": ("a.jpg,0\n/etc/passwd,1\n", 2, "unsafe path: absolute", ["a.jpg"]),
    "windows absolute path": ("a.jpg,0\nC:\\x.jpg,1\n", 2, "unsafe path: absolute", ["a.jpg"]),
    "parent directory": ("a.jpg,0\n../images/b.jpg,1\n", 2, "unsafe path: '..'", ["a.jpg"]),
    "parent inside path": ("a.jpg,0\nsub/../../x.jpg,1\n", 2, "unsafe path: '..'", ["a.jpg"]),
    "missing image": ("a.jpg,0\nnope.jpg,1\n", 2, "image file not found: ", ["a.jpg"]),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_row_raises_naming_file_and_line(tiny, case):
    text, line, reason, _ = BAD_ROWS[case]
    with pytest.raises(ArtganError) as info:
        load(tiny, write(tiny, text))
    message = str(info.value)
    assert "labels.csv" in message
    assert line_listed(message, line) and reason in message


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_row_is_skipped_and_recorded(tiny, case):
    text, line, reason, kept = BAD_ROWS[case]
    table = load(tiny, write(tiny, text), on_error="skip")
    assert table.frame["path"].tolist() == kept
    assert len(table.skipped) == 1
    skipped = table.skipped[0]
    assert skipped.line == line and skipped.reason.startswith(reason)


def test_missing_image_reason_names_absolute_path(tiny):
    table = load(tiny, write(tiny, "a.jpg,0\nnope.jpg,1\n"), on_error="skip")
    assert table.skipped == (
        SkippedRow(2, "nope.jpg", f"image file not found: {tiny / 'images' / 'nope.jpg'}"),
    )


def test_a_row_failing_two_checks_is_reported_once(tiny):
    table = load(tiny, write(tiny, "a.jpg,0\n../x.jpg,9\n"), on_error="skip")
    assert [row.reason.split(":")[0] for row in table.skipped] == ["unsafe path"]


def test_read_label_rows_raises_on_malformed_line(tiny):
    with pytest.raises(ArtganError) as info:
        read_label_rows(write(tiny, "a.jpg,0\nb.jpg,0\nc.jpg,x\n"))
    assert "labels.csv" in str(info.value) and line_listed(str(info.value), 3)
    # out-of-range labels and duplicates are load_labels' business, not the parser's
    frame = read_label_rows(write(tiny, "a.jpg,99\na.jpg,99\n"))
    assert frame["label"].tolist() == [99, 99]


def test_error_lists_ten_lines_then_a_count(tiny):
    text = "a.jpg,0\n" + "".join(f"x{i}.jpg,7\n" for i in range(25))
    with pytest.raises(ArtganError) as info:
        load(tiny, write(tiny, text))
    message = str(info.value)
    assert "25 bad rows" in message and "... and 15 more" in message
    assert line_listed(message, 11) and not line_listed(message, 12)


def test_no_image_root_skips_disk_checks_but_validates_labels(tiny):
    label_file = write(tiny, "nope.jpg,0\nalso-nope.jpg,1\n")
    table = load_labels(label_file, tiny / "classes.txt")
    assert len(table) == 2 and table.image_root is None
    with pytest.raises(ArtganError, match="no image root"):
        table.image_paths()
    with pytest.raises(ArtganError, match="line 1: 'a.jpg': label out of range"):
        load_labels(write(tiny, "a.jpg,5\n"), tiny / "classes.txt")


def test_check_files_false_keeps_missing_images(tiny):
    table = load(tiny, write(tiny, "a.jpg,0\nnope.jpg,1\n"), check_files=False)
    assert table.image_paths()[1] == tiny / "images" / "nope.jpg"


# ------------------------------------------------------------ errors whatever on_error says


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_missing_files_are_errors(tiny, on_error):
    label_file = write(tiny, "a.jpg,0\n")
    with pytest.raises(ArtganError, match=r"nothere\.csv: file not found"):
        load_labels(tiny / "nothere.csv", tiny / "classes.txt", on_error=on_error)
    with pytest.raises(ArtganError, match=r"noclasses: file not found"):
        load_labels(label_file, tiny / "noclasses", on_error=on_error)


def test_a_fifo_or_folder_as_label_or_class_file_is_named_for_what_it_is(tiny):
    """A FIFO given as a label or class file used to be reported as "file not found"."""
    from artgan.config.spec import load_experiment

    label_file = write(tiny, "a.jpg,0\n")
    os.mkfifo(tiny / "fifo")
    with pytest.raises(
        ArtganError,
        match=r"fifo: file is not a regular file \(a FIFO, device "
        r"or socket\); give a regular file$",
    ):
        load_labels(label_file, tiny / "fifo")
    with pytest.raises(ArtganError, match=r"fifo: file is not a regular file"):
        load_labels(tiny / "fifo", tiny / "classes.txt")
    with pytest.raises(ArtganError, match=r"fifo: file is not a regular file"):
        load_experiment(tiny / "fifo")
    with pytest.raises(ArtganError, match=rf"{re.escape(str(tiny))}: file is a folder"):
        load_labels(tiny, tiny / "classes.txt")


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_unknown_format_is_an_error(tiny, on_error):
    with pytest.raises(ArtganError, match=r"labels\.csv:2: unknown label file format"):
        load(tiny, write(tiny, "\na.jpg\t0\nb.jpg\t1\n"), on_error=on_error)


@pytest.mark.parametrize("text", ["", "\r\n\n  \n", "image_path,class_index\n"])
def test_file_without_rows_is_an_error(tiny, text):
    with pytest.raises(ArtganError, match=r"labels\.csv: (empty label file|no usable label rows)"):
        load(tiny, write(tiny, text), on_error="skip")


def test_all_rows_bad_is_an_error_even_when_skipping(tiny):
    with pytest.raises(ArtganError, match=r"labels\.csv: no usable label rows \(2 skipped\)"):
        load(tiny, write(tiny, "x.jpg,0\ny.jpg,9\n"), on_error="skip")


def test_not_utf8_names_the_line(tiny):
    with pytest.raises(ArtganError, match=r"labels\.csv:2: not UTF-8"):
        load(tiny, write(tiny, b"a.jpg,0\n\xff.jpg,1\n"))


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_missing_image_root_is_one_error_without_stat_per_row(
    data_dir, tmp_path, monkeypatch, on_error
):
    def no_stat(path):
        raise AssertionError("stat called on a row although the image root is missing")

    monkeypatch.setattr(labels_module.os.path, "isfile", no_stat)
    folder = data_dir / "artgan/Style"
    with pytest.raises(
        ArtganError, match=r"style_train\.csv: image root .*nowhere does not exist"
    ):
        load_labels(
            folder / "style_train.csv",
            folder / "style_class.txt",
            tmp_path / "nowhere",
            on_error=on_error,
        )


def test_on_error_must_be_known(tiny):
    with pytest.raises(ValueError, match="on_error"):
        load(tiny, write(tiny, "a.jpg,0\n"), on_error="ignore")


# ------------------------------------------------------------ class files

BAD_CLASS_FILES = {
    "index out of order": ("0 cat\n2 dog\n", 2, "class index 2 out of order, expected 1"),
    "starts at one": ("1 cat\n2 dog\n", 1, "class index 1 out of order, expected 0"),
    "no name": ("0 cat\n1\n", 2, "expected '<index> <Name>'"),
    "index not a number": ("0 cat\ndog 1\n", 2, "expected '<index> <Name>'"),
    "repeated name": ("0 cat\n1 dog\n2 cat\n", 3, "class name 'cat' repeats line 1"),
}


@pytest.mark.parametrize("case", BAD_CLASS_FILES)
def test_bad_class_file(tmp_path, case):
    text, line, reason = BAD_CLASS_FILES[case]
    with pytest.raises(ArtganError, match=rf"class_file:{line}: {re.escape(reason)}"):
        read_class_file(write(tmp_path, text, name="class_file"))


def test_empty_class_file(tmp_path):
    with pytest.raises(ArtganError, match="no classes found"):
        read_class_file(write(tmp_path, "\n\n", name="class_file"))


def test_class_names_may_contain_spaces(tmp_path):
    path = write(tmp_path, "0  still life \n1 portrait\n", name="class_file.txt")
    assert read_class_file(path) == ["still life", "portrait"]


# ------------------------------------------------------------ LabelTable helpers


@pytest.fixture(scope="module")
def style_train(data_dir):
    folder = data_dir / "artgan/Style"
    return load_labels(folder / "style_train.csv", folder / "style_class.txt")


def test_sample_is_deterministic_and_stratified(style_train):
    first = style_train.sample(100, seed=7)
    again = style_train.sample(100, seed=7)
    other = style_train.sample(100, seed=8)
    assert len(first) == 100
    assert first.frame.equals(again.frame)
    assert not first.frame["path"].equals(other.frame["path"])
    assert first.frame["line"].is_monotonic_increasing  # file order kept
    full = style_train.class_counts()
    expected = full / full.sum() * 100
    got = first.class_counts()
    assert (got >= 1).all()  # even Action_painting (69 of 57,025, 0.12 expected) keeps a row
    assert ((got - expected).abs() <= 1).all()  # proportions kept to within one row
    assert (style_train.sample(27, seed=0).class_counts() == 1).all()  # one per class
    assert first.frame["path"].isin(style_train.frame["path"]).all()


def test_stratified_rows_of_any_labels(style_train):
    """What reports sample large splits with: stratified, reproducible, everything when small."""
    labels = style_train.labels()
    rows = stratified_rows(labels, 2000, seed=3)
    assert np.array_equal(rows, stratified_rows(labels, 2000, seed=3))
    assert len(rows) == 2000 and (np.diff(rows) > 0).all()
    expected = np.bincount(labels, minlength=27) / len(labels) * 2000
    got = np.bincount(labels[rows], minlength=27)
    assert (np.abs(got - expected) <= 1).all() and (got >= 1).all()
    assert not np.array_equal(rows, stratified_rows(labels, 2000, seed=4))
    sampled = style_train.sample(2000, seed=3).frame["path"]
    assert sampled.tolist() == style_train.frame["path"].iloc[rows].tolist()
    assert np.array_equal(stratified_rows(labels[:50], 2000, seed=3), np.arange(50))


def test_sample_small_tables_and_tiny_budgets(style_train):
    assert style_train.sample(len(style_train), seed=0) is style_train
    few = style_train.sample(5, seed=0)
    assert len(few) == 5 and few.frame["path"].is_unique
    with pytest.raises(ValueError):
        style_train.sample(0, seed=0)


def test_subset_labels_and_counts(tiny):
    table = load(tiny, write(tiny, "a.jpg,0\nb.jpg,2\nsub/c.jpg,2\nnope.jpg,1\n"), on_error="skip")
    part = table.subset([2, 0])
    assert part.frame["path"].tolist() == ["sub/c.jpg", "a.jpg"]
    assert part.labels().dtype == np.int64 and part.labels().tolist() == [2, 0]
    assert part.skipped == table.skipped and len(part.skipped) == 1
    assert part.image_paths() == [tiny / "images/sub/c.jpg", tiny / "images/a.jpg"]
    counts = table.class_counts()
    assert counts.index.tolist() == [0, 1, 2] and counts.tolist() == [1, 0, 2]
    assert isinstance(part, LabelTable) and repr(part).startswith("LabelTable(labels.csv: 2 rows")


def test_skipped_report_counts_then_lists_every_row(tiny):
    text = "a.jpg,0\nx.jpg,0\ny.jpg,1\nb.jpg,7\nb.jpg,1\n"
    table = load(tiny, write(tiny, text), on_error="skip")
    report = skipped_report(table)
    lines = report.splitlines()
    assert lines[0] == "3 rows skipped:"
    assert re.fullmatch(r"\s+2\s+image file not found", lines[1])
    assert re.fullmatch(r"\s+1\s+label out of range", lines[2])
    label_file = tiny / "labels.csv"
    assert lines[3] == f"{label_file}:2  x.jpg  image file not found: {tiny / 'images/x.jpg'}"
    assert lines[4].startswith(f"{label_file}:3  y.jpg  image file not found")
    assert lines[5] == f"{label_file}:4  b.jpg  label out of range: 7 not in 0..2"
    assert len(lines) == 6
    # a bare sequence of rows works too, numbered by line
    assert skipped_report(table.skipped).splitlines()[3].startswith("line 2  x.jpg")
    assert skipped_report(()) == "no rows skipped"


def test_links_out_of_the_image_root_are_refused(tiny, tmp_path):
    """The path check follows links: a file or folder linked from inside the image root to
    outside it is not read."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    secret = outside / "secret.jpg"
    secret.write_bytes((tiny / "images" / "a.jpg").read_bytes())
    (outside / "folder" / "x.jpg").write_bytes(secret.read_bytes())
    (tiny / "images" / "link.jpg").symlink_to(secret)
    (tiny / "images" / "linked").symlink_to(outside / "folder")
    (tiny / "images" / "inside.jpg").symlink_to(tiny / "images" / "a.jpg")  # stays inside: fine
    table = load(
        tiny, write(tiny, "a.jpg,0\nlink.jpg,1\nlinked/x.jpg,1\ninside.jpg,2\n"), on_error="skip"
    )
    assert table.frame["path"].tolist() == ["a.jpg", "inside.jpg"]
    assert [row.line for row in table.skipped] == [2, 3]
    assert all(
        row.reason.startswith("unsafe path: ") and "outside the image root" in row.reason
        for row in table.skipped
    )


def test_special_files_are_not_images(tiny):
    os.mkfifo(tiny / "images" / "pipe.jpg")
    table = load(tiny, write(tiny, "a.jpg,0\npipe.jpg,1\n"), on_error="skip")
    assert [row.reason.split(":")[0] for row in table.skipped] == ["not a regular file"]


def test_a_huge_label_value_is_a_bad_row_not_an_overflow(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("0 a\n1 b\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("a.jpg,1\nb.jpg,99999999999999999999999\nc.jpg," + "9" * 100_000 + "\n")
    with pytest.raises(ArtganError, match=r"2 bad rows.*\n.*line 2: 'b.jpg': .*far too large"):
        load_labels(labels, classes, None)
    table = load_labels(labels, classes, None, on_error="skip")
    assert len(table) == 1 and [row.line for row in table.skipped] == [2, 3]
