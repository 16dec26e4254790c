"""Learned features of a saved model, for reports and for other tools.

`extract_features` runs a model up to a named layer (by default `features_lstm`, the LSTM's
output, which every trained model learned; `features_conv`, the map it reads,
global-average-pooled; any layer by name) over a `SplitImages`;
`export_features` does the same for an ArtGAN-format label file and writes

    FILE.npz      features (N, D) float32, labels (N,), paths (N,), class_names, layer
    FILE.parquet  one row per image: path, label, label_name, f0..f{D-1} (needs pyarrow)

so clustering, retrieval or plotting can happen outside artgan.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from artgan.data.generators import ImageLabelGenerator
from artgan.data.labels import load_labels
from artgan.data.splits import load_split_images
from artgan.errors import ArtganError
from artgan.files import atomic_path
from artgan.model.backbones import BACKBONES
from artgan.model.saved import load_model

if TYPE_CHECKING:
    import keras

    from artgan.data.splits import SplitImages

BATCH_SIZE = 64


def layer_model(model: keras.Model, layers: Sequence[str]) -> keras.Model:
    """One Keras model giving [probabilities, features of each named layer] in one pass."""
    import keras

    from artgan.model.crnn import feature_extractor

    outputs = [model.output]
    for name in layers:
        try:
            outputs.append(feature_extractor(model, name).output)
        except ValueError as error:
            raise ArtganError(str(error)) from None
    return keras.Model(model.inputs, outputs, name="artgan_layers")


def predict_with_features(
    model: keras.Model, split: SplitImages, layers: Sequence[str], batch_size: int = BATCH_SIZE
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(probabilities (N, C), {layer: features (N, D) float32}) for a `SplitImages`."""
    outputs = layer_model(model, layers).predict(ImageLabelGenerator(split, batch_size), verbose=0)
    features = {
        name: np.asarray(array, dtype=np.float32) for name, array in zip(layers, outputs[1:])
    }
    return np.asarray(outputs[0]), features


def cached_taps(model, metadata, split):
    """(the backbone's bottom inside `model`, the taps of `split` a search cached) when
    `model` can read those instead of images: its trial froze the backbone or trained only
    its top, so the bottom's ImageNet weights are unchanged; else None."""
    from artgan.model.embeddings import cached_embeddings

    backbone = BACKBONES.get(metadata.get("backbone"))
    embeddings = cached_embeddings(backbone, split) if backbone and len(split) else None
    if embeddings is None:
        return None
    try:
        pretrained = backbone.bottom()
        bottom = model.get_layer(pretrained.name)
    except (ArtganError, ValueError):  # its weights not installed here; no such layer
        return None
    saved, weights = bottom.get_weights(), pretrained.get_weights()
    same = len(saved) == len(weights) and all(np.array_equal(a, b) for a, b in zip(saved, weights))
    return (bottom, embeddings) if same else None


def taps_model(model, bottom, layers):
    """(`layer_model(model, layers)` with the outputs of `bottom` (a nested model of `model`)
    as its inputs, the names of the taps it reads, in input order): the part above it."""
    import keras

    from artgan.model._tf_compat import call_outputs

    outputs = layer_model(model, layers).outputs
    taps = call_outputs(bottom)
    for name in list(taps):  # keep only the taps the outputs depend on
        others = [tensor for tap, tensor in taps.items() if tap != name]
        try:
            keras.Model(others, outputs)
        except ValueError:  # "not connected": this tap is needed
            continue
        del taps[name]
    return keras.Model(list(taps.values()), outputs), list(taps)


def predict_from_embeddings(model, bottom, embeddings, layers, batch_size=256):
    """What `predict_with_features` gives for a split whose `bottom` taps are cached
    (`artgan.model.embeddings`), without running the bottom again: the model above it reads
    the cached float16 taps, as the search's validation did."""
    head, taps = taps_model(model, bottom, layers)
    batches = []
    for start in range(0, len(embeddings), batch_size):
        end = min(start + batch_size, len(embeddings))
        batch = head.predict_on_batch(
            [embeddings.taps[tap][start:end].astype(np.float32) for tap in taps]
        )
        batches.append(batch if isinstance(batch, list) else [batch])  # one output: an array
    outputs = [
        np.concatenate([np.asarray(batch[i]) for batch in batches])
        for i in range(len(head.outputs))
    ]
    features = {name: array.astype(np.float32) for name, array in zip(layers, outputs[1:])}
    return outputs[0], features


def extract_features(
    model: keras.Model, split: SplitImages, layer: str | None = None, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """(N, D) float32 features of `split`'s images at `layer` (default: the first layer the
    model learned, `default_feature_layer`)."""
    from artgan.model.crnn import default_feature_layer

    layer = layer or default_feature_layer(model)
    return predict_with_features(model, split, [layer], batch_size)[1][layer]


def save_features(
    out: str | Path,
    features: np.ndarray,
    labels: np.ndarray,
    paths: Sequence[str],
    class_names: Sequence[str],
    layer: str,
) -> Path:
    """Write `.npz` (always available) or `.parquet` (when pyarrow is installed)."""
    out = check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.int64)
    if out.suffix == ".parquet":
        return _save_parquet(out, features, labels, paths, class_names, layer)
    with atomic_path(out, suffix=".npz") as temporary:  # np.savez would add .npz otherwise
        np.savez_compressed(
            temporary,
            features=np.asarray(features, dtype=np.float32),
            labels=labels,
            paths=np.asarray(paths, dtype=str),
            class_names=np.asarray(class_names, dtype=str),
            layer=np.asarray(layer),
        )
    return out


def check_output(out: str | Path) -> Path:
    """`out` as a Path if artgan can write that kind of file here, else an `ArtganError`."""
    out = Path(out)
    if out.suffix not in (".npz", ".parquet"):
        raise ArtganError(f"{out}: unknown feature file type; use .npz or .parquet")
    if out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ArtganError(
            f"{out}: writing parquet needs pyarrow (pip install pyarrow); or use .npz"
        )
    return out


def _save_parquet(out, features, labels, paths, class_names, layer):
    frame = pd.DataFrame(np.asarray(features, dtype=np.float32))
    frame.columns = [f"f{i}" for i in frame.columns]
    frame.insert(0, "label_name", [class_names[i] for i in labels])
    frame.insert(0, "label", labels)
    frame.insert(0, "path", list(paths))
    frame.attrs = {"layer": layer, "class_names": list(class_names)}
    frame.to_parquet(out, index=False)
    return out


def load_features(path: str | Path) -> dict[str, Any]:
    """The arrays of a `.npz` written by `save_features`, as a dict."""
    with np.load(path, allow_pickle=False) as data:
        result = {key: data[key] for key in data.files}
    result["layer"] = str(result["layer"])
    result["class_names"] = [str(name) for name in result["class_names"]]
    return result


def export_features(
    model_path: str | Path,
    labels: str | Path,
    images: str | Path | None,
    out: str | Path,
    layer: str | None = None,
    classes: str | Path | None = None,
    on_error: str = "raise",
) -> tuple[Path, int, int]:
    """Features of every image of a label file, written to `out`; returns (out, count, dim)."""
    check_output(out)  # before the slow part
    model, metadata = load_model(model_path)
    class_names = metadata["class_names"]
    table = load_labels(labels, classes or class_names, images, on_error=on_error)
    if table.class_names != class_names:
        raise ArtganError(f"{classes}: class names differ from those the model was trained on")
    split = load_split_images(table, metadata["input_size"], metadata["resize"], on_error)
    if len(split) == 0:
        raise ArtganError(f"{labels}: no image could be read")
    from artgan.model.crnn import default_feature_layer

    layer = layer or default_feature_layer(model)
    features = extract_features(model, split, layer)
    save_features(out, features, split.labels, split.paths, class_names, layer)
    return Path(out), features.shape[0], features.shape[1]
