"""The CRNN's batch norm: Keras' numbers, computed by TensorFlow's fused kernel under oneDNN."""

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from artgan.model import batchnorm
from artgan.model.batchnorm import FusedBatchNormalization


def twin_layers():
    """A Keras BatchNormalization and a FusedBatchNormalization with the same weights."""
    inputs = np.random.default_rng(0).normal(2.0, 3.0, (4, 8, 8, 5)).astype("float32")
    plain, fused = layers.BatchNormalization(), FusedBatchNormalization()
    plain.build(inputs.shape)
    fused.build(inputs.shape)
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.5, 1.5, 5).astype("float32") for _ in range(4)]
    plain.set_weights(weights)
    fused.set_weights(weights)
    return inputs, plain, fused


def test_fused_batch_norm_matches_keras_in_training_and_inference():
    inputs, plain, fused = twin_layers()
    np.testing.assert_allclose(
        fused(inputs, training=True), plain(inputs, training=True), atol=1e-4
    )
    np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-5)
    np.testing.assert_allclose(
        fused(inputs, training=False), plain(inputs, training=False), atol=1e-4
    )


def test_fused_batch_norm_has_keras_gradients():
    inputs, plain, fused = twin_layers()
    x = tf.constant(inputs)
    weights = tf.constant(np.random.default_rng(2).normal(size=inputs.shape), tf.float32)
    grads = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * weights)
        grads.append(tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
    for ours, keras_own in zip(grads[1], grads[0]):
        np.testing.assert_allclose(ours, keras_own, rtol=1e-3, atol=1e-4)


def graph_ops(layer, inputs, training):
    function = tf.function(lambda x: layer(x, training=training))
    graph = function.get_concrete_function(tf.TensorSpec(inputs.shape, tf.float32)).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("training", [True, False])
def test_one_fused_kernel_with_onednn_keras_ops_without(monkeypatch, training):
    inputs, _, fused = twin_layers()
    assert batchnorm.onednn_enabled()  # the tests, like the CLI, turn oneDNN on
    assert "FusedBatchNormV3" in graph_ops(fused, inputs, training)
    monkeypatch.setattr(batchnorm, "onednn_enabled", lambda: False)
    ops = graph_ops(fused, inputs, training)
    assert "FusedBatchNormV3" not in ops and "Rsqrt" in ops  # Keras' own computation


def test_conv_block_statistics_settle_within_a_short_trial():
    """Validation uses the moving statistics: after 30 steps (one epoch of a small trial)
    they must be near the data's, or a trial's val accuracy sits at chance (Keras' default
    momentum 0.99 is still 74 % at its initial values here)."""
    import keras

    from artgan.model.crnn import conv_block

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, conv_block(inputs, 4, 3, index=1))
    bn = model.get_layer("conv_block_1_bn")
    images = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype("float32") + 5.0
    convolved = model.get_layer("conv_block_1_conv")(images)
    for _ in range(30):
        bn(convolved, training=True)
    np.testing.assert_allclose(bn.moving_mean, np.mean(convolved, axis=(0, 1, 2)), rtol=0.1)
