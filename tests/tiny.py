"""Overrides that shrink any experiment to a seconds-long real search (32 px, 48/24 images)."""

TINY = [
    "space.input_size=32",
    "space.conv_blocks=2",
    "space.base_filters=16",
    "space.lstm_units=32",
    "budget.max_train_images=48",
    "budget.max_val_images=24",
    "budget.epochs=1",
    "tuner.type=random",
]
