"""The search's clock (`budget.max_minutes`) and why the search stopped: `<output>/search.json`.

The clock is written once when a run starts (a single-process search, a launcher or a chief
started by hand), on that machine's clock, and read on the same machine only: a distributed
search's chief hands out no trial after it (workers, whose clocks may differ by any amount,
never read it). No trial starts after it; the running one finishes (or is pruned).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artgan.files import read_json, write_text_atomic
from artgan.formatting import duration
from artgan.runfolder import RunFolder

if TYPE_CHECKING:
    from artgan.config.spec import ExperimentSpec


class SearchDeadline(Exception):
    """Raised before a new trial when the time budget is spent (ends the trial loop)."""


def start_clock(spec: ExperimentSpec, now: float | None = None) -> dict[str, Any]:
    """Start this run's clock in `<output>/search.json`; returns the state written."""
    now = time.time() if now is None else now
    minutes = spec.budget.max_minutes
    state = {
        "started": _stamp(now),
        "started_at": now,
        "max_minutes": minutes,
        "deadline_at": None if minutes is None else now + 60 * minutes,
        "stopped": None,
    }
    write_text_atomic(RunFolder(spec.output_dir).search_state, json.dumps(state, indent=1))
    return state


def search_state(output: Path) -> dict[str, Any]:
    return read_json(RunFolder(output).search_state)


def past_deadline(output: Path, now: float | None = None) -> bool:
    """True once this run's time budget is spent (False without one)."""
    deadline = search_state(output).get("deadline_at")
    return deadline is not None and (time.time() if now is None else now) >= deadline


def record_stop(output: Path, reason: str) -> dict[str, Any]:
    """Say in search.json why the search stopped (shown under the leaderboard)."""
    state = search_state(output)
    state.update(stopped=reason, ended=_stamp(time.time()))
    write_text_atomic(RunFolder(output).search_state, json.dumps(state, indent=1))
    return state


#: How `record_time` names the parts of a search's wall time, in the order they are shown;
#: "other" is the rest: building models, KerasTuner's bookkeeping, TensorBoard, pruning.
TIME_PARTS = ("decoding", "embedding", "training", "saving best models")
#: The parts that build the caches later trials read: paid by the first trial that needs each.
CACHE_PARTS = ("decoding", "embedding")


def cache_seconds(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Seconds spent building the caches (`CACHE_PARTS`) between two `time_spent()` readings;
    None when none was built (a trial that found them ready)."""
    seconds = sum(after.get(part, 0.0) - before.get(part, 0.0) for part in CACHE_PARTS)
    return round(seconds, 1) if seconds >= 0.05 else None


def record_time(output: Path, spent: dict[str, float], total: float) -> dict[str, float]:
    """Split the search's wall time `total` (seconds) into `spent` (`progress.time_spent`
    over the search, by kind) and the rest, in search.json (`seconds`); returns the split."""
    seconds = {part: round(spent.get(part, 0.0), 1) for part in TIME_PARTS}
    seconds["other"] = round(max(total - sum(seconds.values()), 0.0), 1)
    seconds["total"] = round(total, 1)
    state = search_state(output)
    state["seconds"] = seconds
    write_text_atomic(RunFolder(output).search_state, json.dumps(state, indent=1))
    return seconds


def time_split(seconds: dict[str, float]) -> str:
    """One line from search.json's `seconds`: `12 min 04 s in all: decoding 70.0 s (10%), ...`."""
    total = seconds.get("total") or 0.0
    parts = [
        f"{part} {duration(seconds[part])} ({seconds[part] / total:.0%})"
        for part in (*TIME_PARTS, "other")
        if seconds.get(part) and total
    ]
    return f"{duration(total)} in all" + (": " + ", ".join(parts) if parts else "")


def stop_reason(output: Path, finished: int, max_trials: int) -> str:
    """Why a search that ended normally stopped: its time budget or its trial count."""
    state = search_state(output)
    if past_deadline(output) and finished < max_trials:
        return (
            f"time budget: `budget.max_minutes` {state['max_minutes']:g} reached; "
            f"{finished} of {max_trials} trials ran"
        )
    return f"trial budget: {finished} of {max_trials} trials ran"


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
