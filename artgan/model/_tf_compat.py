"""The TensorFlow and Keras private parts artgan touches: the global gradient registry,
whether oneDNN is on (`onednn_enabled`), and where a nested model's outputs sit in the model
that calls it (`call_outputs`), below.

Every traced train step registers a `CustomGradient-N` entry in TensorFlow's global gradient
registry (`ops._gradient_registry`): Keras' optimizer sums the gradients with
`ReplicaContext.all_reduce`, which wraps them in `tf.custom_gradient`. TensorFlow never
removes these entries, and each one holds the train step's whole graph, so every model ever
fitted stays in memory after `clear_session()` and `gc.collect()` (about 12-25 MB per
model here; tensorflow/tensorflow#80895, keras-team/tf-keras#898).
`releasing_graphs()` removes the entries a block of work added, and nothing else.
"""

import functools
import gc
import logging
from contextlib import contextmanager

import keras

log = logging.getLogger(__name__)

TESTED_VERSIONS = ("2.21.0",)
CUSTOM_GRADIENT = "CustomGradient-"


def gradient_registry():
    """TensorFlow's name -> gradient function table, or None on another Keras backend (or a
    TensorFlow that no longer has it: then nothing is released, and nothing breaks)."""
    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


@contextmanager
def releasing_graphs():
    """Run a block that fits a model; afterwards drop the custom gradients it registered,
    so its train and test step graphs are freed once the model itself is."""
    registry = gradient_registry()
    before = set(registry or ())
    try:
        yield
    finally:
        if registry is not None:
            added = [name for name in set(registry) - before if name.startswith(CUSTOM_GRADIENT)]
            for name in added:
                registry.pop(name, None)
            log.debug("released %d custom gradients", len(added))
        gc.collect()


@functools.cache
def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels. TensorFlow turns them on by default only
    on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX; `TF_ENABLE_ONEDNN_OPTS=1`, read
    once when TensorFlow loads, turns them on elsewhere (the CLI sets it)."""
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def slow_cpu_kernels():
    """True when TensorFlow trains on the CPU without oneDNN: about 2.5x slower than with it."""
    if keras.backend.backend() != "tensorflow" or onednn_enabled():
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def call_outputs(layer):
    """The tensors a nested model `layer` gives where its parent model called it (its first
    call), structured like its outputs (a dict of taps stays a dict). Keras keeps them in the
    layer's inbound node: a nested model's public `output` is its own inner tensors."""
    return keras.tree.pack_sequence_as(layer.output, layer._inbound_nodes[0].outputs)
