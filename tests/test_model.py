"""The CRNN builder: shapes, named feature layers, and the search space steering it."""

import keras_tuner as kt
import numpy as np
import pytest

from artgan.model import FEATURE_LAYERS, build_crnn, feature_extractor
from artgan.spec import SearchSpace


@pytest.mark.parametrize("sequence", ["rows", "columns", "both"])
def test_build_crnn_sequences(sequence):
    hp = kt.HyperParameters()
    SearchSpace.model_validate(
        {"parameters": {"input_size": {"value": 32}, "sequence": {"value": sequence},
                        "conv_blocks": {"value": 2}, "lstm_units": {"value": 8},
                        "base_filters": {"value": 8}}}
    ).register(hp)
    model = build_crnn(hp, num_classes=7)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 7)
    steps = {"rows": 8, "columns": 8, "both": 16}[sequence]
    assert model.get_layer("lstm").input.shape[1] == steps
    probabilities = model.predict(np.random.rand(2, 32, 32, 3).astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_feature_layers_have_stable_names():
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed("bidirectional", True)
    hp.Fixed("lstm_units", 8)
    model = build_crnn(hp, num_classes=3)
    names = [layer.name for layer in model.layers]
    for name in FEATURE_LAYERS:
        assert name in names
    assert model.get_layer("features_lstm").output.shape[-1] == 16  # bidirectional doubles
    conv = feature_extractor(model, "features_conv")
    assert len(conv.output_shape) == 2  # pooled to one vector per image
    with pytest.raises(ValueError, match="no layer 'conv2d_3'"):
        feature_extractor(model, "conv2d_3")


def test_too_many_blocks_for_input_is_rejected():
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed("conv_blocks", 6)
    with pytest.raises(ValueError, match="shrink"):
        build_crnn(hp, num_classes=3)


def test_sgd_momentum_is_conditional():
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed("optimizer", "sgd")
    model = build_crnn(hp, num_classes=3)
    assert "momentum" in hp.values
    assert model.optimizer.__class__.__name__ == "SGD"
