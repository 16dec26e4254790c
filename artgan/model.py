"""The convolutional-recurrent network (CRNN): CNN feature maps read as a sequence by an LSTM.

`build_crnn(hp, num_classes)` is a KerasTuner builder in the keras-io style: every choice is
an `hp.*` call with a sensible default range, so it runs on a bare `HyperParameters()` and a
search space (see `artgan.spec`) narrows or widens those ranges by registering the same names
first. Layers that reports read features from have fixed names (`FEATURE_LAYERS`), never
auto-generated ones like `conv2d_3`.
"""

import keras
from keras import layers

#: Named layers whose outputs are useful features, in network order.
CONV_FEATURES = "features_conv"
LSTM_FEATURES = "features_lstm"
FEATURE_LAYERS = (CONV_FEATURES, LSTM_FEATURES)
DEFAULT_FEATURE_LAYER = CONV_FEATURES

SEQUENCE_MODES = ("rows", "columns", "both")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def conv_block(x, filters, kernel_size, index):
    """Conv -> BatchNorm -> ReLU -> 2x2 max-pool, every layer named after its block."""
    prefix = f"conv_block_{index}"
    x = layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=False, name=f"{prefix}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
    x = layers.Activation("relu", name=f"{prefix}_relu")(x)
    return layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)


def feature_map_to_sequence(feature_map, mode):
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
            raise ValueError("sequence='both' needs a square feature map")
        return layers.Concatenate(axis=1, name="sequence_both")(
            [rows(feature_map), columns(feature_map)]
        )
    raise ValueError(f"sequence must be one of {SEQUENCE_MODES}, got {mode!r}")


def build_crnn(hp, num_classes):
    """Build and compile a CRNN classifier from hyperparameters `hp`.

    The input is an (input_size, input_size, 3) float image scaled to [0, 1].
    """
    input_size = hp.Int("input_size", 32, 256, step=32, default=96)
    blocks = hp.Int("conv_blocks", 2, 5, default=3)
    base_filters = hp.Choice("base_filters", [16, 32, 64], default=32)
    growth = hp.Choice("filter_growth", [1.0, 1.5, 2.0], default=2.0)
    kernel_size = hp.Choice("kernel_size", [3, 5], default=3)
    sequence = hp.Choice("sequence", list(SEQUENCE_MODES), default="rows")
    lstm_units = hp.Choice("lstm_units", [32, 64, 128, 256], default=64)
    bidirectional = hp.Boolean("bidirectional", default=False)
    dropout = hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.3)

    if input_size // 2**blocks < 1:
        raise ValueError(f"{blocks} conv blocks shrink a {input_size} px input to nothing")

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    for index in range(1, blocks + 1):
        filters = int(round(base_filters * growth ** (index - 1)))
        x = conv_block(x, filters, kernel_size, index)
    x = layers.Identity(name=CONV_FEATURES)(x)

    sequence_input = feature_map_to_sequence(x, sequence)
    lstm = layers.LSTM(lstm_units, name="lstm")
    if bidirectional:
        lstm = layers.Bidirectional(lstm, name="bilstm")
    x = layers.Identity(name=LSTM_FEATURES)(lstm(sequence_input))
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)

    model = keras.Model(inputs, outputs, name="crnn")
    model.compile(
        optimizer=build_optimizer(hp),
        loss="sparse_categorical_crossentropy",
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        ],
    )
    return model


def build_optimizer(hp):
    """The optimizer and learning rate; SGD's momentum only exists when SGD is chosen."""
    name = hp.Choice("optimizer", list(OPTIMIZERS), default="adam")
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    if name == "sgd":
        with hp.conditional_scope("optimizer", ["sgd"]):
            momentum = hp.Float("momentum", 0.0, 0.95, default=0.9)
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.Adam(learning_rate)


def feature_extractor(model, layer_name=DEFAULT_FEATURE_LAYER):
    """A model mapping images to the named layer's output as one vector per image.

    Conv feature maps are global-average-pooled (a compact, translation-tolerant
    description of the painting); other outputs are flattened.
    """
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
