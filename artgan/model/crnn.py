"""The convolutional-recurrent network (CRNN): CNN feature maps read as a sequence by an LSTM.

`build_model(hp, num_classes)` is a KerasTuner builder in the keras-io style: it takes the
trial's `hp` and reads every choice from it through `artgan.model.parameters.value`, which
holds the one declaration of each hyperparameter (what can be built, its default), so it
runs on a bare `HyperParameters()`; the search space (`search_spaces/*.yaml`) is the only
place where ranges are chosen. The CNN is either
trained from scratch (`backbone: scratch`, `build_crnn`) or an ImageNet-pretrained network
(`build_pretrained_crnn`, see `artgan.model.backbones`) whose feature map at `backbone_layer`
the same LSTM head reads.

A pretrained trial with a frozen bottom trains on cached activations (`artgan.model.embeddings`):
its model's inputs are the cached taps, not images. `deployable_model` turns such a model
into the image -> class model that is saved, with the same layer names and weights.
Layers that reports read features from have fixed names (`FEATURE_LAYERS`), never
auto-generated ones like `conv2d_3`.
"""

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from artgan.model.backbones import BOTTOM_TAPS, SCRATCH, SEQUENCE_TAPS, get_backbone
from artgan.model.batchnorm import FusedBatchNormalization
from artgan.model.parameters import SEQUENCE_MODES, ImpossibleConfiguration, TrialValues, value

#: Named layers whose outputs are useful features, in network order.
CONV_FEATURES = "features_conv"
LSTM_FEATURES = "features_lstm"
HEAD_FEATURES = "features_head"  # the pooled head's hidden layer
FEATURE_LAYERS = (CONV_FEATURES, LSTM_FEATURES, HEAD_FEATURES)
#: Learned by the trial (not the frozen backbone's): what similarity, feature export and the
#: report read by default (`default_feature_layer`). A frozen backbone's `features_conv` is
#: its ImageNet map, the same in every model built on it (Grad-CAM still reads that map:
#: `artgan.model.gradcam`).
LEARNED_FEATURES = (LSTM_FEATURES, HEAD_FEATURES)

#: Fine-tuned backbone layers learn this much slower than the new head.
BACKBONE_LR_SCALE = 0.1


#: Batch-norm momentum of the conv blocks: PyTorch's default (0.1 there), not Keras' 0.99.
#: A search trial makes a few hundred steps; with 0.99 the moving statistics still lean on
#: their initial values after 4 epochs of 30 steps, so validation (which uses them) sits at
#: chance while training accuracy climbs, and early stopping ends the trial there.
BN_MOMENTUM = 0.9


def conv_block(x, filters, kernel_size, index):
    """Conv -> BatchNorm -> ReLU -> 2x2 max-pool, every layer named after its block."""
    prefix = f"conv_block_{index}"
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{prefix}_conv")(
        x
    )
    x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn")(x)
    x = layers.Activation("relu", name=f"{prefix}_relu")(x)
    return layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)


def feature_map_to_sequence(feature_map: keras.KerasTensor, mode: str) -> keras.KerasTensor:
    """Read an (H, W, C) map as a sequence: top-to-bottom rows, left-to-right columns, or both."""
    height, width, channels = feature_map.shape[1:]
    rows = layers.Reshape((height, width * channels), name="sequence_rows")
    columns = keras.Sequential(
        [layers.Permute((2, 1, 3)), layers.Reshape((width, height * channels))],
        name="sequence_columns",
    )
    if mode == "rows":
        return rows(feature_map)
    if mode == "columns":
        return columns(feature_map)
    if mode == "both":
        if height != width:
            raise ImpossibleConfiguration("`sequence` 'both' needs a square feature map")
        return layers.Concatenate(axis=1, name="sequence_both")(
            [rows(feature_map), columns(feature_map)]
        )
    raise ImpossibleConfiguration(f"`sequence`: {mode!r} is not one of {list(SEQUENCE_MODES)}")


def backbone_name(hp: TrialValues) -> str:
    """`scratch` or the name of a pretrained backbone (`artgan.model.backbones.BACKBONES`)."""
    return value(hp, "backbone")


def build_model(hp: TrialValues, num_classes: int) -> keras.Model:
    """The model a trial trains: a scratch CRNN, or a pretrained backbone + LSTM head."""
    if backbone_name(hp) == SCRATCH:
        return build_crnn(hp, num_classes)
    return build_pretrained_crnn(hp, num_classes)


def input_size(hp: TrialValues) -> int:
    """The image size a trial's model reads (a pretrained backbone's own size)."""
    if backbone_name(hp) == SCRATCH:
        return value(hp, "input_size")
    return get_backbone(backbone_name(hp)).input_size


def uses_cache(hp: TrialValues) -> bool:
    """Whether a trial trains on cached backbone activations instead of images."""
    if backbone_name(hp) == SCRATCH:
        return False
    return value(hp, "backbone_trainable") != "all"


def build_crnn(hp: TrialValues, num_classes: int) -> keras.Model:
    """Build and compile a CRNN classifier from hyperparameters `hp`.

    The input is an (input_size, input_size, 3) float image scaled to [0, 1].
    """
    size = input_size(hp)
    blocks = value(hp, "conv_blocks")
    base_filters = value(hp, "base_filters")
    growth = value(hp, "filter_growth")
    kernel_size = value(hp, "kernel_size")

    if size // 2**blocks < 1:
        raise ImpossibleConfiguration(
            f"`conv_blocks` {blocks} shrink a {size} px `input_size` to nothing"
        )

    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    for index in range(1, blocks + 1):
        filters = int(round(base_filters * growth ** (index - 1)))
        x = conv_block(x, filters, kernel_size, index)
    x = layers.Identity(name=CONV_FEATURES)(x)

    model = keras.Model(inputs, lstm_head(hp, x, num_classes), name="crnn")
    return compile_model(model, hp, num_classes)


def lstm_head(
    hp: TrialValues,
    feature_map: keras.KerasTensor,
    num_classes: int,
    pooled: keras.KerasTensor | None = None,
) -> keras.KerasTensor:
    """Feature map -> sequence -> (Bi)LSTM [+ pooled statistics] -> dropout -> softmax."""
    sequence = value(hp, "sequence")
    lstm_units = value(hp, "lstm_units")
    bidirectional = value(hp, "bidirectional")
    dropout = dropout_rate(hp)
    lstm = layers.LSTM(lstm_units, name="lstm")
    if bidirectional:
        lstm = layers.Bidirectional(lstm, name="bilstm")
    x = layers.Identity(name=LSTM_FEATURES)(lstm(feature_map_to_sequence(feature_map, sequence)))
    if pooled is not None:
        pooled = layers.LayerNormalization(name="pooled_norm")(pooled)
        x = layers.Concatenate(name="lstm_and_pooled")([x, pooled])
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def dropout_rate(hp: TrialValues) -> float:
    """The dropout before the classifier, in either head."""
    return value(hp, "dropout")


def pooled_head(
    hp: TrialValues, feature_map: keras.KerasTensor, pooled: keras.KerasTensor, num_classes: int
) -> keras.KerasTensor:
    """[global means of the stages, global mean of the feature map] -> layer norm ->
    dropout -> dense ReLU (`features_head`) -> dropout -> softmax."""
    units = value(hp, "head_units")
    dropout = dropout_rate(hp)
    mean = layers.GlobalAveragePooling2D(name="features_conv_mean")(feature_map)
    x = layers.Concatenate(name="pooled_statistics")([pooled, mean])
    x = layers.LayerNormalization(name="pooled_norm")(x)
    x = layers.Dropout(min(dropout, 0.2), name="input_dropout")(x)
    x = layers.Dense(units, activation="relu", name="head_dense")(x)
    x = layers.Identity(name=HEAD_FEATURES)(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def build_pretrained_crnn(
    hp: TrialValues, num_classes: int, image_input: bool = False
) -> keras.Model:
    """An ImageNet-pretrained backbone's feature map at `backbone_layer`, read by the LSTM.

    With `backbone_trainable` frozen or top (and `image_input` False) the model's inputs are
    the backbone's cached bottom taps (`BOTTOM_TAPS`); the last block and head conv, when
    the tap needs them, run (and with `top`, learn) inside the model. With `all`, or
    `image_input`, the input is the [0, 1] image and the whole backbone is inside.
    BatchNorm layers of the backbone always run in inference mode.
    """
    backbone = get_backbone(backbone_name(hp))
    tap = value(hp, "backbone_layer")
    trainable = value(hp, "backbone_trainable")
    head = value(hp, "head")
    use_pooled = head == "pooled" or value(hp, "pooled_stages")
    needed = ["stage6" if SEQUENCE_TAPS[tap] else tap] + (["pooled"] if use_pooled else [])

    if image_input or trainable == "all":
        image = keras.Input((backbone.input_size, backbone.input_size, 3), name="image")
        bottom = backbone.bottom()
        bottom.trainable = trainable == "all"
        taps, inputs = bottom(image, training=False), image
        fine_tuned = bottom.trainable_variables
    else:
        fine_tuned = []
        shapes = backbone.tap_shapes()
        taps = inputs = {name: keras.Input(shapes[name], name=name) for name in needed}
    feature_map = taps[tap] if tap in BOTTOM_TAPS else None
    if feature_map is None:
        top = backbone.top(taps["stage6"].shape[1:], head=tap == "top")
        top.trainable = trainable != "frozen"
        feature_map = top(taps["stage6"], training=False)[tap]
        fine_tuned += top.trainable_variables
    feature_map = layers.Identity(name=CONV_FEATURES)(feature_map)
    if head == "pooled":
        outputs = pooled_head(hp, feature_map, taps["pooled"], num_classes)
    else:
        outputs = lstm_head(hp, feature_map, num_classes, taps["pooled"] if use_pooled else None)
    model = keras.Model(inputs, outputs, name=f"{backbone.name}_crnn")
    if image_input:
        return model  # for inference: weights come from a trained twin (deployable_model)
    return compile_model(model, hp, num_classes, backbone_variables=fine_tuned)


def deployable_model(hp, model, num_classes):
    """The image -> probabilities model to save for a trained trial `model`: the model
    itself when it reads images, else its twin with the backbone's bottom in front, given
    the trained layers' weights by name."""
    if not uses_cache(hp):
        return model
    whole = build_pretrained_crnn(hp, num_classes, image_input=True)
    trained = {layer.name: layer for layer in model.layers}
    for layer in whole.layers:
        if layer.name in trained and layer.weights:
            layer.set_weights(trained[layer.name].get_weights())
    return whole


CLASS_IDS_LAYER = "artgan_classes"


def with_class_ids(model, classes, num_class_ids):
    """`model` with its outputs (one per used class) spread over all `num_class_ids`
    ArtGAN classes by a fixed 0/1 matrix, so saved models predict ArtGAN class ids and
    never a class their training data lacked. Unchanged when every class is used."""
    classes = np.asarray(classes, dtype=np.int64)
    if len(classes) == num_class_ids:
        return model
    spread = layers.Dense(num_class_ids, use_bias=False, trainable=False, name=CLASS_IDS_LAYER)
    outputs = spread(model.outputs[0])
    matrix = np.zeros((len(classes), num_class_ids), dtype=np.float32)
    matrix[np.arange(len(classes)), classes] = 1
    spread.set_weights([matrix])
    return keras.Model(model.inputs, outputs, name=model.name)


def compile_model(model, hp, num_classes, backbone_variables=()):
    """Compile with the trial's optimizer; accuracy, and top-5 accuracy when there are
    more than 5 classes (on 4 genres it would always be 1)."""
    metrics = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(
        optimizer=build_optimizer(hp, backbone_variables),
        loss="sparse_categorical_crossentropy",
        metrics=metrics,
    )
    return model


def build_optimizer(
    hp: TrialValues, backbone_variables: Sequence[keras.Variable] = ()
) -> keras.optimizers.Optimizer:
    """The optimizer and learning rate; SGD's momentum only exists when SGD is chosen.
    `backbone_variables` (a pretrained backbone being fine-tuned) learn at
    `BACKBONE_LR_SCALE` times the rate."""
    name = value(hp, "optimizer")
    learning_rate = value(hp, "learning_rate")
    kwargs = {}
    if name == "sgd":
        kwargs = dict(momentum=value(hp, "momentum"), nesterov=True)
    base = OPTIMIZER_CLASSES[name]
    if not backbone_variables:
        return base(learning_rate, **kwargs)
    scaled = type(f"Backbone{base.__name__}", (SlowerBackbone, base), {})
    return scaled(learning_rate, backbone_variables=backbone_variables, **kwargs)


def learning_rate_at(hp: TrialValues, epoch: int, epochs: int) -> float:
    """The learning rate of (0-based) `epoch` of a trial given `epochs` in all, by the
    trial's `lr_schedule`: `learning_rate` throughout, or a half cosine from it to zero."""
    learning_rate = value(hp, "learning_rate")
    if value(hp, "lr_schedule") == "constant":
        return learning_rate
    return learning_rate * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))


def schedule_callbacks(hp: TrialValues, epochs: int) -> list[keras.callbacks.Callback]:
    """What `fit` needs to follow the trial's `lr_schedule` over `epochs` (none if constant);
    a resumed trial picks up at the epoch it resumes from."""
    if value(hp, "lr_schedule") == "constant":
        return []
    return [
        keras.callbacks.LearningRateScheduler(
            lambda epoch, _: learning_rate_at(hp, epoch, epochs), verbose=0
        )
    ]


OPTIMIZER_CLASSES = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


class SlowerBackbone:
    """Optimizer mixin: `backbone_variables` (pretrained layers being fine-tuned) take
    `BACKBONE_LR_SCALE` times smaller steps (the keras-io fine-tuning advice, with one
    optimizer)."""

    def __init__(self, *args, backbone_variables, **kwargs):
        super().__init__(*args, **kwargs)
        self._backbone_variables = list(backbone_variables)

    def update_step(
        self, gradient: Any, variable: Any, learning_rate: Any
    ) -> Any:  # runs while tracing
        if not hasattr(self, "_slow_ids"):
            self._slow_ids = replica_variable_ids(self._backbone_variables)
        if id(variable) in self._slow_ids:
            learning_rate = learning_rate * BACKBONE_LR_SCALE
        return super().update_step(gradient, variable, learning_rate)  # type: ignore[misc]


def replica_variable_ids(variables: Sequence[keras.Variable]) -> set[int]:
    """The ids of what an optimizer's `update_step` is given for `variables`: on TensorFlow
    each one's tf.Variable, one per replica under a `tf.distribute` strategy (through the
    public `experimental_local_results`); on other backends the variables themselves."""
    if keras.backend.backend() != "tensorflow":
        return {id(variable) for variable in variables}
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    return {
        id(part)
        for variable in variables
        for part in strategy.experimental_local_results(variable.value)
    }


def feature_layers(model):
    """The `FEATURE_LAYERS` that `model` has (a CRNN: conv and LSTM; a pooled head: conv and
    head)."""
    names = {layer.name for layer in model.layers}
    return [name for name in FEATURE_LAYERS if name in names]


def default_feature_layer(model_or_names):
    """The first learned feature layer a model has (given the model or its
    `feature_layers` names, as saved in its metadata), else its conv features."""
    names = (
        model_or_names
        if isinstance(model_or_names, (list, tuple))
        else feature_layers(model_or_names)
    )
    learned = [name for name in names if name in LEARNED_FEATURES]
    return (learned or [CONV_FEATURES])[0]


def feature_extractor(model, layer_name=None):
    """A model mapping images to the named layer's output (default: `default_feature_layer`)
    as one vector per image.

    Conv feature maps are global-average-pooled (a compact, translation-tolerant
    description of the painting); other outputs are flattened.
    """
    layer_name = layer_name or default_feature_layer(model)
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(f"model has no layer {layer_name!r}; layers: {names}") from None
    output = layer.output
    if len(output.shape) == 4:
        output = layers.GlobalAveragePooling2D(name=f"{layer_name}_pool")(output)
    elif len(output.shape) > 2:
        output = layers.Flatten(name=f"{layer_name}_flat")(output)
    return keras.Model(model.inputs, output, name=f"features_{layer_name}")
