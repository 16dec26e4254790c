"""`make rehearse`: every step of a full-data run on a stand-in WikiArt tree, with its cost.

    nice -n 19 .venv/bin/python bench/rehearsal.py --fraction 0.1 [--work /work/rehearsal]
        [--tasks style-full genre-full artist] [--keep]

For each task it builds (or reuses) `python -m artgan rehearse --fraction F` in WORK, then runs
what a user with the real download runs, each as its own process with the stand-in tree as
WIKIART_IMAGES / ARTGAN_LABELS and a fresh cache in WORK: `search` (one trial of one epoch,
the pretrained backbone pinned: `PINNED` below), `report`, `evaluate` on the validation
file, `similar index` + `similar evaluate` with the best model. Memory is sampled from
/proc twice a second over the whole process tree: peak anonymous (private) memory and peak
file-backed resident pages (the memory-mapped caches, which the kernel can drop). It prints
one table, with the decode and embedding rates the library logs. Docs: docs/rehearsal.md.
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# One trial of one epoch, the pretrained backbone, frozen, embedded once (as a search of the
# CPU-sized space does): the costs that grow with the number of paintings.
PINNED = [
    "search_space=../search_spaces/crnn.yaml",
    "tuner.type=random",
    "budget.max_trials=1",
    "budget.epochs=1",
    "space.backbone=efficientnet_lite0",
    "space.backbone_layer=stage6",
    "space.pooled_stages=true",
    "space.sequence=rows",
    "space.lstm_units=64",
    "space.bidirectional=false",
    "space.batch_size=64",
    "training.best_models=1",
]
VAL_LABELS = {
    "style-full": "Style/style_val.csv",
    "genre-full": "Genre/genre_val.csv",
    "artist": "Artist/artist_val",
}
DECODED = re.compile(
    r"decoded (\d+) images at (\d+) px in (\d+) s \(([\d.]+) img/s\), ([\d.]+) (GB|MB)"
)
EMBEDDED = re.compile(
    r"embedded (\d+) images with \S+ in (\d+) s \(([\d.]+) img/s\), ([\d.]+) (GB|MB)"
)
EPOCH = re.compile(r"^\d+/\d+ - (\d+)s - ", re.MULTILINE)


def tree_memory(root):
    """(anonymous, file-backed) resident bytes of `root` and every process below it."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                children.setdefault(int(stat[1]), []).append(int(entry.name))
            except OSError:
                continue
    anonymous = mapped = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            fields = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue
        anonymous += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
        mapped += int(fields.get("RssFile", "0 kB").split()[0]) * 1024
    return anonymous, mapped


def run(command, env, log_file):
    """Run `command`, its output into `log_file`; (seconds, peak anonymous, peak mapped, text)."""
    peaks = [0, 0]
    with open(log_file, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )

        def sample():
            while process.poll() is None:
                anonymous, mapped = tree_memory(process.pid)
                peaks[0], peaks[1] = max(peaks[0], anonymous), max(peaks[1], mapped)
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        process.wait()
        sampler.join()
        seconds = time.perf_counter() - started
    text = Path(log_file).read_text()
    if process.returncode:
        sys.exit(
            f"{' '.join(command)} failed ({process.returncode}); see {log_file}:\n{text[-2000:]}"
        )
    return seconds, peaks[0], peaks[1], text


def label_seconds(tasks, env):
    """Seconds to load and check each task's label files against the image tree."""
    os.environ.update(env)
    from artgan.config.spec import experiment_file, load_experiment
    from artgan.data.splits import TaskData

    seconds = {}
    for task in tasks:
        started = time.perf_counter()
        data = TaskData.from_spec(load_experiment(experiment_file(task)))
        seconds[task] = (time.perf_counter() - started, len(data.train), len(data.val))
    return seconds


def rates(pattern, text):
    """(images, seconds, GB) summed over the builds a log reports."""
    images = seconds = size = 0.0
    for match in pattern.finditer(text):
        groups = match.groups()
        images += int(groups[0])
        seconds += int(groups[-4])
        size += float(groups[-2]) / (1000 if groups[-1] == "MB" else 1)
    return images, seconds, size


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--work", default=str(REPO / "data" / "rehearsal"))
    parser.add_argument("--tasks", nargs="+", default=list(VAL_LABELS))
    args = parser.parse_args()
    work = Path(args.work) / f"f{args.fraction:g}"
    python = [sys.executable, "-m", "artgan"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ARTGAN_CACHE": str(work / "cache")}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    seconds, *_ = run(
        [*python, "rehearse", "--to", str(work / "tree"), "--fraction", str(args.fraction)],
        env,
        logs / "rehearse.log",
    )
    env.update(
        WIKIART_IMAGES=str(work / "tree" / "wikiart"), ARTGAN_LABELS=str(work / "tree" / "labels")
    )
    print(f"stand-in tree at {args.fraction:g}: {seconds:.0f} s")
    loading = label_seconds(args.tasks, env)

    rows = []
    for task in args.tasks:
        output = work / "runs" / task
        sets = [
            item for pair in zip(["--set"] * 99, [*PINNED, f"output={output}"]) for item in pair
        ]
        search = run([*python, "search", task, "--fresh", *sets], env, logs / f"{task}.search.log")
        model = output / "best" / "model_1.keras"
        report = run(
            [*python, "report", str(output), "--top", "1", "--out", str(work / "reports" / task)],
            env,
            logs / f"{task}.report.log",
        )
        evaluate = run(
            [
                *python,
                "evaluate",
                str(model),
                "--skip-bad",
                "--labels",
                str(work / "tree" / "labels" / VAL_LABELS[task]),
                "--images",
                env["WIKIART_IMAGES"],
                "--out",
                str(work / f"{task}.predictions.csv"),
            ],
            env,
            logs / f"{task}.evaluate.log",
        )
        index = work / "similar" / f"{task}.npz"
        similar = run(
            [*python, "similar", "index", "--extractor", f"model:{model}", "--index", str(index)],
            env,
            logs / f"{task}.similar.log",
        )
        run(
            [
                *python,
                "similar",
                "evaluate",
                "--index",
                str(index),
                "--out",
                str(work / "reports" / f"similar-{task}"),
            ],
            env,
            logs / f"{task}.similar-evaluate.log",
        )
        decoded, embedded = rates(DECODED, search[3]), rates(EMBEDDED, search[3])
        epochs = [int(s) for s in EPOCH.findall(search[3])]
        rows.append(
            (task, loading[task], search, decoded, embedded, epochs, report, evaluate, similar)
        )

    print(f"\nrehearsal at {args.fraction:g} of the ArtGAN splits (logs: {logs})\n")
    print(
        "| task | train / val | labels | decode | decode cache | embedding | embedding cache "
        "| 1 epoch | search | peak anon | peak mapped | report | evaluate | similar |"
    )
    print("|" + "---|" * 14)
    for task, (
        label_s,
        train,
        val,
    ), search, decoded, embedded, epochs, report, evaluate, similar in rows:
        print(
            f"| {task} | {train:,} / {val:,} | {label_s:.1f} s "
            f"| {decoded[0] / max(decoded[1], 1):.0f} img/s | {decoded[2]:.2f} GB "
            f"| {embedded[0] / max(embedded[1], 1):.0f} img/s | {embedded[2]:.2f} GB "
            f"| {epochs[0] if epochs else '?'} s | {search[0] / 60:.1f} min "
            f"| {search[1] / 1e9:.2f} GB | {search[2] / 1e9:.2f} GB "
            f"| {report[0]:.0f} s | {evaluate[0]:.0f} s | {similar[0]:.0f} s |"
        )


if __name__ == "__main__":
    main()
