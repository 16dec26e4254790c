"""Batches for Keras: label tables + decoded-image cache -> `(images, labels)`.

`SplitImages` ties one split's labels to its cached pixels at one input size;
`ImageLabelGenerator` is the `keras.utils.PyDataset` that feeds `model.fit`. Pixels come
from the memory-mapped cache (decoded once for every trial and epoch), so a batch costs
one fancy-index copy and a multiply.
"""

import keras
import numpy as np

from artgan.errors import ArtganError


def model_input(pixels):
    """uint8 pixels -> the float32 [0, 1] images every artgan model is trained on."""
    return np.asarray(pixels).astype(np.float32) * np.float32(1 / 255)


def output_labels(labels, classes=None):
    """Labels as a model's output indices: positions in `classes` (the ArtGAN class ids a
    model predicts, sorted), or the ids themselves when `classes` is None."""
    labels = np.asarray(labels, dtype=np.int64)
    if classes is None:
        return labels
    classes = np.asarray(classes, dtype=np.int64)
    if not np.isin(labels, classes).all():
        missing = sorted(set(labels.tolist()) - set(classes.tolist()))
        raise ArtganError(f"labels {missing} are not among the model's classes")
    return np.searchsorted(classes, labels)


class _Batches(keras.utils.PyDataset):
    """Shuffled (when training) batches of row numbers over `count` items; subclasses turn
    rows into `(inputs, labels)`."""

    def __init__(self, count, labels, batch_size, shuffle, augment, seed, **kwargs):
        super().__init__(**kwargs)
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(count)
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.order) // self.batch_size)

    def rows(self, index):
        return np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


class ImageLabelGenerator(_Batches):
    """Yields `(images, labels)` batches: float32 in [0, 1], shuffled and lightly augmented
    (horizontal flips, small shifts) when training, in file order otherwise. With `classes`,
    labels are positions in it (see `output_labels`)."""

    def __init__(
        self, split, batch_size=32, shuffle=False, augment=False, seed=0, classes=None, **kwargs
    ):
        if len(split) == 0:
            raise ArtganError(f"{split.table.label_file}: no usable images in this split")
        self.split = split
        super().__init__(
            len(split),
            output_labels(split.labels, classes),
            batch_size,
            shuffle,
            augment,
            seed,
            **kwargs,
        )

    def __getitem__(self, index):
        batch = self.rows(index)
        images = model_input(self.split.pixels[batch])
        if self.augment:
            images = self._augment(images)
        return images, self.labels[batch]

    def _augment(self, images):
        """Mirror half the paintings and shift each by up to 1/16 of its size."""
        flip = self.rng.random(len(images)) < 0.5
        images[flip] = images[flip, :, ::-1]
        limit = max(1, images.shape[1] // 16)
        shifts = self.rng.integers(-limit, limit + 1, size=(len(images), 2))
        for i, (dy, dx) in enumerate(shifts):
            images[i] = np.roll(images[i], (dy, dx), axis=(0, 1))
        return images


class EmbeddingGenerator(_Batches):
    """Yields `({tap: float32 activations}, labels)` from cached backbone taps
    (`artgan.model.embeddings`). When augmenting and the cache holds mirrored copies, each
    painting is shown mirrored half the time."""

    def __init__(
        self,
        embeddings,
        labels,
        taps,
        batch_size=32,
        shuffle=False,
        augment=False,
        seed=0,
        classes=None,
        **kwargs,
    ):
        self.embeddings = embeddings
        self.taps = list(taps)
        super().__init__(
            len(embeddings),
            output_labels(labels, classes),
            batch_size,
            shuffle,
            augment and embeddings.flipped,
            seed,
            **kwargs,
        )

    def __getitem__(self, index):
        batch = self.rows(index)
        rows = batch
        if self.augment:
            rows = batch + len(self.embeddings) * (self.rng.random(len(batch)) < 0.5)
            rows = np.sort(rows)  # memmap reads in order; labels follow the same order
            batch = rows % len(self.embeddings)
        inputs = {tap: self.embeddings.taps[tap][rows].astype(np.float32) for tap in self.taps}
        return inputs, self.labels[batch]
