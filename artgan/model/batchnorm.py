"""Batch normalization as one fused kernel where that is faster: TensorFlow with oneDNN.

Keras 3 normalizes with separate ops (moments, subtract, scale, shift, and the gradients of
each), every one a pass over the activations. On a CPU the first conv block's activations
are the largest tensors of a step, so these passes, not the convolutions, set the pace:
TensorFlow's fused kernel (`FusedBatchNormV3`, run by oneDNN) trains the default CRNN
1.4-1.6x faster (`make bench ARGS="--only training"`). Without oneDNN TensorFlow's own fused kernel is slower than Keras' ops, and
other backends have no such kernel, so there the layer is plain `BatchNormalization`: same
weights, same saved form, so a model trains or loads anywhere.
"""

import keras
from keras import layers

from artgan.model._tf_compat import onednn_enabled


@keras.saving.register_keras_serializable(package="artgan")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` over the last axis of (batch, height, width, channels)
    inputs, computed by TensorFlow's fused kernel when oneDNN is on."""

    def _fusable(self, inputs):
        return (
            len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and not self.renorm
            and not self.synchronized
            and inputs.dtype == "float32"
            and self.compute_dtype == "float32"
            and onednn_enabled()
        )

    def call(self, inputs, training=None, mask=None):
        if mask is not None or not self._fusable(inputs):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma.value, self.beta.value, epsilon=self.epsilon, is_training=True
            )
            count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], variance.dtype)
            variance = variance * (count - 1.0) / count  # Keras' moving variance: no n - 1
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
            self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma.value,
            self.beta.value,
            mean=self.moving_mean.value,
            variance=self.moving_variance.value,
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs


CUSTOM_OBJECTS = {"artgan>FusedBatchNormalization": FusedBatchNormalization}
