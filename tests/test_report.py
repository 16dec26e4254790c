"""HTML reports on one real tiny search (real Louvre paintings): numbers, escaping, partial
runs, feature export, and rendering in headless Chromium.

The search is built to end with one finished and one failed trial: only `conv_blocks`
varies, between 2 and 6, and 6 blocks cannot fit a 32 px input (`build_crnn` raises). Its
class file renames a real class `<script>alert(1)</script>` and its description is markup,
so every check below also runs on hostile text.
"""

import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from artgan.cli import main
from artgan.config.spec import load_experiment
from artgan.errors import ArtganError
from artgan.model.features import load_features
from artgan.report import sampling
from artgan.report.build import build_report
from artgan.report.output import Writer
from artgan.report.run import open_run
from artgan.report.sections import hp_importance, what_mattered_section
from artgan.tuning.tuner import run_search

pytestmark = [pytest.mark.slow]

HOSTILE_CLASS = "<script>alert(1)</script>"
HOSTILE_DESCRIPTION = "<img src=x onerror=alert(2)> tiny"
FIXED = {
    "input_size": 32,
    "base_filters": 16,
    "filter_growth": 1.5,
    "kernel_size": 3,
    "sequence": "rows",
    "lstm_units": 32,
    "bidirectional": False,
    "dropout": 0.1,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "batch_size": 32,
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def write_experiment(folder, data_dir):
    louvre = data_dir / "louvre-genre4"
    classes = (louvre / "genre_class").read_text().replace("genre_painting", HOSTILE_CLASS)
    (folder / "genre_class").write_text(classes)
    space = {
        "parameters": {
            "conv_blocks": {"values": [2, 6]},
            **{name: {"value": value} for name, value in FIXED.items()},
        }
    }
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    experiment = {
        "task": "genre",
        "description": HOSTILE_DESCRIPTION,
        "data": {
            "train": str(louvre / "genre_train.csv"),
            "val": str(louvre / "genre_val.csv"),
            "classes": str(folder / "genre_class"),
            "images": str(louvre / "images"),
        },
        "search_space": "space.yaml",
        "tuner": {"type": "random"},
        "budget": {"max_trials": 2, "epochs": 1, "max_train_images": 48, "max_val_images": 24},
        "output": str(folder / "run"),
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    return folder / "experiment.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
    """(run folder, report folder, CLI output) of one real search + `python -m artgan report`."""
    folder = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARTGAN_CACHE", str(folder / "cache"))
        spec = load_experiment(write_experiment(folder, data_dir))
        table = run_search(spec)
        assert sorted(table["status"]) == ["COMPLETED", "FAILED"], table
        out = folder / "report"
        assert main(["report", str(spec.output_dir), "--out", str(out)]) == 0
        yield spec.output_dir, out


@pytest.fixture(scope="module")
def html(tiny):
    return (tiny[1] / "report.html").read_text(encoding="utf-8")


def test_numbers_agree_with_saved_predictions(tiny, html):
    run_dir, out = tiny
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["models"][0]
    predictions = pd.read_csv(out / model["predictions"])
    labels, predicted = predictions["label"].to_numpy(), predictions["predicted"].to_numpy()

    assert len(predictions) == model["images"] == metrics["val_images"] == 24
    accuracy = np.mean(labels == predicted)
    assert model["accuracy"] == pytest.approx(accuracy)
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    searched = trials.set_index("trial_id").loc[model["trial_id"], "val_accuracy"]
    assert accuracy == pytest.approx(searched, abs=1e-6)  # the search's own number, re-derived

    position = {label: i for i, label in enumerate(model["labels"])}
    counts = np.zeros((len(position), len(position)), dtype=int)
    for true, guess in zip(labels, predicted):
        counts[position[true], position[guess]] += 1
    assert counts.tolist() == model["confusion_matrix"]

    names = metrics["class_names"]  # the 4 classes the data has, not ArtGAN's 10 genres
    assert len(names) == 4 and HOSTILE_CLASS in names and "cityscape" not in names
    assert [c for c in predictions if c.startswith("p/")] == [f"p/{name}" for name in names]
    assert model["top5_accuracy"] is None and "top-5" not in html  # always 1 on 4 classes
    assert "validation images, 4 classes" in html
    assert re.search(r"\(search reported [\d.]+%\), macro-F1", html)
    per_class = pd.read_csv(out / "per_class_model_1.csv")
    assert per_class["support"].sum() == len(labels)
    assert f"{100 * accuracy:.1f}%" in html


def test_large_splits_are_sampled_and_the_page_says_so(tiny, html, tmp_path, monkeypatch):
    """Above `SAMPLE_SIZE` the heavy sections use a stratified sample and the page says of
    how many; at or below it (24 validation, 48 training paintings here) nothing is sampled."""
    assert "Sampled at this size" not in html and "stratified sample" not in html
    monkeypatch.setattr(sampling, "SAMPLE_SIZE", 12)
    report = build_report(tiny[0], out=tmp_path / "sampled")
    page = (report.folder / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((report.folder / "metrics.json").read_text())
    assert "Sampled at this size" in page
    # A scratch CNN reads pixels: re-run on the sample itself, each class keeping its share.
    assert "re-run on a stratified sample of 12 of the 24 validation paintings" in page
    model = metrics["models"][0]
    assert model["images"] == 12 and metrics["similarity"]["images"] == 12
    predictions = pd.read_csv(report.folder / model["predictions"])
    whole = pd.read_csv(tiny[1] / model["predictions"])["label"].value_counts()
    share = predictions["label"].value_counts().reindex(whole.index, fill_value=0)
    assert ((share - whole * 12 / 24).abs() <= 1).all()
    assert predictions["path"].isin(pd.read_csv(tiny[1] / model["predictions"])["path"]).all()
    assert (
        "trained on a stratified sample of 12 of 48 training paintings and scored on 12 of "
        "24 validation paintings"
    ) in page
    again = build_report(tiny[0], out=tmp_path / "again")
    assert (
        pd.read_csv(again.folder / model["predictions"])["path"].tolist()
        == predictions["path"].tolist()
    )  # the same sample every time


def test_failed_trial_is_listed_with_its_reason(tiny, html):
    run_dir, out = tiny
    leaderboard = pd.read_csv(out / "leaderboard.csv", dtype={"trial_id": str})
    assert leaderboard["status"].tolist() == ["COMPLETED", "FAILED", "REFERENCE", "REFERENCE"]
    assert "6 shrink a 32 px" in html and "input_size" in html
    assert "Missing from this report" in html
    assert "Only 1 finished trial(s)" in html  # what-mattered says why it is empty
    assert "1 saved model(s) in best/, 3 requested" in html
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials"] == {"COMPLETED": 1, "FAILED": 1}
    assert [b["name"] for b in metrics["baselines"]] == ["majority class", "colour+texture LR"]
    for name in metrics["files"]:
        assert (out / name).is_file(), name


def test_user_text_is_escaped(html):
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<img src=x" not in html
    assert len(re.findall(r"<script\b", html)) == 1  # the leaderboard sorter, nothing else


def render_in_chromium(page, tmp_path):
    """The DOM of `page` after headless Chromium ran it; fails on any console message
    (JS errors, CSP violations, blocked loads)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail(
            "chromium not found: install it with `apt-get install -y chromium` "
            "(.ci/run does this before `make test`)",
            pytrace=False,
        )
    result = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    problems = [
        line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    assert not problems, "\n".join(problems)
    return result.stdout


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tiny, tmp_path):
    dom = render_in_chromium(tiny[1] / "report.html", tmp_path)
    assert 'id="leaderboard-table"' in dom and "sort-ready" in dom  # the sorter ran
    for section in ("tradeoff", "calibration", "suspects", "examples"):
        assert f'id="{section}"' in dom
    board = dom[dom.index('id="leaderboard-table"') :]
    board = board[: board.index("</table>")]
    assert len(re.findall(r'<tr class="(finished|failed|reference)"', board)) == 4
    figures = re.findall(r'<img src="data:image/png;base64,', dom)
    assert len(figures) >= 3  # learning curves, confusion matrices, t-SNE map
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', dom)) >= 6  # thumbnails
    assert not re.search(r'(src|href)="(https?:)?//', dom)  # nothing from the network


def test_features_export_matches_report(tiny, data_dir, tmp_path, monkeypatch):
    run_dir, out = tiny
    monkeypatch.setenv("ARTGAN_CACHE", str(tmp_path / "cache"))
    in_report = load_features(out / "features_model_1_features_lstm.npz")
    louvre = data_dir / "louvre-genre4"
    wanted = set(in_report["paths"][:6])
    rows = [
        line
        for line in (louvre / "genre_val.csv").read_text().splitlines()
        if line.split(",")[0] in wanted
    ]
    labels_file = tmp_path / "six.csv"
    labels_file.write_text("\n".join(rows) + "\n")
    target = tmp_path / "six.npz"
    assert (
        main(
            [
                "features",
                str(run_dir / "best" / "model_1.keras"),
                "--labels",
                str(labels_file),
                "--images",
                str(louvre / "images"),
                "--out",
                str(target),
            ]
        )
        == 0
    )
    exported = load_features(target)
    assert exported["layer"] == "features_lstm"  # by default a layer the model learned
    assert exported["features"].shape == (6, FIXED["lstm_units"])
    assert HOSTILE_CLASS in exported["class_names"]
    same = {path: i for i, path in enumerate(in_report["paths"])}
    for path, vector, label in zip(exported["paths"], exported["features"], exported["labels"]):
        assert label == in_report["labels"][same[path]]
        np.testing.assert_allclose(vector, in_report["features"][same[path]], rtol=1e-4, atol=1e-5)

    conv = tmp_path / "conv.npz"
    assert (
        main(
            [
                "features",
                str(run_dir / "best" / "model_1.keras"),
                "--layer",
                "features_conv",
                "--labels",
                str(labels_file),
                "--images",
                str(louvre / "images"),
                "--out",
                str(conv),
            ]
        )
        == 0
    )
    assert load_features(conv)["layer"] == "features_conv"
    assert load_features(conv)["features"].shape[0] == 6

    if importlib.util.find_spec("pyarrow") is None:  # parquet is optional: a clean error
        assert (
            main(
                [
                    "features",
                    str(run_dir / "best" / "model_1.keras"),
                    "--labels",
                    str(labels_file),
                    "--images",
                    str(louvre / "images"),
                    "--out",
                    str(tmp_path / "six.parquet"),
                ]
            )
            == 2
        )


def test_errors_are_clean(tiny, tmp_path, capsys):
    run_dir, _ = tiny
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "not a run folder" in capsys.readouterr().err

    failed_only = tmp_path / "failed"
    shutil.copytree(run_dir, failed_only, ignore=shutil.ignore_patterns("tuner", "tensorboard"))
    rows = json.loads((failed_only / "trials.json").read_text())
    for row in rows:
        row.update(status="FAILED", score=None)
    (failed_only / "trials.json").write_text(json.dumps(rows))
    with pytest.raises(ArtganError, match="no finished trial"):
        open_run(failed_only)

    assert (
        main(
            [
                "report",
                str(run_dir),
                "--layer",
                "no_such_layer",
                "--out",
                str(tmp_path / "r" / "inner"),
            ]
        )
        == 2
    )
    assert "no layer 'no_such_layer'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # a failed report leaves no (empty) folder behind


def test_run_without_saved_models_still_renders(tiny, tmp_path):
    """A search interrupted before it saved best/: tables and curves, and a note why no more."""
    unsaved = tmp_path / "unsaved"
    shutil.copytree(tiny[0], unsaved, ignore=shutil.ignore_patterns("best", "tensorboard"))
    report = build_report(unsaved, out=tmp_path / "report", log=lambda *_: None)
    html = report.html.read_text(encoding="utf-8")
    assert any("holds no saved model" in note for note in report.notes)
    assert "No saved model, so no learned features" in html and 'id="leaderboard-table"' in html
    written = json.loads((report.folder / "metrics.json").read_text())["files"]
    assert "learning_curves.png" in written and "leaderboard.csv" in written


def test_what_mattered_with_enough_trials(tiny, tmp_path):
    """Six fabricated finished trials whose score follows the learning rate only."""
    run = open_run(tiny[0])
    rates = [1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2]
    trials = pd.DataFrame(
        {
            "trial_id": [str(i) for i in range(6)],
            "status": "COMPLETED",
            "val_accuracy": [0.2, 0.3, 0.5, 0.55, 0.6, 0.4],
            "hp/learning_rate": rates,
            "hp/sequence": ["rows", "columns"] * 3,
            "hp/bidirectional": [True, False, True, False, False, True],
            "hp/momentum": [None, 0.9, None, 0.8, None, 0.85],
            "hp/input_size": 32,
        }
    )
    importance = hp_importance(
        trials,
        ["hp/learning_rate", "hp/sequence", "hp/bidirectional", "hp/momentum"],
        "val_accuracy",
    )
    assert importance.sum() == pytest.approx(1.0) and importance.index[0] == "hp/learning_rate"
    section = what_mattered_section(dataclasses.replace(run, trials=trials), Writer(tmp_path))
    assert section["note"] is None and len(section["figures"]) == 2
    assert section["parallel"]["png"] == "parallel_coordinates.png"
    by_name = {i["name"]: i for i in section["importance"]}
    assert by_name["learning_rate"]["correlation"] == pytest.approx(
        np.corrcoef(rates, trials["val_accuracy"])[0, 1]
    )
    assert (
        by_name["momentum"]["of"] in {"n/a", "0.9", "0.8", "0.85"}
        or by_name["momentum"]["of"] is None
    )
    assert {i["name"] for i in section["importance"]} == {
        "learning_rate",
        "sequence",
        "bidirectional",
        "momentum",
    }
    assert (tmp_path / "hyperparameters.svg").is_file() and (tmp_path / "importance.png").is_file()


def test_search_times_its_best_models_and_writes_cards(tiny):
    run_dir, out = tiny
    rows = json.loads((run_dir / "trials.json").read_text())
    finished = [r for r in rows if r["status"] == "COMPLETED"]
    assert finished[0]["inference_ms"] > 0  # measured when the best model was saved
    assert pd.read_csv(run_dir / "trials.csv")["inference_ms"].notna().sum() == 1
    card = (run_dir / "best" / "model_1.md").read_text()
    for heading in (
        "## Data and splits",
        "## Metrics",
        "## Input and preprocessing",
        "## Model",
        "## Training budget",
        "## Known limits",
    ):
        assert heading in card
    assert "32 x 32 px" in card and "ms per image" in card
    # The class name is text in the card, not HTML a Markdown viewer would run.
    assert HOSTILE_CLASS not in card and r"\<script\>alert(1)\</script\>" in card
    assert "none pretrained" in card  # the scratch CNN: no weights from elsewhere
    in_report = (out / "model_1.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"accuracy {metrics['models'][0]['accuracy']:.4f}" in in_report


def test_tradeoff_calibration_and_suspects_sections(tiny, html):
    run_dir, out = tiny
    metrics = json.loads((out / "metrics.json").read_text())
    pareto = metrics["pareto"]
    assert pareto["timed"] == 1 and pareto["note"] is None
    assert [r["trial_id"] for r in pareto["rows"]] == [metrics["models"][0]["trial_id"]]
    assert 'id="tradeoff"' in html and "pareto.png" in metrics["files"]

    predictions = pd.read_csv(out / metrics["models"][0]["predictions"])
    probabilities = predictions[[f"p/{n}" for n in metrics["class_names"]]].to_numpy()
    confidence = probabilities.max(axis=1)
    correct = (predictions["predicted"] == predictions["label"]).to_numpy()
    ece = 0.0
    for low in np.arange(10) / 10:  # independent binning: (low, low + 0.1], first bin closed
        inside = (confidence > low) & (confidence <= low + 0.1 + 1e-12)
        if low == 0:
            inside |= confidence == 0
        if inside.any():
            ece += (
                inside.sum()
                / len(confidence)
                * abs(correct[inside].mean() - confidence[inside].mean())
            )
    assert metrics["calibration"]["ece"] == pytest.approx(ece, abs=1e-6)
    assert "calibration_model_1.png" in metrics["files"]

    suspects = pd.read_csv(out / "suspect_labels.csv")
    assert metrics["suspect_labels"]["count"] == len(suspects)
    assert (suspects["probability_of_label"] <= 0.2).all()
    assert (suspects["neighbour_agreement"] < 0.5).all()
    assert 'id="suspects"' in html


def test_examples_show_gradcam_and_explain_writes_heat_maps(
    tiny, html, data_dir, tmp_path, capsys
):
    run_dir, _ = tiny
    assert "where it looks" in html
    images = data_dir / "louvre-genre4" / "images"
    image = next(images.rglob("*.jpg"))
    model = run_dir / "best" / "model_1.keras"
    assert (
        main(
            [
                "explain",
                str(model),
                str(image),
                str(tmp_path / "missing.jpg"),
                "--out",
                str(tmp_path / "heat"),
            ]
        )
        == 0
    )
    written = tmp_path / "heat" / f"{image.stem}.gradcam.png"
    assert written.is_file() and str(written) in capsys.readouterr().out
    from PIL import Image

    picture = np.asarray(Image.open(written).convert("L"))
    # painting | overlay at the 32 px input, enlarged 7x, above a caption (class, score, layer)
    assert picture.shape[0] == 7 * 32 + 24 and picture.shape[1] >= 7 * 64
    caption = picture[7 * 32 :]
    assert (caption < 100).sum() > 200 and (caption[:, :4] == 255).all()  # dark text on white
    assert (
        main(
            [
                "explain",
                str(model),
                str(image),
                "--layer",
                "predictions",
                "--out",
                str(tmp_path / "heat"),
            ]
        )
        == 2
    )
    assert "not a convolutional feature map" in capsys.readouterr().err


def test_old_run_folders_still_report(tiny, tmp_path):
    """A run folder from before inference times and model cards: said, not crashed."""
    old = tmp_path / "old"
    shutil.copytree(tiny[0], old, ignore=shutil.ignore_patterns("tensorboard", "*.md"))
    rows = json.loads((old / "trials.json").read_text())
    for row in rows:
        row.pop("inference_ms", None)
    (old / "trials.json").write_text(json.dumps(rows))
    report = build_report(old, out=tmp_path / "report", log=lambda *_: None)
    html = report.html.read_text(encoding="utf-8")
    assert "not measured in this run" in html
    assert "this run folder has none beside the model" in html
    assert "not measured in this run" in (report.folder / "model_1.md").read_text()


@pytest.mark.browser
def test_compare_refuses_other_tasks_and_compares_the_same(tiny, tmp_path, capsys):
    run_dir, out = tiny
    other = tmp_path / "other-task"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("tensorboard", "tuner"))
    spec = yaml.safe_load((other / "spec.yaml").read_text())
    (other / "spec.yaml").write_text(yaml.safe_dump({**spec, "task": "style"}))
    assert main(["compare", str(run_dir), str(other), "--out", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert "tasks differ" in error and "--allow-mismatch" in error
    assert not (tmp_path / "c" / "compare.html").exists()

    bayesian = tmp_path / "bayesian"
    shutil.copytree(run_dir, bayesian, ignore=shutil.ignore_patterns("tensorboard", "tuner"))
    spec["tuner"]["type"] = "bayesian"
    (bayesian / "spec.yaml").write_text(yaml.safe_dump(spec))
    page = tmp_path / "compare"
    assert main(["compare", str(run_dir), str(bayesian), "--out", str(page)]) == 0
    metrics = json.loads((page / "metrics.json").read_text())
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    best = trials.loc[trials["status"] == "COMPLETED", "score"].max()
    assert [r["best"] for r in metrics["rows"]] == pytest.approx([best, best])
    assert [d["key"] for d in metrics["differences"]] == ["tuner.type"]
    per_class = pd.read_csv(out / "per_class_model_1.csv").set_index("class")["f1"]
    for name, values in zip(metrics["f1"]["classes"], metrics["f1"]["values"]):
        assert values == pytest.approx([per_class[name]] * 2)  # same model, same split
    dom = render_in_chromium(page / "compare.html", tmp_path)
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == 2
    assert not re.search(r'(src|href)="(https?:)?//', dom)
    assert HOSTILE_CLASS not in dom and "&lt;script&gt;" in dom


def test_a_report_during_a_live_search_says_the_search_is_running(tmp_path):
    """The note for a run folder without best models said the search "stopped before saving
    them" while a search was still running there."""
    from types import SimpleNamespace

    from artgan.files import folder_lock
    from artgan.report.build import run_notes

    run = SimpleNamespace(
        folder=tmp_path,
        models=[],
        trials=pd.DataFrame({"trial_id": ["0"], "status": ["COMPLETED"]}),
    )
    with folder_lock(tmp_path):  # what a running search holds
        [note] = run_notes(run, [], top=3)
    assert "a search is still running in this folder (pid " in note
    assert "stopped" not in note
    [note] = run_notes(run, [], top=3)  # the search is gone
    assert "the search stopped before saving them" in note
