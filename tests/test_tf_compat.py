"""The TensorFlow private part artgan uses (artgan/model/_tf_compat.py) still exists and
still frees what a fitted model leaves behind."""

import gc

import keras
import numpy as np
import tensorflow as tf

from artgan.model import _tf_compat


def test_tensorflow_is_a_tested_version():
    assert tf.__version__ in _tf_compat.TESTED_VERSIONS, (
        f"TensorFlow {tf.__version__} is untested: check whether fitting a model still leaves "
        "CustomGradient entries behind (artgan/model/_tf_compat.py), then add it to "
        "TESTED_VERSIONS"
    )


def fit_tiny_model():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.zeros((4, 8, 8, 3), "float32"), np.array([0, 1, 0, 1]), verbose=0)


def live_graphs():
    gc.collect()
    return sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())


def custom_gradients(registry):
    return {name for name in registry if name.startswith(_tf_compat.CUSTOM_GRADIENT)}


def test_a_fitted_model_leaves_its_graphs_behind_unless_released():
    registry = _tf_compat.gradient_registry()
    assert registry is not None, "TensorFlow's gradient registry moved"
    keras.backend.clear_session()
    graphs, names = live_graphs(), custom_gradients(registry)

    fit_tiny_model()  # what TensorFlow does on its own: the registry pins the graphs
    keras.backend.clear_session()
    assert custom_gradients(registry) > names and live_graphs() > graphs
    for name in custom_gradients(registry) - names:  # tidy up the demonstration
        del registry[name]
    assert live_graphs() == graphs

    with _tf_compat.releasing_graphs():
        fit_tiny_model()
    keras.backend.clear_session()
    assert custom_gradients(registry) == names and live_graphs() == graphs


def test_the_onednn_switch_is_readable():
    assert _tf_compat.onednn_enabled()  # conftest sets TF_ENABLE_ONEDNN_OPTS=1, as the CLI does


def test_cpu_training_without_onednn_is_flagged(monkeypatch):
    assert not _tf_compat.slow_cpu_kernels()  # oneDNN on (conftest, like the CLI)
    monkeypatch.setattr(_tf_compat, "onednn_enabled", lambda: False)
    assert _tf_compat.slow_cpu_kernels()  # no GPU here: a search warns that it runs slowly
