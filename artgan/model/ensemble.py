"""One model from several trained trials: their class probabilities averaged, as the
ensembles AutoGluon and auto-sklearn build from their best models.

Members that trained on one frozen backbone's cached activations share a single copy of
its bottom in the ensemble, so it costs one backbone pass plus a few small heads; members
that read images are applied whole. Every member must read the same input size. Only
Keras' own layers are used, so a saved ensemble loads and predicts with plain Keras.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from artgan.model.backbones import get_backbone
from artgan.model.crnn import backbone_name, input_size, uses_cache

#: The ensemble's output layer: the mean of its members' class probabilities.
ENSEMBLE_OUTPUT = "predictions"


def ensemble_model(
    members: Sequence[tuple[Any, keras.Model]], name: str = "ensemble"
) -> keras.Model:
    """An image -> probabilities model averaging `members`, each `(hp, model)`: a trial's
    hyperparameters (`keras_tuner.HyperParameters`) and the model it trained (reading cached
    backbone taps or images). Raises ValueError when members read different input sizes."""
    if not members:
        raise ValueError("ensemble_model: members is empty")
    sizes = {input_size(hp) for hp, _ in members}
    if len(sizes) > 1:
        raise ValueError(f"ensemble_model: members read different input sizes {sorted(sizes)}")
    size = sizes.pop()
    image = keras.Input((size, size, 3), name="image")
    taps: dict[str, dict] = {}  # backbone name -> its bottom's outputs, computed once
    outputs = []
    for index, (hp, trained) in enumerate(members, start=1):
        member = keras.Model(
            {tensor.name: tensor for tensor in trained.inputs},
            trained.outputs[0],
            name=f"member_{index}",
        )
        if uses_cache(hp):
            backbone = backbone_name(hp)
            if backbone not in taps:
                bottom = get_backbone(backbone).bottom()
                bottom.trainable = False
                taps[backbone] = bottom(image, training=False)
            outputs.append(
                member({tensor.name: taps[backbone][tensor.name] for tensor in trained.inputs})
            )
        else:
            outputs.append(member(image))
    mean = (
        layers.Average(name=ENSEMBLE_OUTPUT)
        if len(outputs) > 1
        else layers.Identity(name=ENSEMBLE_OUTPUT)
    )
    return keras.Model(image, mean(outputs if len(outputs) > 1 else outputs[0]), name=name)
