"""Loading TensorFlow for the commands that need it, after their arguments are checked.

`main` parses and each `run_*` checks its arguments, task and spec first (light imports
only), then calls `load_tensorflow` before importing what trains or runs models, so a typo,
a missing file or a bad spec answers at once instead of after TensorFlow's few seconds.
"""

import os


def load_tensorflow() -> None:
    """Load TensorFlow without its C++ start-up chatter (GPUs stay visible).

    TF 2.21 writes its oneDNN notice and CUDA probing lines straight to file descriptor 2,
    ignoring TF_CPP_MIN_LOG_LEVEL, so stderr is pointed at /dev/null while TensorFlow loads
    and lists its devices. Python errors still show: they are printed after it is restored.
    Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
