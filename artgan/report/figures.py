"""The report's matplotlib figures, each built from plain arrays and tables.

Figures are drawn on bare `Figure` objects (no pyplot, so no global state and no display),
under `MATPLOTLIB_STYLE`; `report_output.Writer.figure` saves and embeds them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from artgan.formatting import count, hp_text, missing, natural_key, numeric_values

MATPLOTLIB_STYLE = {
    "text.parse_math": False,  # a class name with "$" is text, not TeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "artgan",  # identical SVGs for identical figures
}
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
BLUE = PALETTE[0]


def new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def shorten(name, limit=24):
    """Class names in figures are cut to `limit` characters (tables keep them whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def class_colours(count):
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


# ----------------------------------------------------------------------------- hyperparameters


def importance_figure(importance):
    figure = new_figure(5.5, 0.3 * len(importance) + 1.0)
    axes = figure.add_subplot()
    names = [n.removeprefix("hp/") for n in importance.index][::-1]
    axes.barh([shorten(n) for n in names], importance.to_numpy()[::-1], color=BLUE)
    axes.set_xlabel("random-forest importance (share of explained variance)")
    return figure


def hp_figure(finished, columns, objective, space=None):
    """One small panel per hyperparameter: objective against the value for ranges (log axis
    for log-sampled ones), points per choice (with a box once a choice has 3+ trials)."""
    per_row = min(4, len(columns))
    rows = -(-len(columns) // per_row)
    figure = new_figure(3.0 * per_row, 2.4 * rows)
    y = pd.to_numeric(finished[objective]).to_numpy(float)
    margin = 0.05 * (np.ptp(y) or 1.0)
    rng = np.random.default_rng(0)
    for index, column in enumerate(columns, start=1):
        axes = figure.add_subplot(rows, per_row, index)
        axes.set_ylim(y.min() - margin, y.max() + margin)  # one scale for every panel
        values = finished[column]
        numeric = numeric_values(values)
        parameter = space.parameters.get(column.removeprefix("hp/")) if space else None
        if numeric is not None and is_range(parameter, numeric):
            range_panel(axes, numeric, y, parameter)
        else:
            choice_panel(axes, values, y, rng)
        axes.set_title(column.removeprefix("hp/"))
        if (index - 1) % per_row == 0:
            axes.set_ylabel(objective)
    return figure


def is_range(parameter, numeric):
    """Plot as a range: declared with min/max in the search space, else many distinct values."""
    if parameter is not None:
        return parameter.min is not None
    return numeric.nunique() > 3


def axis_number(value):
    """A short tick label: 360k and 1.2M, 0.25 and 12, 2e-4 and 1.8e-4 (not 0.00018, whose
    neighbours' labels would run into it)."""
    if abs(value) >= 1000:
        return count(value)
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def readable_axis(axis, values, log):
    """A few short tick labels: on a log axis at 1, 2 and 5 times powers of ten when the
    values span a decade or more, else (and on a linear axis) at most 5 round numbers."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    wide = len(values) and values.min() > 0 and values.max() / values.min() >= 10
    axis.set_major_locator(
        LogLocator(subs=(1.0, 2.0, 5.0))
        if log and wide
        else MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10])
    )
    axis.set_major_formatter(FuncFormatter(lambda value, _: axis_number(value)))
    axis.set_minor_formatter(NullFormatter())


def range_panel(axes, numeric, y, parameter):
    """Scatter against the value; a log axis for log-sampled or wide (10x+) ranges."""
    axes.scatter(numeric, y, s=18, color=BLUE)
    log = parameter is not None and parameter.distribution == "log_uniform_values"
    if log or (numeric.min() > 0 and numeric.max() / numeric.min() >= 10):
        axes.set_xscale("log")  # plain labels: parse_math is off, so no 10^x mathtext
        readable_axis(axes.xaxis, numeric, log=True)
    else:
        integers = bool((numeric.dropna() % 1 == 0).all())
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=integers))


def choice_panel(axes, values, y, rng):
    """Jittered points per choice ("n/a" where a conditional parameter was absent), with a
    box once every choice has 3+ trials."""
    text = values.map(lambda v: "n/a" if missing(v) else hp_text(v))
    labels = sorted(text.unique(), key=natural_key)
    groups = [y[(text == label).to_numpy()] for label in labels]
    if min(map(len, groups)) >= 3:
        axes.boxplot(groups, widths=0.5, showfliers=False)
    for position, group in enumerate(groups, start=1):
        jitter = rng.uniform(-0.12, 0.12, len(group))
        axes.scatter(position + jitter, group, s=14, color=BLUE, zorder=3)
    axes.set_xticks(range(1, len(labels) + 1), labels)
    axes.set_xlim(0.5, len(labels) + 0.5)


# ----------------------------------------------------------------------------- learning curves


def curves_figure(histories, trials):
    """Loss and accuracy per epoch, train solid and val dashed, one colour per trial."""
    figure = new_figure(9, 3.2)
    longest = max(len(v) for t in trials for v in histories[t].values())
    for index, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, index)
        for rank, trial_id in enumerate(trials, start=1):
            history = histories[trial_id]
            colour = PALETTE[(rank - 1) % len(PALETTE)]
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + metric)
                if values:
                    epochs = range(1, len(values) + 1)
                    axes.plot(
                        epochs,
                        values,
                        style,
                        marker="o",
                        markersize=3,
                        color=colour,
                        label=f"#{rank} trial {trial_id} {'val' if prefix else 'train'}",
                    )
        axes.set_title(metric)
        axes.set_xlabel("epoch")
        if longest <= 12:
            axes.set_xticks(range(1, longest + 1))
        else:
            axes.xaxis.get_major_locator().set_params(integer=True)
    figure.axes[-1].legend(
        loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False
    )
    return figure


# ----------------------------------------------------------------------------- confusion, t-SNE


def confusion_figure(matrix, normalised, labels):
    """Counts and row-normalised matrices side by side, sized to the number of classes."""
    short = [shorten(label) for label in labels]
    side = max(3.4, 0.38 * len(labels) + 0.07 * max(map(len, short)) + 1.2)
    figure = new_figure(2 * side, side)
    for index, (values, title, fmt) in enumerate(
        ((matrix, "counts", "{:.0f}"), (normalised, "row-normalised (recall)", "{:.2f}")), start=1
    ):
        axes = figure.add_subplot(1, 2, index)
        image = axes.imshow(values, cmap="Blues", vmin=0)
        threshold = values.max() / 2 if values.max() else 1
        if len(labels) <= 15:  # numbers in the cells; a colour bar only when they would not fit
            for (i, j), value in np.ndenumerate(values):
                axes.text(
                    j,
                    i,
                    fmt.format(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > threshold else "black",
                )
        else:
            figure.colorbar(image, ax=axes, shrink=0.6)
        axes.set_xticks(range(len(labels)), short, rotation=45, ha="right")
        axes.set_yticks(range(len(labels)), short if index == 1 else [])
        axes.set_xlabel("predicted")
        if index == 1:
            axes.set_ylabel("true")
        axes.set_title(title)
    return figure


def tsne_figure(coordinates, labels, names):
    figure = new_figure(7.5, 5.2)
    axes = figure.add_subplot()
    present = np.unique(labels)
    for colour, label in zip(class_colours(len(present)), present):
        chosen = labels == label
        axes.scatter(
            coordinates[chosen, 0],
            coordinates[chosen, 1],
            s=12,
            color=colour,
            alpha=0.8,
            label=shorten(names[label], 32),
            linewidths=0,
        )
    axes.set_axis_off()
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.6)
    return figure
