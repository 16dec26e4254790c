"""The bench's pure helpers (bench/bench.py): the multiply-add count its FLOP/s figures rest
on, and the backbone table's arithmetic."""

import sys

from artgan.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))

import bench  # noqa: E402


def test_flops_count_every_multiply_add_of_convs_and_dense_layers():
    import keras
    from keras import layers

    image = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same")(image)  # 8*8 positions * 3*3*3 inputs * 8 filters
    x = layers.ReLU()(x)  # cheap: not counted
    x = layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8 * 3*3 * 8 channels
    x = layers.Conv2D(8, 1, groups=2)(x)  # 8*8 * 1*1 * (8 / 2 groups) * 8
    x = layers.Conv2D(4, 3, strides=2, padding="valid")(x)  # 3*3 positions * 3*3*8 * 4
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5)(x)  # 4 * 5
    model = keras.Model(image, outputs)
    macs = 8 * 8 * 3 * 3 * 3 * 8 + 8 * 8 * 3 * 3 * 8 + 8 * 8 * 4 * 8 + 3 * 3 * 3 * 3 * 8 * 4 + 20
    assert macs == 23_092
    assert bench.model_flops(model) == 2 * macs
    nested = keras.Sequential([keras.Input((8, 8, 3)), model])
    assert bench.model_flops(nested) == 2 * macs


def test_backbone_table_gives_cost_per_image_and_share_of_the_matmul_rate():
    rows = [("small", 224, 4_000_000, 500_000_000, 20.0), ("large", 260, 6_000_000, 10**9, 8.0)]
    lines = bench.backbone_table(rows, peak=100e9)
    assert lines[0].split() == [
        "backbone",
        "input",
        "params",
        "GMAC/image",
        "images/s",
        "time/image",
        "GFLOP/s",
        "of",
        "matmul",
    ]
    # small: 2 * 0.5 GMAC * 20 images/s = 20 GFLOP/s = 20 % of 100; large: 16 GFLOP/s, 2.5x
    assert lines[1].split() == [
        "small",
        "224",
        "px",
        "4,000,000",
        "0.500",
        "20.0",
        "1.00x",
        "20.00",
        "20.0%",
    ]
    assert lines[2].split() == [
        "large",
        "260",
        "px",
        "6,000,000",
        "1.000",
        "8.0",
        "2.50x",
        "16.00",
        "16.0%",
    ]
