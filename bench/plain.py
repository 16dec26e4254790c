"""`make bench ARGS="--only search"`: one small search run twice in the same process, with
artgan and the plain way, and what each found.

The plain way is what the original project (and KerasTuner's own examples) do: a
`kt.HyperModel` over the same search space and the same model builders, fed by a Python
generator that reads and resizes every image with `cv2.imread` per item, every epoch, with the
pretrained backbone (frozen) inside the model, no caches and no pruning, and Keras' stock
`BatchNormalization` (same numbers as artgan's fused one, its own kernels). Both searches use
the same tuner, seed, trials, epochs, early stopping and image subsets.
"""

import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import keras
import keras_tuner as kt
import numpy as np
import pandas as pd

from artgan.config.spec import experiment_file, load_experiment
from artgan.data.generators import output_labels
from artgan.data.splits import TaskData
from artgan.model import crnn
from artgan.model.crnn import (
    SCRATCH,
    backbone_name,
    build_crnn,
    build_pretrained_crnn,
    compile_model,
    input_size,
)
from artgan.model.parameters import value
from artgan.runfolder import FINISHED
from artgan.tuning.tuner import callbacks, run_search
from artgan.tuning.tuners import get_tuner


class Cv2Batches(keras.utils.PyDataset):
    """Batches decoded with cv2.imread + resize per item, every epoch (no cache)."""

    def __init__(self, paths, labels, size, batch_size, shuffle):
        super().__init__()
        self.paths, self.labels = np.asarray(paths), np.asarray(labels)
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.order = np.arange(len(self.paths))
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.paths) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = []
        for path in self.paths[rows]:
            image = cv2.resize(cv2.imread(str(path)), (self.size, self.size))
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
        return np.stack(images), self.labels[rows]

    def on_epoch_end(self):
        if self.shuffle:
            np.random.default_rng().shuffle(self.order)


def stock_batch_norm():
    """Within it, CRNNs are built with Keras' own BatchNormalization (same momentum, same
    numbers) instead of artgan's fused one: what a model built without artgan computes with."""
    return mock.patch.object(crnn, "FusedBatchNormalization", keras.layers.BatchNormalization)


class PlainHyperModel(kt.HyperModel):
    """The same builders and space as artgan's hypermodel, on plain per-item decoding."""

    def __init__(self, space, data, batch_size):
        super().__init__(name="plain")
        self.space, self.data, self.batch_size = space, data, batch_size

    def build(self, hp):
        classes = len(self.data.classes)
        if backbone_name(hp) == SCRATCH:
            with stock_batch_norm():
                return build_crnn(hp, classes)
        model = build_pretrained_crnn(hp, classes, image_input=True)  # backbone inside
        return compile_model(model, hp, classes)

    def fit(self, hp, model, *args, **kwargs):
        size = input_size(hp)
        batch_size = value(hp, "batch_size", default=self.batch_size)
        train, val = (
            Cv2Batches(
                table.image_paths(),
                output_labels(table.labels(), self.data.classes),
                size,
                batch_size,
                shuffle,
            )
            for table, shuffle in ((self.data.train, True), (self.data.val, False))
        )
        kwargs.setdefault("verbose", 0)
        return model.fit(train, validation_data=val, **kwargs)


def plain_search(spec, folder):
    """The plain KerasTuner search of `spec`; returns (table of trials, wall seconds)."""
    data = TaskData.from_spec(spec)
    space = kt.HyperParameters()
    spec.space.register(space)
    kind = get_tuner(spec.tuner.type)
    tuner = kind.tuner_class()(
        PlainHyperModel(spec.space, data, spec.training.batch_size),
        objective=spec.tuner.objective,
        seed=spec.seed,
        hyperparameters=space,
        tune_new_entries=False,
        directory=str(folder),
        project_name="plain",
        **kind.arguments(spec),
    )
    started = time.perf_counter()
    stop = [c for c in callbacks(spec) if isinstance(c, keras.callbacks.EarlyStopping)]
    tuner.search(epochs=spec.budget.epochs, callbacks=stop, verbose=0)
    seconds = time.perf_counter() - started
    rows = [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "score": t.score,
            **{f"hp/{k}": v for k, v in t.hyperparameters.values.items()},
        }
        for t in tuner.oracle.trials.values()
    ]
    return pd.DataFrame(rows), seconds


def bench_search(trials, epochs, images, task="genre"):
    with tempfile.TemporaryDirectory() as work:
        sets = [
            f"budget.max_trials={trials}",
            f"budget.epochs={epochs}",
            f"budget.max_train_images={images}",
            f"budget.max_val_images={images // 2}",
            f"output={Path(work) / 'artgan'}",
        ]
        spec = load_experiment(experiment_file(task), sets)
        started = time.perf_counter()
        ours = run_search(spec, fresh=True)  # from cold caches: decoding and embedding included
        ours_seconds = time.perf_counter() - started
        plain, plain_seconds = plain_search(spec, Path(work) / "plain")
    print(
        f"\n== the same search, artgan vs plain KerasTuner: {task}, {spec.tuner.type}, "
        f"{trials} trials x up to {epochs} epochs, {images} train / {images // 2} val images, "
        "cold caches"
    )
    print(f"{'':22}{'wall':>9}{'best ' + spec.tuner.objective:>22}{'finished':>10}")
    for name, table, seconds in (
        ("plain KerasTuner", plain, plain_seconds),
        ("artgan", ours, ours_seconds),
    ):
        finished = table[table["status"].isin(FINISHED)]  # pruned trials finished early
        print(f"{name:22}{seconds:>7.1f} s{finished['score'].max():>22.4f}{len(finished):>10}")
    print(
        f"artgan's wall time: {ours_seconds / plain_seconds:.2f}x the plain one (target <= 0.5x)"
    )
    in_order = ours.assign(trial=ours["trial_id"].astype(str)).sort_values("trial")
    memory = in_order["memory_mb"].dropna().round().astype(int).tolist()
    print(f"artgan's resident memory after each trial (MB, trial order): {memory}")
