"""`make bench`: how fast artgan feeds and trains, against plain baselines in the same run.

1. Input pipeline on real WikiArt JPEGs: images/s of artgan's cache + ImageLabelGenerator
   against a per-item `cv2.imread` + `cv2.resize` Python generator (the original project's
   approach), for the first epoch (which decodes) and later epochs (artgan reads its cache).
2. Training: images/s and achieved FLOP/s of the default CRNN at 128 px, with artgan's fused
   batch norm and with Keras' own (the plain baseline), beside this machine's achievable
   FLOP/s measured with a large `tf.matmul` in the same run, and the CPU's vector
   instructions, whether oneDNN is on and TensorFlow's thread settings beside them.
3. Pretrained backbones: for every registered backbone, its input size, parameters,
   multiply-adds per image and embedding throughput (images/s, time per image against
   Lite0's, and as a fraction of the same matmul rate), then the time of a head-only trial
   on Lite0's cached activations against a scratch-CRNN trial on the same paintings.
4. Scaling out: wall time of one small search run as a single process, as a KerasTuner
   chief + 1 worker, and as a chief + 2 workers (`--only workers` runs just this).
5. The same small search with artgan and with plain KerasTuner on per-item cv2 decoding
   (`bench/plain.py`, `--only search`): both wall times, their ratio, the best scores, and
   artgan's resident memory trial after trial.

Not part of the tests: it takes a few minutes and its numbers depend on the machine. What
each section prints is also written to docs/benchmarks.md (`bench/benchdoc.py`; `--no-doc`
leaves the page alone).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the CLI does
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from benchdoc import SECTIONS, captured, update  # noqa: E402

from artgan.data.labels import load_labels  # noqa: E402
from artgan.paths import data_root  # noqa: E402


def baseline_batches(paths, labels, size, batch_size):
    """The plain approach: decode and resize every image, every epoch, one at a time."""
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start : start + batch_size]:
            image = cv2.imread(str(path))
            image = cv2.cvtColor(cv2.resize(image, (size, size)), cv2.COLOR_BGR2RGB)
            batch.append(image.astype(np.float32) / 255)
        yield np.stack(batch), labels[start : start + batch_size]


def baseline_epoch(paths, labels, size, batch_size):
    return sum(len(x) for x, _ in baseline_batches(paths, labels, size, batch_size))


def artgan_epoch(generator):
    count = 0
    for index in range(len(generator)):
        x, _ = generator[index]
        count += len(x)
    generator.on_epoch_end()
    return count


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def bench_pipeline(table, size, batch_size):
    from artgan.data.generators import ImageLabelGenerator
    from artgan.data.splits import load_split_images

    paths, labels = table.image_paths(), table.labels()
    n, base_first = timed(baseline_epoch, paths, labels, size, batch_size)
    _, base_later = timed(baseline_epoch, paths, labels, size, batch_size)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ARTGAN_CACHE"] = cache

        def first_epoch():
            split = load_split_images(table, size, progress=False)
            generator = ImageLabelGenerator(
                split, batch_size, shuffle=True
            )  # same work as baseline
            return artgan_epoch(generator), generator

        (_, generator), ours_first = timed(first_epoch)
        _, ours_later = timed(artgan_epoch, generator)
    rows = [
        ("first epoch (decode)", n / base_first, n / ours_first),
        ("later epochs", n / base_later, n / ours_later),
    ]
    print(f"\n== input pipeline: {n} real WikiArt images -> {size} px, batch {batch_size}")
    print(f"{'':24}{'cv2 per item':>14}{'artgan':>12}{'ratio':>9}")
    for name, base, ours in rows:
        print(f"{name:24}{base:>10.0f} i/s{ours:>8.0f} i/s{ours / base:>8.1f}x")


def layer_flops(layer):
    """Forward FLOPs (2 x multiply-adds) of a (depthwise or grouped) conv or Dense layer; 0
    for cheap layers; nested models are summed."""
    import keras
    from keras import layers

    if isinstance(layer, keras.Model):
        return model_flops(layer)
    if isinstance(layer, layers.DepthwiseConv2D):
        _, height, width, channels = layer.output.shape
        k_h, k_w = layer.kernel_size
        return 2 * height * width * k_h * k_w * channels
    if isinstance(layer, layers.Conv2D):
        _, height, width, out_channels = layer.output.shape
        k_h, k_w = layer.kernel_size
        in_channels = layer.input.shape[-1] // layer.groups
        return 2 * height * width * k_h * k_w * in_channels * out_channels
    if isinstance(layer, layers.Dense):
        return 2 * layer.input.shape[-1] * layer.units
    return 0


def lstm_flops(layer):
    """Forward FLOPs of an LSTM (or Bidirectional LSTM): 4 gates x (input + state) per step."""
    steps, features = layer.input.shape[1:]
    inner = getattr(layer, "forward_layer", layer)
    directions = 2 if hasattr(layer, "forward_layer") else 1
    return directions * 2 * steps * 4 * (features + inner.units) * inner.units


def model_flops(model):
    return sum(
        lstm_flops(layer) if layer.name in ("lstm", "bilstm") else layer_flops(layer)
        for layer in model.layers
    )


def bench_training(table, size, batch_size, steps):
    """The default CRNN's training rate against the machine's matmul rate, with artgan's
    fused batch norm and, as the plain baseline in the same run, Keras' own."""
    import keras_tuner as kt
    from plain import stock_batch_norm

    from artgan.data.generators import ImageLabelGenerator
    from artgan.data.splits import load_split_images
    from artgan.model.crnn import build_crnn

    split = load_split_images(table.subset(np.arange(steps * batch_size)), size, progress=False)
    generator = ImageLabelGenerator(split, batch_size, shuffle=True, augment=True)

    def train_rate(model):
        model.fit(generator, epochs=1, steps_per_epoch=2, verbose=0)  # build + trace
        seconds = min(timed(model.fit, generator, epochs=1, verbose=0)[1] for _ in range(REPEATS))
        return len(split) / seconds

    hp = kt.HyperParameters()
    hp.Fixed("input_size", size)
    with stock_batch_norm():
        plain = train_rate(build_crnn(hp, num_classes=table.num_classes))
    model = build_crnn(hp, num_classes=table.num_classes)
    images_per_second = train_rate(model)
    forward = model_flops(model)
    achieved = 3 * forward * images_per_second  # forward + backward ~ 3x forward
    peak, n = matmul_rate()

    print(
        f"\n== training: default CRNN at {size} px ({model.count_params():,} parameters), "
        f"batch {batch_size}, {len(split)} real images, best of {REPEATS} epochs"
    )
    print(f"forward cost        {forward / 1e9:8.3f} GFLOP/image")
    print(f"Keras batch norm    {plain:8.1f} images/s (plain baseline, same run)")
    print(
        f"training            {images_per_second:8.1f} images/s ({images_per_second / plain:.2f}x)"
    )
    print(f"achieved            {achieved / 1e9:8.2f} GFLOP/s (3x forward per image)")
    print(f"tf.matmul {n}x{n}   {peak / 1e9:8.2f} GFLOP/s (this machine, same run)")
    print(f"fraction of matmul  {achieved / peak:8.1%}")
    print(cpu_facts())


MATMUL_SIZE = 2048
REPEATS = 3  # timings take the best of a few runs: this VM's speed varies minute to minute
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_facts():
    """What decides CPU training speed: vector instructions, cores, TensorFlow's threads."""
    import tensorflow as tf

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    from artgan.model._tf_compat import onednn_enabled

    threading = tf.config.threading
    settings = {
        name: os.environ.get(name, "unset")
        for name in (
            "TF_ENABLE_ONEDNN_OPTS",
            "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS",
            "OMP_NUM_THREADS",
        )
    }
    return (
        f"CPU: {' '.join(f for f in SIMD_FLAGS if f in flags) or 'unknown'}; "
        f"{len(os.sched_getaffinity(0))} usable cores; TensorFlow intra-op threads "
        f"{threading.get_intra_op_parallelism_threads() or 'auto'}, inter-op "
        f"{threading.get_inter_op_parallelism_threads() or 'auto'}; "
        f"oneDNN {'on' if onednn_enabled() else 'off'}; "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
    )


def matmul_rate(n=MATMUL_SIZE, repeats=10):
    """FLOP/s of a large float32 `tf.matmul`: what this machine can achieve right now."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()

    def run():
        started = time.perf_counter()
        for _ in range(repeats):
            c = tf.linalg.matmul(a, b)
        c.numpy()
        return time.perf_counter() - started

    return 2 * n**3 * repeats / min(run() for _ in range(REPEATS)), n


def embedding_rate(bottom, pixels):
    """Images/s of a warm backbone bottom over `pixels` (uint8), batch by batch as
    `embed_split` runs it, best of `REPEATS` passes: compute only, no model build or cache."""
    from artgan.data.generators import model_input
    from artgan.model.embeddings import BATCH_SIZE

    def run():
        for start in range(0, len(pixels), BATCH_SIZE):
            bottom.predict_on_batch(model_input(pixels[start : start + BATCH_SIZE]))

    bottom.predict_on_batch(model_input(pixels[:BATCH_SIZE]))  # build + trace
    return len(pixels) / min(timed(run)[1] for _ in range(REPEATS))


def backbone_row(backbone, table):
    """(name, input size, parameters, multiply-adds per image, images/s) of one registered
    backbone's bottom (what artgan embeds) on `table`'s paintings at its input size."""
    from artgan.data.splits import load_split_images

    pixels = load_split_images(table, backbone.input_size, progress=False).pixels
    bottom = backbone.bottom()
    return (
        backbone.name,
        backbone.input_size,
        bottom.count_params(),
        bottom_flops(backbone) // 2,
        embedding_rate(bottom, pixels),
    )


def bottom_flops(backbone):
    """Forward FLOPs of a backbone's bottom for one image. A multi-scale backbone runs its
    base member's network (built for any size, so its layers' shapes are unknown) once at
    the base's size and once at its own: counted at each."""
    base = getattr(backbone, "base", None)  # artgan.model.backbones.multiscale.MultiScale
    if base is None:
        return model_flops(backbone.bottom())
    return sum(model_flops(base.bottom(size)) for size in (base.input_size, backbone.input_size))


def backbone_table(rows, peak):
    """The backbone rows as printed lines: cost per image against the first (Lite0, the
    first registered) and achieved FLOP/s as a share of the matmul rate `peak`."""
    width = max(20, *(len(row[0]) + 2 for row in rows))
    lines = [
        f"{'backbone':{width}}{'input':>7}{'params':>11}{'GMAC/image':>12}{'images/s':>10}"
        f"{'time/image':>12}{'GFLOP/s':>9}{'of matmul':>11}"
    ]
    first = rows[0][4]
    for name, size, params, macs, rate in rows:
        lines.append(
            f"{name:{width}}{size:>4} px{params:>11,}{macs / 1e9:>12.3f}{rate:>10.1f}"
            f"{first / rate:>11.2f}x{2 * macs * rate / 1e9:>9.2f}{2 * macs * rate / peak:>11.1%}"
        )
    return lines


def bench_backbone(table, images, epochs, batch_size):
    """Every registered backbone's embedding rate against the matmul rate, then a head-only
    trial on Lite0's cached activations against a scratch-CRNN trial."""
    import keras_tuner as kt

    from artgan.data.generators import EmbeddingGenerator, ImageLabelGenerator
    from artgan.data.splits import load_split_images
    from artgan.model.backbones import BACKBONES
    from artgan.model.crnn import build_model
    from artgan.model.embeddings import embed_split

    backbone = BACKBONES["efficientnet_lite0"]
    table = table.subset(np.arange(images))
    classes = np.unique(table.labels())
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ARTGAN_CACHE"] = cache
        rows = [backbone_row(each, table) for each in BACKBONES.values()]
        peak, n = matmul_rate()
        pixels = load_split_images(table, backbone.input_size, progress=False)
        embedded, embed_seconds = timed(embed_split, backbone, pixels, flip=True, progress=False)

        def trial(values, generator):
            hp = kt.HyperParameters()
            for name, value in values.items():
                hp.Fixed(name, value)
            model = build_model(hp, len(classes))
            _, seconds = timed(model.fit, generator, epochs=epochs, verbose=0)
            return seconds, model.count_params()

        head = trial(
            {"backbone": backbone.name},
            EmbeddingGenerator(
                embedded,
                pixels.labels,
                ["stage6"],
                batch_size,
                shuffle=True,
                augment=True,
                classes=classes,
            ),
        )
        small = load_split_images(table, 64, progress=False)
        scratch = trial(
            {"backbone": "scratch", "input_size": 64, "conv_blocks": 4},
            ImageLabelGenerator(small, batch_size, shuffle=True, augment=True, classes=classes),
        )
    print(
        f"\n== pretrained backbones: the bottom (what artgan embeds) of each registered one on "
        f"{images} real paintings, best of {REPEATS} passes; tf.matmul {n}x{n} "
        f"{peak / 1e9:.2f} GFLOP/s (same run)"
    )
    print("\n".join(backbone_table(rows, peak)))
    print(
        f"{backbone.name}, embedded once with mirrored copies (model build and cache write "
        f"included): {embed_seconds:.1f} s for {2 * images}"
    )
    print(f"{epochs}-epoch trial      {'seconds':>8} {'params':>10}")
    print(f"  head on cache     {head[0]:8.1f} {head[1]:>10,}")
    print(f"  scratch CRNN 64px {scratch[0]:8.1f} {scratch[1]:>10,}")
    print(
        f"head-only trial vs scratch trial: {head[0] / scratch[0]:.2f}x the time "
        f"({scratch[0] / head[0]:.1f}x faster); with the one-off embedding counted: "
        f"{(head[0] + embed_seconds) / scratch[0]:.2f}x"
    )


def bench_workers(trials, epochs, images, size):
    """The same search (same seed, so the same trials) with 0 (single process), 1 and 2
    worker processes; the decoded-image cache is built first so no run pays for decoding."""
    import pandas as pd

    from artgan.config.spec import experiment_file, load_experiment
    from artgan.data.splits import TaskData
    from artgan.paths import REPO_ROOT

    sets = [
        f"space.input_size={size}",
        f"budget.max_trials={trials}",
        f"budget.epochs={epochs}",
        f"budget.max_train_images={images}",
        f"budget.max_val_images={images // 2}",
        "tuner.type=random",
        "early_stopping.enabled=false",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, ARTGAN_CACHE=os.path.join(work, "cache"), TF_CPP_MIN_LOG_LEVEL="3")
        os.environ["ARTGAN_CACHE"] = env["ARTGAN_CACHE"]
        spec = load_experiment(experiment_file("genre"), [*sets, f"output={work}/warm"])
        TaskData.from_spec(spec).splits(size)  # decode once, shared by every run below
        load = os.getloadavg()[0]
        for name, workers in (
            ("single process", None),
            ("chief + 1 worker", 1),
            ("chief + 2 workers", 2),
        ):
            output = Path(work) / f"run{workers or 0}"
            command = [
                sys.executable,
                "-m",
                "artgan",
                "search",
                "genre",
                *sum((["--set", s] for s in [*sets, f"output={output}"]), []),
            ]
            if workers:
                command += ["--workers", str(workers)]
            started = time.perf_counter()
            result = subprocess.run(
                command, env=env, cwd=REPO_ROOT, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            if result.returncode:
                sys.exit(f"{name} search failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
            table = pd.read_csv(output / "trials.csv")
            rows.append(
                (
                    name,
                    seconds,
                    len(table),
                    table["wall_seconds"].mean(),
                    table["wall_seconds"].sum(),
                )
            )
    print(
        f"\n== scaling out: one {trials}-trial search (genre, {size} px, {images} train / "
        f"{images // 2} val images, {epochs} epochs), {os.cpu_count()} CPU cores, "
        f"load average {load:.1f} before the runs"
    )
    print(f"{'':20}{'wall':>9}{'trials':>8}{'mean trial':>12}{'sum of trials':>15}")
    for name, seconds, count, mean, total in rows:
        print(f"{name:20}{seconds:>7.1f} s{count:>8}{mean:>10.1f} s{total:>13.1f} s")
    one, two = rows[1][1], rows[2][1]
    print(
        f"speed-up of 2 workers over 1 worker: {one / two:.2f}x (wall {one:.1f} s -> {two:.1f} s); "
        f"a chief + 1 worker vs a single process: {rows[1][1] - rows[0][1]:+.1f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images for the pipeline test")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=20, help="batches timed in training")
    parser.add_argument(
        "--only",
        action="append",
        choices=tuple(SECTIONS),
        help="run only these sections (repeatable; default: all)",
    )
    parser.add_argument(
        "--search-trials", type=int, default=4, help="trials in the workers search"
    )
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument(
        "--search-images",
        type=int,
        default=200,
        help="training images in the workers search (half as many for validation)",
    )
    parser.add_argument("--search-size", type=int, default=64)
    parser.add_argument(
        "--backbone-images",
        type=int,
        default=500,
        help="images embedded and trained on in the backbone section",
    )
    parser.add_argument("--backbone-epochs", type=int, default=3)
    parser.add_argument(
        "--compare-trials", type=int, default=6, help="trials of the artgan-vs-plain search"
    )
    parser.add_argument("--compare-epochs", type=int, default=4)
    parser.add_argument(
        "--compare-images",
        type=int,
        default=240,
        help="training images of that search (half as many for validation)",
    )
    parser.add_argument(
        "--no-doc", action="store_true", help="do not write the results into docs/benchmarks.md"
    )
    args = parser.parse_args()
    sections = set(args.only or SECTIONS)

    root = data_root() / "wikiart-style7"
    table = load_labels(root / "style_train.csv", root / "style_class.txt", root / "images")
    table = table.sample(args.images, seed=0)
    print(f"machine: {os.cpu_count()} CPU cores; data: {root}")
    runs = {
        "pipeline": lambda: bench_pipeline(table, args.size, args.batch_size),
        "training": lambda: bench_training(table, args.size, args.batch_size, args.train_steps),
        "backbone": lambda: bench_backbone(
            table, args.backbone_images, args.backbone_epochs, args.batch_size
        ),
        "workers": lambda: bench_workers(
            args.search_trials, args.search_epochs, args.search_images, args.search_size
        ),
        "search": lambda: bench_against_plain(
            args.compare_trials, args.compare_epochs, args.compare_images
        ),
    }
    measured = {}
    for name, run in runs.items():
        if name in sections:
            with captured() as printed:
                run()
            measured[name] = printed.copy.getvalue()
    if not args.no_doc:
        print(f"\nwritten: {update(measured, sys.argv[1:])}")


def bench_against_plain(trials, epochs, images):
    from plain import bench_search  # beside this file; loads KerasTuner

    bench_search(trials, epochs, images)


if __name__ == "__main__":
    main()
