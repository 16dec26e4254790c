"""Label tables + cache -> Keras batches, on real and deliberately broken images."""

import shutil

import numpy as np
import pytest

from artgan.data.generators import ImageLabelGenerator
from artgan.data.labels import load_labels
from artgan.data.splits import load_split_images
from artgan.errors import ArtganError


def wild_table(data_dir):
    root = data_dir / "web-genre-wild"
    return load_labels(root / "genre_wild.csv", root / "genre_class", root / "images")


def test_messy_web_images_all_reach_the_generator(data_dir, cache_dir):
    """71 real web images: WebP/GIF/PNG named .jpg, 18 px to 6848x4436."""
    split = load_split_images(wild_table(data_dir), 32, progress=False)
    assert len(split) == 71 and split.skipped == []
    generator = ImageLabelGenerator(split, batch_size=16, shuffle=True, augment=True, seed=1)
    assert len(generator) == 5
    seen = []
    for index in range(len(generator)):
        images, labels = generator[index]
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        assert 0.0 <= images.min() and images.max() <= 1.0
        seen.append(labels)
    assert sorted(np.concatenate(seen)) == sorted(split.labels)  # each image once per epoch


def test_generator_shuffles_between_epochs_and_is_ordered_for_eval(data_dir, cache_dir):
    split = load_split_images(wild_table(data_dir), 32, progress=False)
    evaluation = ImageLabelGenerator(split, batch_size=71)
    images, labels = evaluation[0]
    np.testing.assert_array_equal(labels, split.labels)
    np.testing.assert_allclose(images, split.pixels[:] / 255, atol=1e-6)
    training = ImageLabelGenerator(split, batch_size=8, shuffle=True, seed=3)
    first = np.concatenate([training[i][1] for i in range(len(training))])
    training.on_epoch_end()
    second = np.concatenate([training[i][1] for i in range(len(training))])
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


@pytest.fixture()
def broken_set(tmp_path, data_dir):
    """Four real paintings (copied: links out of the image root are refused) plus a corrupt
    JPEG and a text file named .jpg."""
    images = tmp_path / "images"
    (images / "Baroque").mkdir(parents=True)
    real = sorted((data_dir / "wikiart-style7" / "images" / "Baroque").iterdir())[:4]
    rows = []
    for path in real:
        shutil.copyfile(path, images / "Baroque" / path.name)
        rows.append(f"Baroque/{path.name},4")
    (images / "Baroque" / "corrupt.jpg").write_bytes(real[0].read_bytes()[:300])
    (images / "Baroque" / "notes.jpg").write_text("not an image")
    rows += ["Baroque/corrupt.jpg,4", "Baroque/notes.jpg,4"]
    labels = tmp_path / "train.csv"
    labels.write_text("\r\n".join(rows) + "\r\n")
    classes = data_dir / "wikiart-style7" / "style_class.txt"
    return labels, classes, images


def test_undecodable_images_raise_with_file_and_line(broken_set, cache_dir):
    labels, classes, images = broken_set
    table = load_labels(labels, classes, images)
    with pytest.raises(ArtganError) as error:
        load_split_images(table, 32, progress=False)
    text = str(error.value)
    assert "train.csv" in text and "2 image(s) could not be decoded" in text
    assert "5  Baroque/corrupt.jpg" in text and "6  Baroque/notes.jpg" in text


def test_undecodable_images_skip_and_report(broken_set, cache_dir):
    labels, classes, images = broken_set
    table = load_labels(labels, classes, images)
    split = load_split_images(table, 32, on_error="skip", progress=False)
    assert len(split) == 4 and list(split.rows) == [0, 1, 2, 3]
    assert [row.line for row in split.skipped] == [5, 6]
    assert all(row.reason for row in split.skipped)


def test_a_generator_never_holds_the_whole_cache(tmp_path, data_dir, cache_dir):
    """With an undecodable image left out, the split still reads the memory-mapped cache
    (it once copied every usable row into private memory); batches read only their rows."""
    import tracemalloc

    images = tmp_path / "images" / "Baroque"
    images.mkdir(parents=True)
    rows = []
    for path in sorted((data_dir / "wikiart-style7" / "images" / "Baroque").iterdir())[:96]:
        shutil.copyfile(path, images / path.name)
        rows.append(f"Baroque/{path.name},4")
    (images / "notes.jpg").write_text("not an image")
    labels = tmp_path / "train.csv"
    labels.write_text("\r\n".join(rows + ["Baroque/notes.jpg,4"]) + "\r\n")
    table = load_labels(
        labels, data_dir / "wikiart-style7" / "style_class.txt", tmp_path / "images"
    )
    load_split_images(table, 64, on_error="skip", progress=False)  # the cache is built

    tracemalloc.start()
    try:
        split = load_split_images(table, 64, on_error="skip", progress=False)
        generator = ImageLabelGenerator(split, batch_size=2, shuffle=True, seed=0)
        seen = sum(len(generator[index][1]) for index in range(len(generator)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    cache_bytes = 97 * 64 * 64 * 3
    assert seen == len(split) == 96
    assert peak < cache_bytes / 3, f"peak {peak} bytes for a {cache_bytes}-byte cache"
