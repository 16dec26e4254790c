"""Report and comparison figures and their numbers, on hand-made trials tables (no search):
trial ids, pruned trials, axes that read."""

import numpy as np
import pandas as pd
import pytest

from artgan.config.spec import experiment_file, load_experiment
from artgan.report.compare import summary_row, trial_order
from artgan.report.run import Run, sort_trials


def fabricated_run(statuses, scores):
    spec = load_experiment(experiment_file("genre"))
    trials = pd.DataFrame(
        {
            "trial_id": [f"{i:02d}" for i in range(len(scores))],
            "status": statuses,
            "score": scores,
            "val_accuracy": scores,
            "wall_seconds": 10.0,
        }
    )
    return Run(spec.output_dir, spec, "", sort_trials(trials, spec), {}, [])


def test_best_so_far_counts_pruned_trials_and_names_trials_by_id():
    """The step line has a value after every trial (a failed one carries the best over), a
    pruned trial has its point, and the best trial is named by its id."""
    run = fabricated_run(
        ["COMPLETED", "PRUNED", "FAILED", "COMPLETED", "PRUNED", "COMPLETED"],
        [0.5, 0.7, None, 0.6, 0.9, 0.8],
    )
    order = trial_order(run)
    assert order["trial"].tolist() == [0, 1, 2, 3, 4, 5]  # the ids, as numbers
    assert order["best"].tolist() == [0.5, 0.7, 0.7, 0.7, 0.9, 0.9]  # no break anywhere
    assert order["score"].notna().tolist() == [True, True, False, True, True, True]
    row = summary_row(run, "genre")
    assert row["best"] == 0.9 and row["best_trial"] == "04"  # a pruned trial can be the best
    assert "to_best" not in row  # no 1-based count beside the id


def test_a_narrow_parameter_range_has_a_few_compact_labels():
    """360000..520000 parameters used to print as six-digit labels running into each other."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from artgan.report.figures import MATPLOTLIB_STYLE
    from artgan.report.insight_figures import tradeoff_figure

    score = np.array([0.5, 0.7, 0.8, 0.75])
    costs = {
        "parameters": np.array([362_000, 401_000, 517_000, 450_000.0]),
        "ms per image": np.array([12.0, 14.0, np.nan, 13.0]),
    }
    fronts = {
        "parameters": np.array([True, True, True, False]),
        "ms per image": np.array([True, True, False, False]),
    }
    with rc_context(MATPLOTLIB_STYLE):
        figure = tradeoff_figure(score, costs, fronts, "val_accuracy", ["00", "01", "02", "03"])
        FigureCanvasAgg(figure).draw()
    params, milliseconds = ([t.get_text() for t in axes.get_xticklabels()] for axes in figure.axes)
    assert 3 <= len(params) <= 7 and all(label.endswith("k") for label in params), params
    assert "400k" in params
    assert "12.5" in milliseconds or "13" in milliseconds  # small numbers stay plain


def test_a_narrow_log_range_has_a_few_short_labels():
    """Learning rates 1.7e-4..3.3e-4 on a log axis used to get a tick every 2e-5, labelled
    0.00018, 0.0002, 0.00022, ... in one unreadable run."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from artgan.config.space import SearchSpace
    from artgan.report.figures import MATPLOTLIB_STYLE, axis_number, hp_figure

    assert [axis_number(v) for v in (0.00018, 2e-4, 0.25, 12, 360_000)] == [
        "1.8e-4",
        "2e-4",
        "0.25",
        "12",
        "360k",
    ]
    space = SearchSpace.model_validate(
        {
            "parameters": {
                "learning_rate": {"min": 1e-4, "max": 3e-3, "distribution": "log_uniform_values"}
            }
        }
    )
    finished = pd.DataFrame(
        {
            "hp/learning_rate": [1.7e-4, 2.37e-4, 3.31e-4, 3.1e-4],
            "val_accuracy": [0.6, 0.45, 0.83, 0.25],
        }
    )
    with rc_context(MATPLOTLIB_STYLE):
        figure = hp_figure(finished, ["hp/learning_rate"], "val_accuracy", space)
        FigureCanvasAgg(figure).draw()
    labels = [
        t.get_text()
        for t in figure.axes[0].get_xticklabels()
        if t.get_text()
        and figure.axes[0].get_xlim()[0] <= t.get_position()[0] <= figure.axes[0].get_xlim()[1]
    ]
    assert 2 <= len(labels) <= 5 and all(len(label) <= 6 for label in labels), labels


def test_compare_names_the_classes_the_runs_data_has():
    """The refusal speaks of the classes the label files use, not the class file's 10."""
    from types import SimpleNamespace

    from artgan.errors import ArtganError
    from artgan.report.compare import check_comparable

    names = [f"genre{i}" for i in range(10)]
    runs = [fabricated_run(["COMPLETED"], [0.5]) for _ in range(2)]
    data = [
        SimpleNamespace(class_names=names, classes=[2, 4, 6, 9]),
        SimpleNamespace(class_names=names, classes=[2, 4, 6]),
    ]
    with pytest.raises(
        ArtganError,
        match=r"a has 4 \(genre2, genre4, genre6, genre9\), "
        r"b has 3 \(genre2, genre4, genre6\)",
    ):
        check_comparable(runs, ["a", "b"], data, allow_mismatch=False)
    assert check_comparable(runs, ["a", "b"], [data[0], data[0]], allow_mismatch=False) == []
