"""Grad-CAM on a hand-built model whose answer is known: it only sees the top-left quadrant."""

import numpy as np
import pytest

from artgan.errors import ArtganError

SIZE = 16


def quadrant_model():
    """features_conv has 4 channels, channel q = the image's brightness inside quadrant q
    only; the classifier reads channel 0 (top-left) alone: class 0 when it is bright."""
    import keras
    from keras import layers

    masks = np.zeros((SIZE, SIZE, 4), np.float32)
    half = SIZE // 2
    for q, (r, c) in enumerate([(0, 0), (0, half), (half, 0), (half, half)]):
        masks[r : r + half, c : c + half, q] = 1
    image = keras.Input((SIZE, SIZE, 3), name="image")
    brightness = layers.Conv2D(4, 1, use_bias=False, name="brightness")(image)
    feature_map = layers.Lambda(lambda x: x * masks, name="features_conv")(brightness)
    pooled = layers.GlobalAveragePooling2D()(feature_map)
    output = layers.Dense(2, activation="softmax", name="predictions")(pooled)
    model = keras.Model(image, output)
    model.get_layer("brightness").set_weights([np.ones((1, 1, 3, 4), np.float32) / 3])
    model.get_layer("predictions").set_weights(
        [np.array([[8.0, -8.0], [0, 0], [0, 0], [0, 0]], np.float32), np.zeros(2, np.float32)]
    )
    return model


def test_gradcam_of_a_one_quadrant_model():
    from artgan.model.gradcam import gradcam, overlay

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    model = quadrant_model()
    heat, probabilities = gradcam(model, pixels, "features_conv", classes=[0, 0, 0])
    assert heat.shape == (3, SIZE, SIZE)
    half = SIZE // 2
    outside = heat.copy()
    outside[:, :half, :half] = 0
    assert np.all(outside == 0)  # nothing outside the quadrant the model sees
    brightness = pixels.astype(np.float32).mean(axis=-1)[:, :half, :half] / 255
    expected = brightness / brightness.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(heat[:, :half, :half], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)

    # class 1 grows as the quadrant darkens: its gradient is negative, so no positive evidence
    against, _ = gradcam(model, pixels, "features_conv", classes=[1, 1, 1])
    assert np.all(against == 0)

    blended = overlay(pixels[0], heat[0])
    assert blended.shape == (SIZE, SIZE, 3) and blended.dtype == np.uint8


def test_gradcam_needs_a_conv_feature_map():
    from artgan.model.gradcam import gradcam

    model = quadrant_model()
    pixels = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(ArtganError, match="no layer 'nope'"):
        gradcam(model, pixels, "nope")
    with pytest.raises(ArtganError, match="not a convolutional feature map"):
        gradcam(model, pixels, "predictions")
