"""How values read for people, in the report's pages and the model cards: percentages,
durations, counts, numbers, table cells, JSON scalars.

Every formatter turns a missing value (None or NaN, as pandas reads an empty cell) into
`blank` ("–" unless told), so a failed trial's row reads as blank rather than as "nan".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BLANK = "–"


def missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_number(value):
    """A real number (bools are choices, not numbers)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def percent(value):
    return BLANK if missing(value) else f"{100 * value:.1f}%"


def decimal(value, digits=3):
    return BLANK if missing(value) else f"{value:.{digits}f}"


def duration(seconds, blank=BLANK):
    if missing(seconds):
        return blank
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def count(value):
    if missing(value):
        return BLANK
    value = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def number(value, blank=BLANK):
    """A whole number with thousands separators ("1,234,567"), else 4 significant digits."""
    if missing(value):
        return blank
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{int(value):,}"


def hp_text(value):
    if missing(value):
        return BLANK
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def cell(text, sort=None, title=None):
    """A table cell: shown text, the value the leaderboard sorts by, and a tooltip."""
    if sort is not None and (isinstance(sort, bool) or missing(sort)):
        sort = None
    return {"text": text, "sort": sort, "title": title}


def value_cell(show, value):
    """A cell showing `show(value)` and sorting by the value itself."""
    return cell(show(value), value)


def numeric_values(values):
    """The column as floats (missing -> NaN) if every present value is a number, else None."""
    present = values[values.map(lambda v: not missing(v))]
    if present.empty or not present.map(is_number).all():
        return None
    return pd.to_numeric(values, errors="coerce").astype(float)


def natural_key(text):
    """Sort key putting numeric labels first, in numeric order ("2" before "10")."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def plain(value):
    """numpy / pandas scalars -> JSON-friendly Python values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
