"""A backbone read at two scales: the pooled statistics of an EfficientNet-Lite member at its
own input size and at a finer one, side by side.

Style is brushwork and texture, which shrinking a painting to 224 px blurs away. The same
ImageNet network run on a larger copy of the painting sees finer strokes in every stage; its
stage means (`pooled`) join those of the usual size. The feature maps the LSTM head and the
top part read (`stage5`, `stage6`) stay those of the usual size, so every head and
`backbone_trainable` choice works unchanged. The model reads one [0, 1] image at the finer
size and makes the coarse copy itself (an antialiased resize), so saved models still take
one image; both scales share one set of weights.

On the default style data (Lite0, 224 + 320 px, a one-hidden-layer head on the pooled
statistics, three seeds), val accuracy rose from 57.7 % to 59.4 %; embedding costs about
three times as long as Lite0's alone.
"""

from dataclasses import dataclass

from artgan.model.backbones.efficientnet_lite import LITE0, EfficientNetLite


@dataclass(frozen=True)
class MultiScale:
    """`base` read at its own input size and at `input_size` (the finer scale)."""

    name: str
    base: EfficientNetLite
    input_size: int

    @property
    def weights_id(self):
        return f"{self.base.weights_id}-{self.base.input_size}+{self.input_size}"

    @property
    def origin(self):
        sizes = f"{self.base.input_size} and {self.input_size} px"
        return f"{self.base.origin}; pooled statistics at {sizes}"

    def tap_shapes(self):
        shapes = self.base.tap_shapes()
        return {**shapes, "pooled": (2 * shapes["pooled"][0],)}

    def bottom(self, input_size=None):
        """[0, 1] images at `input_size` -> {stage5, stage6 (of the coarse copy), pooled
        (coarse, then fine)}."""
        import keras
        from keras import layers

        size = input_size or self.input_size
        image = keras.Input((size, size, 3), name="image")
        coarse = self.coarse(image)
        network = self.base.bottom(any_size=True)
        small, large = network(coarse), network(image)
        outputs = {
            "stage5": layers.Identity(name="stage5")(small["stage5"]),
            "stage6": layers.Identity(name="stage6")(small["stage6"]),
            "pooled": layers.Concatenate(name="pooled")([small["pooled"], large["pooled"]]),
        }
        return keras.Model(image, outputs, name=f"{self.name}_bottom")

    def coarse(self, image):
        """The copy of `image` at the base member's own input size."""
        from keras import layers

        side = self.base.input_size
        return layers.Resizing(side, side, antialias=True, name="coarse_scale")(image)

    def top(self, stage6_shape, head=True):
        return self.base.top(stage6_shape, head=head)

    def classifier(self):
        """The base member's ImageNet classifier behind the coarse resize."""
        import keras

        image = keras.Input((self.input_size, self.input_size, 3), name="image")
        return keras.Model(image, self.base.classifier()(self.coarse(image)), name=self.name)


LITE0_MULTISCALE = MultiScale("efficientnet_lite0_multiscale", LITE0, 320)
