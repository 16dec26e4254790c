"""Where a model looks: Grad-CAM heat maps on a named conv-feature layer (keras-io's recipe).

`gradcam(model, pixels)` weights each channel of the layer's feature map (`features_conv`,
the last conv block before the LSTM, by default) by the mean gradient of the class score
over that map, sums the channels and keeps the positive part, one map per image scaled to
[0, 1]. The class score is the log-probability of the class (the model ends in a softmax;
its log does not saturate as a confident probability does). `overlay` blends a map over the
painting; `explain_files` does both for image files and writes one PNG per image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from artgan.data.generators import model_input
from artgan.data.images import ImageError, decode_image
from artgan.errors import ArtganError
from artgan.files import atomic_path, make_folder
from artgan.model.saved import load_model

log = logging.getLogger(__name__)

DEFAULT_LAYER = "features_conv"
ALPHA = 0.45


def gradcam(model, pixels, layer=DEFAULT_LAYER, classes=None, batch_size=16):
    """(heat maps (N, h, w) in [0, 1] at the layer's resolution, probabilities (N, C)) for
    uint8 `pixels` (N, H, W, 3); the map of `classes[i]` (default: the predicted class)."""
    import keras
    import tensorflow as tf

    try:
        target = model.get_layer(layer)
    except ValueError:
        raise ArtganError(f"model has no layer {layer!r} (`layer`)") from None
    if len(target.output.shape) != 4:
        raise ArtganError(
            f"layer {layer!r} is not a convolutional feature map "
            f"(output shape {tuple(target.output.shape)}); Grad-CAM needs one"
        )
    probe = keras.Model(model.inputs, [target.output, model.output])
    maps, probabilities = [], []
    for start in range(0, len(pixels), batch_size):
        images = tf.convert_to_tensor(model_input(pixels[start : start + batch_size]))
        with tf.GradientTape() as tape:
            features, output = probe([images], training=False)
            chosen = (
                tf.argmax(output, axis=1)
                if classes is None
                else tf.constant(np.asarray(classes[start : start + batch_size]), tf.int64)
            )
            score = tf.math.log(tf.gather(output, chosen, axis=1, batch_dims=1) + 1e-12)
        gradients = tape.gradient(score, features)
        if gradients is None:
            raise ArtganError(f"the model's output does not depend on layer {layer!r}")
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
        peak = cam.max(axis=(1, 2), keepdims=True)
        maps.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
        probabilities.append(np.asarray(output))
    return np.concatenate(maps), np.concatenate(probabilities)


def overlay(pixels, heat, alpha=ALPHA):
    """uint8 RGB painting with a [0, 1] heat map (any resolution) blended over it (jet)."""
    from matplotlib import colormaps

    height, width = pixels.shape[:2]
    resized = Image.fromarray(np.uint8(np.clip(heat, 0, 1) * 255)).resize(
        (width, height), Image.BILINEAR
    )
    colours = colormaps["jet"](np.asarray(resized) / 255.0)[..., :3] * 255
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.uint8(np.clip(blended, 0, 255))


#: An explain PNG is enlarged to at least this width (whole multiples), so its caption reads.
CAPTIONED_WIDTH = 448
CAPTION_HEIGHT = 24


def captioned(panel, text):
    """uint8 RGB `panel`, enlarged to at least `CAPTIONED_WIDTH` px wide, above a white
    strip with one line of `text` (the strip widens the image if the text needs it)."""
    image = Image.fromarray(panel)
    scale = -(-CAPTIONED_WIDTH // image.width)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    font = ImageFont.load_default(size=13)
    width = max(image.width, int(ImageDraw.Draw(image).textlength(text, font=font)) + 12)
    canvas = Image.new("RGB", (width, image.height + CAPTION_HEIGHT), "white")
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((6, image.height + 5), text, fill=(20, 20, 20), font=font)
    return canvas


def explain_files(
    model_path: str | Path,
    image_paths: Iterable[str | Path],
    out: str | Path,
    layer: str | None = None,
) -> Iterator[tuple[str | Path, Path | str, str | None, float | None]]:
    """Grad-CAM of a saved model's predicted class for image files: writes
    `out/<name>.gradcam.png` (painting | overlay, captioned with the class, its probability
    and the layer) per readable image; yields
    (path, written file, class name, probability) or (path, reason, None, None)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtganError(f"`out` {out}: is a file; give a folder for the heat maps")
    model, metadata = load_model(model_path)
    names, size = metadata["class_names"], metadata["input_size"]
    layer = layer or DEFAULT_LAYER
    make_folder(out)
    for path in image_paths:
        try:
            pixels = decode_image(path, size, metadata["resize"])
        except ImageError as error:
            yield path, str(error), None, None
            continue
        heat, probabilities = gradcam(model, pixels[None], layer)
        predicted = int(probabilities[0].argmax())
        side_by_side = np.concatenate([pixels, overlay(pixels, heat[0])], axis=1)
        caption = (
            f"{names[predicted]} {probabilities[0, predicted]:.1%} · Grad-CAM of "
            f"{names[predicted]} on {layer}"
        )
        target = out / f"{Path(path).stem}.gradcam.png"
        with atomic_path(target, suffix=".png") as temporary:
            captioned(side_by_side, caption).save(temporary, format="PNG")
        log.debug(f"{path}: {names[predicted]} ({probabilities[0, predicted]:.1%}) -> {target}")
        yield path, target, names[predicted], float(probabilities[0, predicted])
