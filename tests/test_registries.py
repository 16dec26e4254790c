"""Every name a spec accepts has a working implementation: tuners, pruning rules, and each
value of every choice parameter the builders declare (backbones, heads, sequences,
optimizers, ...). A name added to a registry or to `PARAMETERS` without its implementation
fails here."""

import keras_tuner as kt
import pytest

from artgan.config.spec import PruningSpec, TunerSpec, load_experiment
from artgan.model.parameters import PARAMETERS
from artgan.paths import REPO_ROOT
from artgan.tuning.pruners import NONE, PRUNERS, get_pruner, should_stop
from artgan.tuning.tuners import TUNERS

from support import TINY


def test_the_spec_defaults_name_registered_implementations():
    assert TunerSpec().type in TUNERS
    assert PruningSpec().type == NONE


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_every_tuner_makes_a_kerastuner_tuner(name, tmp_path):
    from artgan.tuning.hypermodel import CRNNHyperModel
    from artgan.tuning.tuner import TrialRecorder, make_tuner

    spec = load_experiment(
        REPO_ROOT / "experiments" / "genre.yaml",
        [*TINY, f"tuner.type={name}", "pruning.type=none", f"output={tmp_path}"],
    )
    tuner = make_tuner(spec, CRNNHyperModel.from_spec(spec, data=None), overwrite=True)
    assert isinstance(tuner, TUNERS[name].tuner_class()) and isinstance(tuner, kt.Tuner)
    assert isinstance(tuner, TrialRecorder)
    declared = {hp.name for hp in tuner.oracle.hyperparameters.space}
    assert declared == set(spec.space.parameters)  # the YAML space, and nothing else


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_every_pruning_rule_decides_with_its_default_settings(name):
    rule = get_pruner(name)
    assert rule.name == name
    spec = PruningSpec(type=name, min_epochs=1, min_trials=2)
    finished = [[0.5, 0.6], [0.6, 0.7]]
    assert should_stop(spec, [0.1], finished) is True  # far behind every finished trial
    assert should_stop(spec, [0.9], finished) is False  # ahead of all of them


def choice_builds():
    """(parameter, value, other fixed values) for every value of every choice parameter:
    scratch-CNN parameters on a small scratch model, backbone ones on each backbone's
    frozen head (which reads cached activations: no weights are loaded)."""
    scratch = {"backbone": "scratch", "input_size": 32, "conv_blocks": 2, "lstm_units": 8}
    pretrained = {"backbone": "efficientnet_lite0", "lstm_units": 8, "head_units": 8}
    backbone_parameters = {
        "backbone",
        "backbone_layer",
        "backbone_trainable",
        "pooled_stages",
        "head",
    }
    cases = []
    for name, allowed in PARAMETERS.items():
        for choice in allowed.choices:
            base = pretrained if name in backbone_parameters else scratch
            if (name, choice) == ("backbone", "scratch"):
                base = scratch
            cases.append(pytest.param(name, choice, base, id=f"{name}={choice}"))
    return cases


@pytest.mark.parametrize("name, choice, base", choice_builds())
def test_every_choice_a_space_may_name_builds(name, choice, base):
    from artgan.model.crnn import build_model

    hp = kt.HyperParameters()
    for key, fixed in {**base, name: choice}.items():
        hp.Fixed(key, fixed)
    model = build_model(hp, num_classes=3)
    assert model.output_shape == (None, 3)
