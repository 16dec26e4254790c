"""Experiment specs and search spaces: W&B syntax -> KerasTuner hp, and clear errors."""

import keras_tuner as kt
import pytest

from artgan.config.space import SearchSpace
from artgan.config.spec import experiment_file, experiment_names, load_experiment
from artgan.errors import ArtganError
from artgan.tuning.check import check_search

SPACE = {
    "parameters": {
        "conv_blocks": {"min": 2, "max": 4},
        "dropout": {"min": 0.1, "max": 0.5, "q": 0.1},
        "learning_rate": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
        "sequence": {"values": ["rows", "columns"]},
        "bidirectional": {"values": [True, False]},
        "input_size": {"value": 64},
        "optimizer": {"values": ["adam", "sgd"]},
        "momentum": {"min": 0.5, "max": 0.9, "when": {"optimizer": "sgd"}},
    }
}


def write(path, text):
    path.write_text(text)
    return path


def test_wandb_syntax_maps_to_keras_tuner_types():
    hp = kt.HyperParameters()
    SearchSpace.model_validate(SPACE).register(hp)
    spaces = {p.name: p for p in hp.space}
    assert isinstance(spaces["conv_blocks"], kt.engine.hyperparameters.Int)
    assert (spaces["conv_blocks"].min_value, spaces["conv_blocks"].max_value) == (2, 4)
    assert isinstance(spaces["dropout"], kt.engine.hyperparameters.Float)
    assert spaces["dropout"].step == 0.1
    assert spaces["learning_rate"].sampling == "log"
    assert isinstance(spaces["sequence"], kt.engine.hyperparameters.Choice)
    assert isinstance(spaces["bidirectional"], kt.engine.hyperparameters.Boolean)
    assert isinstance(spaces["input_size"], kt.engine.hyperparameters.Fixed)
    assert hp.get("input_size") == 64
    # `momentum` only exists while optimizer == sgd.
    assert spaces["momentum"].conditions[0].name == "optimizer"
    assert not hp.is_active(spaces["momentum"])  # default optimizer is adam
    hp.values["optimizer"] = "sgd"
    assert hp.is_active(spaces["momentum"])


@pytest.mark.parametrize(
    "parameter, message",
    [
        ({"min": 4, "max": 2}, "empty range"),
        ({"min": 1}, "needs both"),
        ({"values": []}, "at least 1"),
        ({"min": 0, "max": 1, "distribution": "log_uniform_values"}, "min > 0"),
        ({"value": 1, "values": [1, 2]}, "exactly one"),
        ({"min": 1, "max": 2, "distrbution": "uniform"}, "unknown key"),
        ({"min": 1, "max": 2, "distribution": "beta"}, "distribution"),
        ({"values": [1, 1]}, "duplicates"),
        ({"min": 1, "max": 2, "when": {"nope": 1}}, "unknown parameter 'nope'"),
    ],
)
def test_bad_parameters_are_named(tmp_path, parameter, message):
    spec = yaml_spec(tmp_path, {"parameters": {"conv_blocks": parameter}})
    with pytest.raises(ArtganError) as error:
        load_experiment(spec)
    text = str(error.value)
    assert "space.yaml: " in text and "conv_blocks" in text
    assert message in text


def yaml_spec(tmp_path, space, **experiment):
    import yaml

    write(tmp_path / "space.yaml", yaml.safe_dump(space))
    body = {
        "task": "genre",
        "data": {"train": "t.csv", "val": "v.csv", "classes": "c", "images": "img"},
        "search_space": "space.yaml",
        "output": str(tmp_path / "run"),
        **experiment,
    }
    return write(tmp_path / "exp.yaml", yaml.safe_dump(body))


def test_experiment_errors_name_file_and_key(tmp_path):
    spec = yaml_spec(tmp_path, SPACE, budget={"max_trials": "many", "epochz": 2})
    with pytest.raises(ArtganError) as error:
        load_experiment(spec)
    text = str(error.value)
    assert "exp.yaml: budget.max_trials:" in text and "integer" in text
    assert "exp.yaml: budget.epochz: unknown key" in text


def test_unknown_task_and_tuner(tmp_path):
    with pytest.raises(ArtganError, match="task:"):
        load_experiment(yaml_spec(tmp_path, SPACE, task="colour"))
    spec = load_experiment(yaml_spec(tmp_path, SPACE, tuner={"type": "bayesain"}))
    with pytest.raises(ArtganError) as error:
        check_search(spec)
    assert str(error.value) == (
        f"{tmp_path / 'exp.yaml'}: tuner.type: unknown 'bayesain'; "
        "known: random, bayesian, hyperband (did you mean 'bayesian'?)"
    )


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path / "exp.yaml", "task: genre\ndata: [unclosed\nseed: 1\n")
    with pytest.raises(ArtganError, match=r"exp\.yaml:\d+: not valid YAML"):
        load_experiment(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(ArtganError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    spec = load_experiment(
        yaml_spec(tmp_path, SPACE),
        ["budget.max_trials=3", "budget.epochs=1", "space.conv_blocks=2", "tuner.type=random"],
    )
    assert spec.budget.max_trials == 3 and spec.budget.epochs == 1
    assert spec.tuner.type == "random"
    assert spec.space.parameters["conv_blocks"].value == 2
    with pytest.raises(ArtganError, match="KEY=VALUE"):
        load_experiment(yaml_spec(tmp_path, SPACE), ["budget.max_trials"])
    with pytest.raises(ArtganError, match="budget.max_trials"):
        load_experiment(yaml_spec(tmp_path, SPACE), ["budget.max_trials=0"])


def test_fingerprint_covers_what_changes_a_score(tmp_path, data_dir):
    """Image subsets, epochs and the label files' contents change it; max_trials does not."""
    import shutil

    labels = tmp_path / "labels"
    shutil.copytree(data_dir / "louvre-genre4", labels, ignore=shutil.ignore_patterns("images"))
    base_overrides = [f"data.train={labels / 'genre_train.csv'}"]
    base = load_experiment(experiment_file("genre"), base_overrides).fingerprint()
    for change in ("budget.max_train_images=100", "budget.max_val_images=50", "budget.epochs=3"):
        assert (
            load_experiment(experiment_file("genre"), [*base_overrides, change]).fingerprint()
            != base
        )
    assert (
        load_experiment(
            experiment_file("genre"), [*base_overrides, "budget.max_trials=50"]
        ).fingerprint()
        == base
    )
    rows = (labels / "genre_train.csv").read_text().splitlines(keepends=True)
    (labels / "genre_train.csv").write_text("".join(rows[:-1]))  # same path, one row fewer
    assert load_experiment(experiment_file("genre"), base_overrides).fingerprint() != base


def test_fingerprint_ignores_max_trials_but_not_space(tmp_path):
    path = yaml_spec(tmp_path, SPACE)
    base = load_experiment(path).fingerprint()
    assert load_experiment(path, ["budget.max_trials=50"]).fingerprint() == base
    assert load_experiment(path, ["space.conv_blocks=3"]).fingerprint() != base


def test_shipped_experiments_validate(data_dir, monkeypatch):
    for task, parameter in (("style", "head"), ("genre", "input_size")):
        spec = load_experiment(experiment_file(task))
        assert spec.path("train").is_file() and spec.path("images").is_dir()
        assert parameter in spec.space.parameters  # pretrained.yaml; crnn.yaml (with scratch)
    monkeypatch.delenv("WIKIART_IMAGES", raising=False)
    for name in ("artist", "style-full", "genre-full"):
        spec = load_experiment(experiment_file(name))
        assert spec.path("train").is_file()  # the real ArtGAN label files
        with pytest.raises(ArtganError, match="WIKIART_IMAGES.*not set.*WikiArt"):
            spec.path("images")
    monkeypatch.setenv("WIKIART_IMAGES", "/data/wikiart")
    assert str(load_experiment(experiment_file("artist")).path("images")) == "/data/wikiart"


def test_nested_conditions_and_their_order():
    """A parameter whose parent is itself conditional is active only when both are."""
    space = SearchSpace.model_validate(
        {
            "parameters": {
                "backbone": {"values": ["efficientnet_lite0", "scratch"]},
                "backbone_layer": {
                    "values": ["top", "stage6"],
                    "when": {"backbone": "efficientnet_lite0"},
                },
                "backbone_trainable": {
                    "values": ["top", "frozen"],
                    "when": {"backbone_layer": "top"},
                },
            }
        }
    )
    assert space.scopes("backbone_trainable") == [
        ("backbone", ["efficientnet_lite0"]),
        ("backbone_layer", ["top"]),
    ]
    hp = kt.HyperParameters()
    space.register(hp)
    assert hp.values == {
        "backbone": "efficientnet_lite0",
        "backbone_layer": "top",
        "backbone_trainable": "top",
    }


def test_conditions_may_not_form_a_cycle(tmp_path):
    spec = yaml_spec(
        tmp_path,
        {
            "parameters": {
                "a": {"values": [1, 2], "when": {"b": 1}},
                "b": {"values": [1, 2], "when": {"a": 1}},
            }
        },
    )
    with pytest.raises(ArtganError, match="form a cycle"):
        load_experiment(spec)


@pytest.mark.parametrize(
    "parameter, value, message",
    [
        (
            "lstm_unit",
            {"values": [64, 128]},
            "parameters.lstm_unit: unknown parameter (no model builder reads it); did you mean 'lstm_units'?",
        ),
        ("frobnicate", {"min": 1, "max": 3}, "parameters.frobnicate: unknown parameter"),
        (
            "sequence",
            {"values": ["rows", "diagonal"]},
            "parameters.sequence: 'diagonal' is not one of ['rows', 'columns', 'both']",
        ),
        ("dropout", {"min": -0.1, "max": 0.5}, "parameters.dropout: -0.1 is below 0"),
        ("dropout", {"value": 1.0}, "parameters.dropout: 1.0 must be below 1 (exclusive)"),
        ("lstm_units", {"values": [-4, 64]}, "parameters.lstm_units: -4 is below 1"),
        ("input_size", {"value": 32.5}, "parameters.input_size: 32.5 is not a whole number"),
        ("input_size", {"min": 32, "max": 64, "distribution": "uniform"}, "needs whole numbers"),
        (
            "learning_rate",
            {"value": float("inf")},
            "parameters.learning_rate: inf is not a finite number",
        ),
        (
            "backbone",
            {"values": ["efficientnet_lite0", "resnet9000"]},
            "'resnet9000' is not one of",
        ),
        ("bidirectional", {"values": [1, 0]}, "1 is not one of [True, False]"),
    ],
)
def test_spaces_are_checked_against_what_the_builder_reads(tmp_path, parameter, value, message):
    spec = load_experiment(yaml_spec(tmp_path, {"parameters": {parameter: value}}))
    with pytest.raises(ArtganError) as error:
        check_search(spec)
    assert str(error.value).startswith(str(tmp_path / "space.yaml"))
    assert message in str(error.value)


def test_a_typo_on_the_command_line_is_refused_too(tmp_path):
    spec = load_experiment(experiment_file("genre"), ["space.input_sise=32"])
    with pytest.raises(ArtganError, match="parameters.input_sise: .*did you mean 'input_size'"):
        check_search(spec)


def test_shipped_experiments_pass_the_check():
    for task in experiment_names():
        check_search(load_experiment(experiment_file(task)))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "task: genre\nseed: " + "9" * 10**6 + "\n",
            r"exp\.yaml: not valid YAML \(exceeds the limit",
        ),
        (
            "task: genre\ndata: " + "[" * 5000 + "]" * 5000 + "\n",
            r"exp\.yaml: not valid YAML \(nested",
        ),
    ],
)
def test_hostile_yaml_is_a_one_line_error(tmp_path, text, message):
    """A 10**6-digit integer (a ValueError from int()) and deep nesting (RecursionError) used
    to escape the loader's YAMLError handler as tracebacks."""
    with pytest.raises(ArtganError, match=message):
        load_experiment(write(tmp_path / "exp.yaml", text))


def test_a_spec_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes("task: genre\ndescription: Café\n".encode("latin-1"))
    with pytest.raises(ArtganError, match=r"exp\.yaml: not UTF-8 text \(byte 28\); save it as"):
        load_experiment(path)


def test_hostile_overrides_and_seeds_are_refused_in_one_line(tmp_path):
    spec = yaml_spec(tmp_path, SPACE)
    with pytest.raises(ArtganError, match=r"`overrides` seed: not valid YAML \(exceeds the limit"):
        load_experiment(spec, ["seed=" + "9" * 10**6])
    with pytest.raises(ArtganError, match=r"`overrides` space.conv_blocks: not valid YAML \(nest"):
        load_experiment(spec, ["space.conv_blocks=" + "[" * 5000 + "]" * 5000])
    for seed in (-1, 2**32):  # numpy's random seeds are 0 .. 2**32 - 1
        with pytest.raises(ArtganError, match=r"exp\.yaml: seed: Input should be"):
            load_experiment(spec, [f"seed={seed}"])
    assert load_experiment(spec, [f"seed={2**32 - 1}"]).seed == 2**32 - 1
    assert load_experiment(spec, ["description=not: [yaml"]).description == "not: [yaml"
