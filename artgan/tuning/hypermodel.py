"""The search's `kt.HyperModel`: builds a CRNN from a trial's values and fits it on cached
pixels or cached backbone activations.

The trial's `hp` holds the search space's parameters only (declared up front by
`SearchSpace.register`; builders declare nothing), and builders read it through
`artgan.model.parameters.value`: a parameter the space does not declare, or one inactive in
this trial, takes its declared default and is not searched."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import keras
import keras_tuner as kt

from artgan.config.space import SearchSpace
from artgan.config.spec import ExperimentSpec
from artgan.data.generators import EmbeddingGenerator, ImageLabelGenerator
from artgan.data.splits import TaskData
from artgan.model.backbones import get_backbone
from artgan.model.crnn import (
    backbone_name,
    build_model,
    deployable_model,
    input_size,
    schedule_callbacks,
    uses_cache,
    with_class_ids,
)
from artgan.model.embeddings import embed_split
from artgan.model.parameters import ImpossibleConfiguration, value
from artgan.progress import spending


class CRNNHyperModel(kt.HyperModel):
    """Registers the spec's search space, then builds `build_model` and fits it on cached
    pixels, or on cached backbone activations when the trial's backbone is frozen."""

    def __init__(
        self,
        space: SearchSpace,
        data: TaskData,
        augment: bool = True,
        seed: int = 42,
        batch_size: int = 32,
    ) -> None:
        super().__init__(name="crnn")
        self.space = space
        self.data = data
        self.augment = augment
        self.seed = seed
        self.batch_size = batch_size  # used when the space has no `batch_size` parameter
        self._embeddings: dict[str, tuple] = {}
        self._declaring = False

    @classmethod
    def from_spec(cls, spec: ExperimentSpec, data: TaskData) -> "CRNNHyperModel":
        training = spec.training
        assert spec.space is not None  # load_experiment always resolves it
        return cls(spec.space, data, training.augment, spec.seed, training.batch_size)

    @contextmanager
    def declaring(self) -> Iterator["CRNNHyperModel"]:
        """While a tuner is constructed: KerasTuner builds the model once per conditional
        scope to discover the space, but ours is declared up front (`SearchSpace.register`),
        so those builds are skipped (they cost a model each, and a configuration that cannot
        be built would stop the tuner before its first trial instead of failing that trial)."""
        self._declaring = True
        try:
            yield self
        finally:
            self._declaring = False

    def build(self, hp: kt.HyperParameters) -> keras.Model | None:
        """The trial's network; values no network can be built from fail the trial at once
        (KerasTuner's `FailedTrialError`: recorded with its reason, never retried)."""
        if self._declaring:
            return None
        try:
            return build_model(hp, num_classes=len(self.data.classes))
        except ImpossibleConfiguration as error:
            raise kt.errors.FailedTrialError(f"impossible configuration: {error}") from None

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        *args: object,
        epochs: int = 1,
        callbacks: list[keras.callbacks.Callback] | None = None,
        **kwargs: object,
    ) -> keras.callbacks.History:
        batch_size = value(hp, "batch_size", default=self.batch_size)
        train, val = self.generators(hp, batch_size, [t.name for t in model.inputs])
        kwargs.setdefault("verbose", 1 if sys.stdout.isatty() else 2)
        callbacks = [*(callbacks or []), *schedule_callbacks(hp, epochs)]
        started = time.perf_counter()
        with spending("training"):
            history = model.fit(
                train, validation_data=val, epochs=epochs, callbacks=callbacks, **kwargs
            )
        # What KerasTuner's run_trial returns, one History per execution, carries its cost.
        history.artgan = {
            "params": int(model.count_params()),
            "fit_seconds": time.perf_counter() - started,
            "train_images": len(train.labels),
            "val_images": len(val.labels),
        }
        return history

    def generators(self, hp: kt.HyperParameters, batch_size: int, inputs: list[str]) -> tuple:
        """(train, val) batches for a trial: cached activations for a frozen pretrained
        bottom (`inputs` names the taps the model reads), else cached pixels."""
        common = dict(batch_size=batch_size, classes=self.data.classes)
        training = dict(common, shuffle=True, augment=self.augment, seed=self.seed)
        if uses_cache(hp):
            backbone = get_backbone(backbone_name(hp))
            train, val = self.embeddings(backbone)
            splits = self.data.splits(backbone.input_size)
            return (
                EmbeddingGenerator(train, splits[0].labels, inputs, **training),
                EmbeddingGenerator(val, splits[1].labels, inputs, **common),
            )
        train, val = self.data.splits(input_size(hp))
        return ImageLabelGenerator(train, **training), ImageLabelGenerator(val, **common)

    def embeddings(self, backbone):
        """(train, val) cached activations of `backbone`'s bottom (mirrored training images
        added when augmenting). Computed once per process, cached on disk for all others."""
        if backbone.name not in self._embeddings:
            train, val = self.data.splits(backbone.input_size)
            self._embeddings[backbone.name] = (
                embed_split(backbone, train, self.augment),
                embed_split(backbone, val),
            )
        return self._embeddings[backbone.name]

    def deployable(self, hp: kt.HyperParameters, model: keras.Model) -> keras.Model:
        """The trained trial `model` as the image -> ArtGAN class model that is saved."""
        model = deployable_model(hp, model, len(self.data.classes))
        return with_class_ids(model, self.data.classes, len(self.data.class_names))
