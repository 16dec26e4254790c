"""The CRNN builder: shapes, named feature layers, and the search space steering it."""

import keras_tuner as kt
import numpy as np
import pytest

from artgan.config.space import SearchSpace
from artgan.model.crnn import (
    build_crnn,
    build_model,
    default_feature_layer,
    feature_extractor,
    feature_layers,
)
from artgan.model.parameters import PARAMETERS, ImpossibleConfiguration, value


@pytest.mark.parametrize("sequence", ["rows", "columns", "both"])
def test_build_crnn_sequences(sequence):
    hp = kt.HyperParameters()
    SearchSpace.model_validate(
        {
            "parameters": {
                "input_size": {"value": 32},
                "sequence": {"value": sequence},
                "conv_blocks": {"value": 2},
                "lstm_units": {"value": 8},
                "base_filters": {"value": 8},
            }
        }
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
    assert feature_layers(model) == ["features_conv", "features_lstm"]
    assert all(name in names for name in feature_layers(model))
    assert model.get_layer("features_lstm").output.shape[-1] == 16  # bidirectional doubles
    conv = feature_extractor(model, "features_conv")
    assert len(conv.output_shape) == 2  # pooled to one vector per image
    with pytest.raises(ValueError, match="no layer 'conv2d_3'"):
        feature_extractor(model, "conv2d_3")


def test_too_many_blocks_for_input_is_rejected():
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed("conv_blocks", 6)
    with pytest.raises(ImpossibleConfiguration, match="`conv_blocks` 6 shrink a 32 px"):
        build_crnn(hp, num_classes=3)


def test_sgd_momentum_is_read_only_with_sgd_and_the_builder_declares_nothing():
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed("optimizer", "sgd")
    model = build_crnn(hp, num_classes=3)
    assert model.optimizer.__class__.__name__ == "SGD"
    assert float(model.optimizer.momentum) == pytest.approx(PARAMETERS["momentum"].default)
    assert sorted(hp.values) == ["input_size", "optimizer"]


def test_builders_read_the_space_or_else_the_one_declared_default():
    """A name the space declares takes the trial's value while active; anything else the
    declared default (`PARAMETERS`): the builders hold no ranges or defaults of their own."""

    def trial(backbone):
        hp = kt.HyperParameters()
        SearchSpace.model_validate(
            {
                "parameters": {
                    "backbone": {"value": backbone},
                    "conv_blocks": {"value": 4, "when": {"backbone": "scratch"}},
                    "lstm_units": {"value": 24},
                }
            }
        ).register(hp)
        return hp

    hp = trial("efficientnet_lite0")
    assert value(hp, "lstm_units") == 24
    assert value(hp, "conv_blocks") == PARAMETERS["conv_blocks"].default  # inactive
    hp = trial("scratch")
    assert value(hp, "conv_blocks") == 4
    assert value(hp, "dropout") == PARAMETERS["dropout"].default  # not in the space
    assert value(hp, "batch_size", default=48) == 48  # declared without a default
    assert sorted(hp.values) == ["backbone", "conv_blocks", "lstm_units"]


def test_a_bare_hp_builds_the_declared_defaults():
    hp = kt.HyperParameters()
    model = build_model(hp, num_classes=3)
    defaults = {name: allowed.default for name, allowed in PARAMETERS.items()}
    assert model.input_shape == (None, defaults["input_size"], defaults["input_size"], 3)
    blocks = [
        layer
        for layer in model.layers
        if layer.name.endswith("_conv") and layer.name.startswith("conv_block_")
    ]
    assert len(blocks) == defaults["conv_blocks"]
    assert blocks[0].filters == defaults["base_filters"]
    assert blocks[0].kernel_size == (defaults["kernel_size"],) * 2
    assert model.get_layer("lstm").units == defaults["lstm_units"]
    assert model.get_layer("dropout").rate == pytest.approx(defaults["dropout"])


@pytest.mark.parametrize(
    "name, chosen, message",
    [
        (
            "sequence",
            "diagonal",
            "`sequence`: 'diagonal' is not one of ['rows', 'columns', 'both']",
        ),
        ("conv_blocks", 9, "`conv_blocks`: 9 must be below 8"),
        ("dropout", 1.0, "`dropout`: 1.0 must be below 1 (exclusive)"),
    ],
)
def test_a_value_the_table_does_not_allow_is_refused_naming_the_parameter(name, chosen, message):
    hp = kt.HyperParameters()
    hp.Fixed("input_size", 32)
    hp.Fixed(name, chosen)
    with pytest.raises(ImpossibleConfiguration) as error:
        build_model(hp, num_classes=3)
    assert str(error.value) == message


def test_outputs_are_the_used_classes_and_saved_models_speak_artgan_ids():
    from artgan.data.generators import output_labels
    from artgan.errors import ArtganError
    from artgan.model.crnn import with_class_ids

    classes = np.array([2, 4, 6, 9])
    np.testing.assert_array_equal(output_labels([9, 2, 6, 4, 2], classes), [3, 0, 2, 1, 0])
    with pytest.raises(ArtganError, match=r"\[5\]"):
        output_labels([2, 5], classes)

    hp = kt.HyperParameters()
    for name, fixed in {"input_size": 32, "conv_blocks": 2, "lstm_units": 8}.items():
        hp.Fixed(name, fixed)
    model = build_crnn(hp, num_classes=4)
    assert "top5_accuracy" not in str(model.metrics_names)  # 4 outputs: top-5 says nothing
    spread = with_class_ids(model, classes, 10)
    images = np.random.rand(3, 32, 32, 3).astype("float32")
    own, artgan = model.predict(images, verbose=0), spread.predict(images, verbose=0)
    assert artgan.shape == (3, 10)
    np.testing.assert_allclose(artgan[:, classes], own, rtol=1e-6)
    assert not artgan[:, [0, 1, 3, 5, 7, 8]].any()


def test_models_saved_without_their_classes_get_them_from_the_spread_layer(tmp_path):
    """Models saved before `classes` was recorded: load_model reads it off the fixed
    layer that spreads the used classes over ArtGAN's ids."""
    from artgan.model.crnn import with_class_ids
    from artgan.model.saved import load_model, model_classes, read_metadata, save_model

    hp = kt.HyperParameters()
    for name, fixed in {"input_size": 32, "conv_blocks": 2, "lstm_units": 8}.items():
        hp.Fixed(name, fixed)
    spread = with_class_ids(build_crnn(hp, num_classes=4), [2, 4, 6, 9], 10)
    names = [f"c{i}" for i in range(10)]
    path = save_model(spread, tmp_path / "old.keras", {"class_names": names, "input_size": 32})
    assert model_classes(read_metadata(path)) == list(range(10))  # without the model: all
    assert model_classes(load_model(path)[1]) == [2, 4, 6, 9]


@pytest.mark.parametrize("mirrored", [False, True])
def test_fine_tuned_backbone_layers_take_smaller_steps(mirrored):
    """One SGD step: a backbone variable moves BACKBONE_LR_SCALE times as far as the head's,
    also under a tf.distribute strategy (where the optimizer steps each replica's copy)."""
    from contextlib import nullcontext

    import keras
    import tensorflow as tf

    from artgan.model.crnn import BACKBONE_LR_SCALE, build_optimizer

    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "sgd")
    hp.Fixed("learning_rate", 0.01)
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Fixed("momentum", 0.0)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope() if mirrored else nullcontext():
        inputs = keras.Input((2,))
        backbone = keras.layers.Dense(
            2, use_bias=False, kernel_initializer="ones", name="backbone"
        )
        head = keras.layers.Dense(2, use_bias=False, kernel_initializer="ones", name="head")
        model = keras.Model(inputs, head(backbone(inputs)))
        model.compile(build_optimizer(hp, backbone.trainable_variables), loss="mse")
    model.fit(np.ones((1, 2)), np.zeros((1, 2)), epochs=1, verbose=0)
    # Both kernels start at ones and get equal gradients (the network is symmetric).
    backbone_step = 1 - backbone.get_weights()[0]
    head_step = 1 - head.get_weights()[0]
    np.testing.assert_allclose(backbone_step, BACKBONE_LR_SCALE * head_step, rtol=1e-5)
    assert head_step.min() > 0


@pytest.mark.parametrize(
    "branch",
    [
        {"backbone": "scratch", "optimizer": "sgd"},
        {
            "backbone": "efficientnet_lite0",
            "backbone_layer": "top",
            "backbone_trainable": "top",
            "pooled_stages": True,
        },
    ],
)
def test_builders_read_only_the_parameters_spaces_are_checked_against(branch):
    """PARAMETERS (what a search space may name) lists every name the builders read, and
    each branch reads the parameters that steer it."""
    read = set()

    class Recorder(dict):
        def __contains__(self, name):
            read.add(name)
            return super().__contains__(name)

    class Trial:
        values = Recorder(branch)

        def is_active(self, name):
            return True

    build_model(Trial(), num_classes=3)
    assert read and read <= set(PARAMETERS)
    assert set(branch) <= read


def test_a_pooled_head_reads_pooled_statistics_and_defaults_to_its_learned_layer():
    hp = kt.HyperParameters()
    hp.Fixed("backbone", "efficientnet_lite0")
    hp.Fixed("head", "pooled")
    hp.Fixed("head_units", 8)
    model = build_model(hp, num_classes=4)
    assert sorted(
        model.input_names if hasattr(model, "input_names") else [t.name for t in model.inputs]
    ) == ["pooled", "stage6"]
    assert feature_layers(model) == ["features_conv", "features_head"]
    assert default_feature_layer(model) == "features_head"
    assert model.get_layer("features_head").output.shape[-1] == 8
    assert default_feature_layer(["features_conv", "features_lstm"]) == "features_lstm"
    assert default_feature_layer(["features_conv"]) == "features_conv"


def test_a_cosine_schedule_takes_the_rate_to_zero_over_the_epoch_budget():
    import keras

    from artgan.model.crnn import learning_rate_at, schedule_callbacks

    hp = kt.HyperParameters()
    hp.Fixed("learning_rate", 0.01)
    assert schedule_callbacks(hp, 4) == []  # the declared default: constant
    assert [learning_rate_at(hp, epoch, 4) for epoch in range(4)] == [0.01] * 4
    hp.Fixed("lr_schedule", "cosine")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(float(model.optimizer.learning_rate))
    )
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], epochs=4, verbose=0, callbacks=[*schedule_callbacks(hp, 4), record])
    expected = [
        0.01,
        0.01 * (1 + np.cos(np.pi / 4)) / 2,
        0.005,
        0.01 * (1 - np.cos(np.pi / 4)) / 2,
    ]
    np.testing.assert_allclose(seen, expected, rtol=1e-5)
    assert learning_rate_at(hp, 4, 4) == 0.0
