"""The search's `kt.HyperModel`: builds a CRNN from a trial's values and fits it on cached
pixels or cached backbone activations; `SpaceValues` limits the builder to the space."""

import sys
import time
from contextlib import contextmanager

import keras_tuner as kt

from artgan.data.generators import EmbeddingGenerator, ImageLabelGenerator
from artgan.model.backbones import get_backbone
from artgan.model.crnn import (
    ImpossibleConfiguration,
    backbone_name,
    build_model,
    deployable_model,
    input_size,
    uses_cache,
    with_class_ids,
)
from artgan.model.embeddings import embed_split
from artgan.progress import spending


class SpaceValues:
    """The `hp` a model builder sees in a search: a name the search space declares takes
    the trial's value; any other takes the builder's default and is not searched (like
    KerasTuner's `tune_new_entries=False`, matched by name whatever conditional scope the
    builder opens, so builder and space never hold two parameters of one name)."""

    def __init__(self, hp, names):
        self.hp, self.names = hp, frozenset(names)

    def _value(self, name, default):
        if name in self.names and self.hp.is_active(name):
            return self.hp.get(name)
        return default

    def Choice(self, name, values, ordered=None, default=None, **_):
        return self._value(name, values[0] if default is None else default)

    def Int(self, name, min_value, max_value, step=None, sampling="linear", default=None, **_):
        return self._value(name, min_value if default is None else default)

    Float = Int

    def Boolean(self, name, default=False, **_):
        return self._value(name, default)

    def Fixed(self, name, value, **_):
        return self._value(name, value)

    @contextmanager
    def conditional_scope(self, parent_name, parent_values):
        yield


class CRNNHyperModel(kt.HyperModel):
    """Registers the spec's search space, then builds `build_model` and fits it on cached
    pixels, or on cached backbone activations when the trial's backbone is frozen."""

    def __init__(self, space, data, augment=True, seed=42, batch_size=32):
        super().__init__(name="crnn")
        self.space = space
        self.data = data
        self.augment = augment
        self.seed = seed
        self.batch_size = batch_size  # used when the space has no `batch_size` parameter
        self._embeddings = {}
        self._declaring = False

    @classmethod
    def from_spec(cls, spec, data):
        training = spec.training
        return cls(spec.space, data, training.augment, spec.seed, training.batch_size)

    def values(self, hp):
        """What the builder reads: the search space's parameters only."""
        return SpaceValues(hp, self.space.parameters)

    @contextmanager
    def declaring(self):
        """While a tuner is constructed: KerasTuner builds the model once per conditional
        scope to discover the space, but ours is declared up front (`SearchSpace.register`),
        so those builds are skipped (they cost a model each, and a configuration that cannot
        be built would stop the tuner before its first trial instead of failing that trial)."""
        self._declaring = True
        try:
            yield self
        finally:
            self._declaring = False

    def build(self, hp):
        """The trial's network; values no network can be built from fail the trial at once
        (KerasTuner's `FailedTrialError`: recorded with its reason, never retried)."""
        if self._declaring:
            return None
        try:
            return build_model(self.values(hp), num_classes=len(self.data.classes))
        except ImpossibleConfiguration as error:
            raise kt.errors.FailedTrialError(f"impossible configuration: {error}") from None

    def fit(self, hp, model, *args, **kwargs):
        values = self.values(hp)
        batch_size = values.Int("batch_size", 1, 1024, default=self.batch_size)
        train, val = self.generators(values, batch_size, [t.name for t in model.inputs])
        kwargs.setdefault("verbose", 1 if sys.stdout.isatty() else 2)
        started = time.perf_counter()
        with spending("training"):
            history = model.fit(train, validation_data=val, **kwargs)
        # What KerasTuner's run_trial returns, one History per execution, carries its cost.
        history.artgan = {"params": int(model.count_params()),
                          "fit_seconds": time.perf_counter() - started,
                          "train_images": len(train.labels), "val_images": len(val.labels)}
        return history

    def generators(self, values, batch_size, inputs):
        """(train, val) batches for a trial: cached activations for a frozen pretrained
        bottom (`inputs` names the taps the model reads), else cached pixels."""
        common = dict(batch_size=batch_size, classes=self.data.classes)
        training = dict(common, shuffle=True, augment=self.augment, seed=self.seed)
        if uses_cache(values):
            backbone = get_backbone(backbone_name(values))
            train, val = self.embeddings(backbone)
            splits = self.data.splits(backbone.input_size)
            return (EmbeddingGenerator(train, splits[0].labels, inputs, **training),
                    EmbeddingGenerator(val, splits[1].labels, inputs, **common))
        train, val = self.data.splits(input_size(values))
        return ImageLabelGenerator(train, **training), ImageLabelGenerator(val, **common)

    def embeddings(self, backbone):
        """(train, val) cached activations of `backbone`'s bottom (mirrored training images
        added when augmenting). Computed once per process, cached on disk for all others."""
        if backbone.name not in self._embeddings:
            train, val = self.data.splits(backbone.input_size)
            self._embeddings[backbone.name] = (embed_split(backbone, train, self.augment),
                                               embed_split(backbone, val))
        return self._embeddings[backbone.name]

    def deployable(self, hp, model):
        """The trained trial `model` as the image -> ArtGAN class model that is saved."""
        values = self.values(hp)
        model = deployable_model(values, model, len(self.data.classes))
        return with_class_ids(model, self.data.classes, len(self.data.class_names))
