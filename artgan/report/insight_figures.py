"""Figures of the report's trade-off, parallel-coordinates, calibration and Grad-CAM views,
drawn like `artgan.report.figures` on bare `Figure` objects from plain arrays and tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from artgan.formatting import hp_text, missing, natural_key, numeric_values
from artgan.report.figures import BLUE, PALETTE, new_figure, readable_axis, shorten

FRONT = PALETTE[3]


# ----------------------------------------------------------------------------- trade-offs


def tradeoff_figure(score, costs, fronts, objective, labels):
    """One panel per cost (name -> values): the objective against it, every trial a grey
    point, the non-dominated ones red and joined by a step line, each labelled by trial."""
    figure = new_figure(4.6 * len(costs), 3.4)
    for index, (name, values) in enumerate(costs.items(), start=1):
        axes = figure.add_subplot(1, len(costs), index)
        values = np.asarray(values, dtype=float)
        front = fronts[name]
        measured = ~np.isnan(values)
        axes.scatter(
            values[measured & ~front],
            score[measured & ~front],
            s=22,
            color="#9aa3b2",
            label="dominated",
        )
        order = np.argsort(values[front])
        axes.step(
            values[front][order],
            score[front][order],
            where="post",
            color=FRONT,
            linewidth=1,
            alpha=0.7,
        )
        axes.scatter(
            values[front], score[front], s=34, color=FRONT, zorder=3, label="non-dominated"
        )
        for x, y, label in zip(values[front], score[front], np.asarray(labels)[front]):
            axes.annotate(
                str(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        log = (
            measured.any()
            and values[measured].min() > 0
            and (values[measured].max() / values[measured].min() >= 10)
        )
        if log:
            axes.set_xscale("log")  # plain labels: parse_math is off, so no 10^x mathtext
        readable_axis(axes.xaxis, values, log)  # 360k, 400k: not six digits running together
        axes.set_xlabel(name)
        if index == 1:
            axes.set_ylabel(objective)
            axes.legend(frameon=False, fontsize=8)
    return figure


# ----------------------------------------------------------------------------- parallel coordinates


def axis_positions(values, log=False):
    """(positions in [0, 1], tick positions, tick labels) of one parallel-coordinates axis:
    numbers scaled min-max (log scale for `log`), choices evenly spaced in natural order;
    a missing value (an absent conditional parameter) sits at -0.1, labelled "n/a"."""
    numeric = numeric_values(values)
    absent = values.map(missing).to_numpy()
    positions = np.full(len(values), -0.1)
    if numeric is not None and numeric.nunique() > 3:
        x = numeric.to_numpy(float)
        if log and np.nanmin(x) > 0:
            x = np.log10(x)
        low, high = np.nanmin(x), np.nanmax(x)
        span = (high - low) or 1.0
        positions[~absent] = (x[~absent] - low) / span
        ticks = np.linspace(0, 1, 3)
        raw = low + ticks * span
        labels = [hp_text(float(10**r if log and np.nanmin(numeric) > 0 else r)) for r in raw]
    else:
        text = values.map(hp_text)
        choices = sorted(text[~absent].unique(), key=natural_key)
        where = {c: i / max(1, len(choices) - 1) for i, c in enumerate(choices)}
        if len(choices) == 1:
            where = {choices[0]: 0.5}
        positions[~absent] = text[~absent].map(where).to_numpy(float)
        ticks, labels = list(where.values()), [shorten(c, 12) for c in where]
    if absent.any():
        ticks, labels = [*ticks, -0.1], [*labels, "n/a"]
    return positions, ticks, labels


def parallel_figure(finished, columns, objective, space=None):
    """Every finished trial as one line across its hyperparameters to the objective,
    coloured by the objective (best drawn on top)."""
    from matplotlib import colormaps

    score = pd.to_numeric(finished[objective]).to_numpy(float)
    axes_names = [c.removeprefix("hp/") for c in columns] + [objective]
    figure = new_figure(max(6.0, 1.1 * len(axes_names) + 1.5), 4.4)
    axes = figure.add_subplot()
    matrix, ticks = [], []
    for column in columns:
        parameter = space.parameters.get(column.removeprefix("hp/")) if space else None
        log = parameter is not None and parameter.distribution == "log_uniform_values"
        positions, at, labels = axis_positions(finished[column].reset_index(drop=True), log)
        matrix.append(positions)
        ticks.append((at, labels))
    objective_positions, at, labels = axis_positions(pd.Series(score))
    matrix.append(objective_positions)
    ticks.append((at, labels))
    matrix = np.column_stack(matrix)
    colours = colormaps["viridis"]
    low, high = np.nanmin(score), np.nanmax(score)
    for row in np.argsort(score):  # best last, so on top
        shade = (score[row] - low) / ((high - low) or 1.0)
        axes.plot(
            range(len(axes_names)), matrix[row], color=colours(shade), alpha=0.85, linewidth=1.6
        )
    for position, (at, labels) in enumerate(ticks):
        axes.axvline(position, color="#5b6575", linewidth=0.8)
        for y, label in zip(at, labels):
            axes.text(position + 0.03, y, label, fontsize=7, va="center", color="#1d2430")
    axes.set_xticks(
        range(len(axes_names)), [shorten(n, 16) for n in axes_names], rotation=20, ha="right"
    )
    axes.set_yticks([])
    axes.set_ylim(-0.18, 1.08)
    axes.set_xlim(-0.2, len(axes_names) - 0.5)
    axes.spines["left"].set_visible(False)
    axes.set_title(f"each line is a finished trial; colour: {objective} (yellow best)", fontsize=9)
    return figure


# ----------------------------------------------------------------------------- calibration


def reliability_figure(table, ece):
    """Accuracy per confidence bin against the diagonal, and how many images each bin holds."""
    figure = new_figure(7.5, 3.3)
    edges = table["edges"]
    width = np.diff(edges)
    centres = edges[:-1] + width / 2
    used = table["count"] > 0
    axes = figure.add_subplot(1, 2, 1)
    axes.plot([0, 1], [0, 1], "--", color="#9aa3b2", linewidth=1, label="perfect calibration")
    axes.bar(
        centres[used],
        table["accuracy"][used],
        width=width[used] * 0.9,
        color=BLUE,
        alpha=0.85,
        label="accuracy",
    )
    axes.scatter(
        table["confidence"][used],
        table["accuracy"][used],
        s=14,
        color=FRONT,
        zorder=3,
        label="mean confidence",
    )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability diagram, ECE {ece:.3f}")
    axes.legend(frameon=False, fontsize=7, loc="upper left")
    counts = figure.add_subplot(1, 2, 2)
    counts.bar(centres, table["count"], width=width * 0.9, color="#9aa3b2")
    counts.set_xlim(0, 1)
    counts.set_xlabel("confidence (top-1 probability)")
    counts.set_ylabel("images")
    counts.set_title("images per bin")
    return figure


# ----------------------------------------------------------------------------- run comparison


def best_so_far_figure(orders, objective):
    """Best objective so far per run, against trial id and against summed trial time; each
    finished trial's own score (pruned ones included) as a faint point."""
    figure = new_figure(9.5, 3.4)
    for index, (x, label) in enumerate(
        (("trial", "trial id"), ("seconds", "summed trial wall time (min)")), start=1
    ):
        axes = figure.add_subplot(1, 2, index)
        for number, (name, order) in enumerate(orders.items()):
            colour = PALETTE[number % len(PALETTE)]
            xs = order[x] / (60 if x == "seconds" else 1)
            axes.step(xs, order["best"], where="post", color=colour, label=name, linewidth=1.6)
            axes.scatter(xs, order["score"], s=12, color=colour, alpha=0.35)
        axes.set_xlabel(label)
        if index == 1:
            axes.set_ylabel(f"best {objective} so far")
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.legend(frameon=False, fontsize=8)
    return figure


def per_class_figure(f1):
    """Grouped horizontal bars: per-class F1 (rows of `f1`) of each run (columns)."""
    figure = new_figure(6.5, 0.32 * len(f1) * max(1, len(f1.columns) / 2) + 1.2)
    axes = figure.add_subplot()
    height = 0.8 / len(f1.columns)
    positions = np.arange(len(f1))
    for number, column in enumerate(f1.columns):
        values = pd.to_numeric(f1[column], errors="coerce").fillna(0).to_numpy()
        axes.barh(
            positions + number * height,
            values,
            height=height,
            color=PALETTE[number % len(PALETTE)],
            label=column,
        )
    axes.set_yticks(
        positions + height * (len(f1.columns) - 1) / 2, [shorten(str(n)) for n in f1.index]
    )
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1 on the shared validation split")
    axes.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure
