"""Feature extractors for similar-painting search: training-free colour and texture
statistics, ImageNet backbone features, or a trained model's named layer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artgan.config.spec import experiment_file, load_experiment
from artgan.data.images import DECODER_VERSION, cache_images
from artgan.errors import ArtganError
from artgan.evaluation.baselines import handcrafted_features
from artgan.evaluation.metrics import l2_normalise
from artgan.files import file_sha256
from artgan.model.backbones import BACKBONES
from artgan.model.saved import load_model, read_metadata
from artgan.paths import work_root
from artgan.progress import progress_bar
from artgan.runfolder import RunFolder

HANDCRAFTED_SIZE = 128
HANDCRAFTED_RESIZE = "letterbox"  # the training default; keeps the aspect ratio, a real cue


# ----------------------------------------------------------------------------- extractors


@dataclass
class Embedded:
    """Vectors for the rows that decoded (`ok`), plus {row: reason} for those that did not."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)


class Extractor(ABC):
    """Images -> L2-normalised vectors. `description` says when two indexes are comparable."""

    name = "extractor"
    description: dict = {}
    size: int  # the side images are decoded at
    resize: str  # how they are brought to it (`artgan.data.images` modes)

    def embed(self, paths, progress=True) -> Embedded:
        cached = cache_images(paths, self.size, self.resize, progress=progress, desc="decoding")
        rows = np.flatnonzero(cached.ok)
        vectors = self.features(cached.array, rows, progress)
        return Embedded(l2_normalise(vectors), cached.ok.copy(), dict(cached.errors))

    @abstractmethod
    def features(self, pixels, rows, progress) -> np.ndarray:
        """Raw feature vectors for `pixels[rows]` (cached uint8 images)."""


class HandcraftedExtractor(Extractor):
    """Colour histograms and texture statistics: works before any model is trained."""

    name = "handcrafted"
    size, resize = HANDCRAFTED_SIZE, HANDCRAFTED_RESIZE

    def __init__(self):
        self.description = {
            "kind": "handcrafted",
            "size": self.size,
            "resize": self.resize,
            "version": 1,
            "decoder": DECODER_VERSION,
        }

    def features(self, pixels, rows, progress):
        chunks = [
            handcrafted_features(pixels[batch])
            for batch in progress_bar(
                batches(rows), desc="handcrafted features", disable=not progress
            )
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


class ModelExtractor(Extractor):
    """A named feature layer of a saved artgan model, with the model's own preprocessing."""

    def __init__(self, path, layer=None):
        from artgan.model.crnn import FEATURE_LAYERS, default_feature_layer

        self.path = Path(path).resolve()
        metadata = read_metadata(self.path)
        self.layer = layer or default_feature_layer(
            list(metadata.get("feature_layers", FEATURE_LAYERS[:2]))
        )
        self.size = int(metadata["input_size"])
        self.resize = metadata.get("resize", "letterbox")
        self.name = f"model:{display_path(self.path)}" + (
            "" if layer is None else f"@{self.layer}"
        )
        self.description = {
            "kind": "model",
            "path": str(self.path),
            "sha256": file_digest(self.path),
            "layer": self.layer,
            "size": self.size,
            "resize": self.resize,
            "decoder": DECODER_VERSION,
        }
        self._model = None

    def features(self, pixels, rows, progress):
        from artgan.data.generators import model_input

        model = self.feature_model()
        chunks = []
        for batch in progress_bar(
            batches(rows), desc=f"embedding ({self.layer})", disable=not progress
        ):
            images = model_input(pixels[batch])  # as in training
            chunks.append(
                np.asarray(model([images], training=False))
            )  # inputs as a list, like model.inputs
        width = int(model.outputs[0].shape[-1])
        return np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)

    def feature_model(self):
        if self._model is None:
            from artgan.model.crnn import feature_extractor

            model, _ = load_model(self.path)
            try:
                self._model = feature_extractor(model, self.layer)
            except ValueError as error:
                raise ArtganError(f"{self.path}: {error}") from None
        return self._model


class BackboneExtractor(Extractor):
    """An ImageNet-pretrained backbone as is (no training on paintings): the global means
    of its stages 1-6, colour and brushwork statistics from fine to coarse."""

    resize = "letterbox"

    def __init__(self, backbone):
        self.backbone = backbone
        self.name, self.size = backbone.name, backbone.input_size
        self.description = {
            "kind": "backbone",
            "name": backbone.name,
            "tap": "pooled",
            "weights": backbone.weights_id,
            "size": self.size,
            "resize": self.resize,
            "decoder": DECODER_VERSION,
        }

    def features(self, pixels, rows, progress):
        from artgan.data.generators import model_input

        model = self.backbone.bottom()
        chunks = [
            model.predict_on_batch(model_input(pixels[batch]))["pooled"]
            for batch in progress_bar(
                batches(rows), desc=f"embedding ({self.name})", disable=not progress
            )
        ]
        width = self.backbone.tap_shapes()["pooled"][0]
        return np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)


def make_extractor(spec="handcrafted", layer=None) -> Extractor:
    """`handcrafted`, a pretrained backbone's name, `model:PATH`, a `.keras` path, or an
    experiment (its best model)."""
    if spec == "handcrafted":
        if layer:
            raise ArtganError("`layer` applies to model extractors, not 'handcrafted'")
        return HandcraftedExtractor()
    if spec.startswith("model:"):
        return ModelExtractor(spec[len("model:") :], layer)
    if spec.endswith(".keras"):
        return ModelExtractor(spec, layer)
    if spec in BACKBONES:
        if layer:
            raise ArtganError(f"`layer` applies to model extractors, not {spec!r}")
        return BackboneExtractor(BACKBONES[spec])
    return ModelExtractor(experiment_model(spec), layer)


def experiment_model(experiment) -> Path:
    """The best model (`<output>/best/model_1.keras`) of an experiment name or YAML file."""
    try:
        path = experiment_file(experiment)
        if not Path(path).is_file():
            raise ArtganError(f"{path} not found")
    except ArtganError as error:
        raise ArtganError(
            f"unknown extractor {experiment!r}: expected 'handcrafted', 'model:PATH.keras' "
            f"or an experiment name/YAML ({error})"
        ) from None
    model = RunFolder(load_experiment(path).output_dir).model(1)
    if not model.is_file():
        raise ArtganError(
            f"{model}: experiment {experiment!r} has no trained model yet; run "
            f"`python -m artgan search {experiment}` first, or use the `extractor` handcrafted"
        )
    return model


def extractor_from_description(description: dict) -> Extractor:
    """Rebuild the extractor an index was made with (to embed a query image the same way)."""
    extractor: Extractor
    if description.get("kind") == "handcrafted":
        extractor = HandcraftedExtractor()
    elif description.get("kind") == "model":
        extractor = ModelExtractor(description["path"], description["layer"])
    else:
        raise ArtganError(f"unknown extractor in index: {description}")
    if extractor.description != description:
        raise ArtganError(
            f"the index was built with {description}, which no longer matches "
            f"{extractor.description} (model retrained?); rebuild it with `similar index`"
        )
    return extractor


BATCH_SIZE = 64


def batches(rows, size=BATCH_SIZE):
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def file_digest(path) -> str:
    return file_sha256(path)


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(work_root()))
    except ValueError:
        return str(path)
