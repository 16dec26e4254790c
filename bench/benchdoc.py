"""docs/benchmarks.md, written by `make bench` (bench/bench.py), never by hand.

Each section of the page is what one bench section printed, verbatim, under the machine it
ran on and the command that ran it. A run replaces the sections it measured and keeps the
others (`make bench ARGS="--only search"` rewrites only "search"), so the page always holds
the latest measurement of each. The prose that explains a section lives here, in `SECTIONS`.
"""

import contextlib
import io
import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

HEADER = """\
# Benchmarks

<!-- Written by `make bench` (bench/bench.py + bench/benchdoc.py). Do not edit by hand: edit
the prose in bench/benchdoc.py and rerun `make bench` (or `--only NAME` for one section). -->

`make bench` measures artgan against plain baselines **in the same run**, so each ratio holds
on the machine it was measured on even when absolute figures differ. Each section below is
what the bench printed, under the machine and the command that produced it; a run rewrites
the sections it measured and keeps the others. Rerun on your machine to get your figures:

```sh
make bench                          # every section (tens of minutes on 2 cores)
make bench ARGS="--only training"   # one section: pipeline, training, backbone, workers, search
```
"""

#: name -> (title, what the section measures and how to read it; no figures here).
SECTIONS = {
    "pipeline": (
        "Input pipeline",
        """\
Images per second of artgan's decode cache and batch generator against a plain per-image
`cv2.imread` + `cv2.resize` generator, on real WikiArt JPEGs. The first epoch does more than
the plain loop (content sniffing and bomb checks in Pillow, letterboxing, area-averaging for
large shrinks, an atomic cache write); every later epoch of every trial reads the
memory-mapped cache and skips decoding, so input is never what limits training.""",
    ),
    "training": (
        "Training speed",
        """\
The default CRNN at the given size: images per second and achieved FLOP/s with artgan's
fused batch norm and, as the plain baseline in the same run, with Keras' own
`BatchNormalization`, beside a 2048x2048 `tf.matmul` (what the machine achieves right now).
The last line names the CPU's vector instructions, whether oneDNN is on and TensorFlow's
threads, which decide the speed:

1. **oneDNN.** TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with
   AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (`DefaultOneDnnPolicy` in TensorFlow's
   `core/util/port.cc`); on AVX2-only CPUs it runs its plain kernels, several times slower.
   `python -m artgan`, `make bench` and the tests set `TF_ENABLE_ONEDNN_OPTS=1` unless you
   set it; set it yourself before importing TensorFlow when you call artgan from Python (a
   search that trains on the CPU without oneDNN says so in its log).
2. **Batch norm.** Keras 3 normalizes with separate ops (moments, scale, shift and each one's
   gradient), each a pass over the activations. The CRNN's conv blocks use
   `FusedBatchNormalization` (`artgan/model/batchnorm.py`): Keras' layer and numbers (tested
   against it, gradients included), computed by TensorFlow's fused kernel when oneDNN is on,
   and Keras' own ops otherwise. Saved models load anywhere.

Tried and not kept: XLA (`jit_compile=True`), one inter-op thread, unrolling the LSTM (under
10 % of a step), reordering pool and ReLU.""",
    ),
    "backbone": (
        "Pretrained backbones",
        """\
Every registered backbone's bottom (stem to stage 6: what artgan embeds once per painting)
on the same real paintings at its own input size: parameters, multiply-adds per image
(counted from the Keras layers), images/s of the warm model batch by batch as the embedding
cache runs it, the time per image against Lite0's (what a larger member's extra accuracy
costs), and the achieved FLOP/s as a share of the same run's matmul rate. Depthwise
convolutions are memory-bound, so the backbones reach a smaller share of the matmul rate
than the plain CNN; each runs once per image, and every later trial reads the cache. Then
Lite0's one-off embedding (each painting and its mirror image, model build and cache write
included) and a head-only trial on its cached activations against a scratch-CRNN trial at
64 px on the same paintings.""",
    ),
    "workers": (
        "Scaling out",
        """\
One small search (same seed, so the same trials) as a single process, as a KerasTuner chief
+ 1 worker and as a chief + 2 workers, with the decoded images cached first. On a CPU-only
machine more workers than cores is not faster: each trial already uses the cores it can.
Workers pay off with several GPUs, machines or many idle cores
([distributed.md](distributed.md)).""",
    ),
    "search": (
        "The same search, artgan and plain KerasTuner",
        """\
The default genre search shrunk to a few trials, with artgan and the plain way
(`bench/plain.py`: a `kt.HyperModel` over the same space and model builders, fed by a
per-item `cv2.imread` + resize generator with the frozen backbone inside the model, Keras'
stock batch norm, no caches, no pruning), same tuner and seed, cold caches. The last line is
artgan's resident memory after each trial: it stays flat because `model/_tf_compat.py`
removes the `CustomGradient-N` entries each trial's traced train steps add to TensorFlow's
global gradient registry, which TensorFlow never removes and which pin each step's graph
after `clear_session()` (tensorflow/tensorflow#80895).""",
    ),
}

_BLOCK = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n", re.S)


class Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def captured():
    """Print as usual; the `Tee` yielded keeps what was printed."""
    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee


def machine():
    """One line naming the machine a section ran on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import tensorflow as tf

    return (
        f"{model}, {len(os.sched_getaffinity(0))} usable of {os.cpu_count()} cores, "
        f"{memory:.0f} GiB memory, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}"
    )


def commit():
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def results(printed):
    """A section's own lines: from its `== title` line on (KerasTuner's per-trial chatter,
    printed before it, is left out)."""
    lines = printed.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("== ")]
    return "\n".join(lines[starts[-1] :] if starts else lines)


def section(name, printed, argv):
    title, intro = SECTIONS[name]
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = f"make bench ARGS={shlex.quote(shlex.join(argv))}" if argv else "make bench"
    resized = [arg for arg in argv if arg.startswith("--") and arg not in ("--only", "--no-doc")]
    caveat = (
        (
            " Sizes below the defaults: in runs this small, start-up costs (processes,"
            " TensorFlow, the first epoch's tracing) weigh more than in a real search; "
            "`make bench` gives the representative figures."
        )
        if resized
        else ""
    )
    return (
        f"<!-- bench:{name} -->\n## {title}\n\n{intro}\n\n"
        f"Measured {when} (commit {commit()}) with `{command}` on {machine()}:{caveat}\n\n"
        f"```text\n{results(printed)}\n```\n<!-- /bench:{name} -->\n"
    )


def update(measured, argv, doc=DOC):
    """Write `doc` with the sections in `measured` (name -> printed text) replaced and the
    others kept as they were (or "not measured yet")."""
    text = doc.read_text() if doc.is_file() else ""
    old = {match.group(1): match.group(0) for match in _BLOCK.finditer(text)}
    parts = [HEADER]
    for name, (title, _) in SECTIONS.items():
        if name in measured:
            parts.append(section(name, measured[name], argv))
        else:
            parts.append(
                old.get(name)
                or (
                    f"<!-- bench:{name} -->\n## {title}\n\nNot measured yet: "
                    f'`make bench ARGS="--only {name}"`.\n<!-- /bench:{name} -->\n'
                )
            )
    doc.write_text("\n".join(parts))
    return doc
