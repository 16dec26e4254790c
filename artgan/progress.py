"""Progress of long loops: a tqdm bar on a terminal; anywhere else (a log file, CI, a pipe)
one logged line every 10 % or every minute, with rate and time left, instead of bar redraws
(a carriage-return bar writes megabytes into a log over a long search).

Every progress display in artgan goes through `progress_bar`; where a process's time goes
(decoding, embedding, training...) is summed by `spending` and read by `time_spent`.
"""

import logging
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

from tqdm import tqdm

log = logging.getLogger(__name__)

STEPS = 10  # a line each time another tenth of the total is done
EVERY_SECONDS = 60  # ... or after this long without one

_SPENT: defaultdict[str, float] = defaultdict(float)  # seconds this process spent, by kind


@contextmanager
def spending(kind: str):
    """Add the wall time of the `with` block to this process's `time_spent()[kind]`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _SPENT[kind] += time.perf_counter() - started


def time_spent() -> dict[str, float]:
    """Seconds this process spent so far in each kind of `spending` block."""
    return dict(_SPENT)


def progress_bar(
    iterable=None,
    *,
    total=None,
    desc="",
    unit="it",
    disable=False,
    stream=None,
    initial=0,
    unit_scale=False,
    **bar_options,
):
    """A tqdm-like progress object (iterate it, or `update(n)` it inside a `with`): a bar
    when `stream` (default stderr) is a terminal, logged lines otherwise."""
    stream = stream or sys.stderr
    if disable or _is_terminal(stream):
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            disable=disable,
            file=stream,
            initial=initial,
            unit_scale=unit_scale,
            **bar_options,
        )
    return ProgressLines(
        iterable, total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale
    )


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class ProgressLines:
    """Logs `desc: done/total unit (N%), rate, time left` at every further tenth of `total`
    (every minute when the total is unknown or slow), and a closing line with the total time.
    `initial` counts work done before (a resumed build); rates count this run only."""

    def __init__(
        self,
        iterable=None,
        total=None,
        desc="",
        unit="it",
        initial=0,
        unit_scale=False,
        clock=time.monotonic,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.unit_scale, self.clock = unit_scale, clock
        self.closed = False
        self.reset(total, initial)

    def reset(self, total=None, initial=0):
        """Start counting again (tqdm's `reset`), e.g. when a download restarts."""
        self.initial = self.n = initial
        self.started = self.last_time = self.clock()
        self.total = total if total is not None else getattr(self, "total", None)

    @property
    def total(self):
        return self._total

    @total.setter
    def total(self, total):  # settable, as tqdm's: a download learns its size late
        self._total = total
        self.next_step = self._next_step(self.n)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return self.total

    def update(self, n=1):
        self.n += n
        now = self.clock()
        reached = self.total and self.n * STEPS >= self.next_step * self.total
        if reached or now - self.last_time >= EVERY_SECONDS:
            self.next_step = self._next_step(self.n)
            self.last_time = now
            if not (self.total and self.n >= self.total):  # the closing line says it
                log.info(self._line(now))

    def close(self):
        if self.closed:
            return
        self.closed = True
        seconds = self.clock() - self.started
        done = self.n - self.initial
        if done:
            log.info(
                "%s: %s in %s (%s)",
                self.desc,
                self._amount(self.n),
                _duration(seconds),
                self._rate(done, seconds),
            )

    def _next_step(self, n):
        """The next tenth (1..10) of the total to report at."""
        return n * STEPS // self.total + 1 if self.total else float("inf")

    def _line(self, now):
        seconds = now - self.started
        done = self.n - self.initial
        if self.total:
            amount = self._amount(self.n, self.total) + f" ({self.n / self.total:.0%})"
        else:
            amount = self._amount(self.n)
        text = f"{self.desc}: {amount}, {self._rate(done, seconds)}"
        if self.total and done > 0 and seconds > 0:
            left = (self.total - self.n) * seconds / done
            text += f", about {_duration(left)} left"
        return text

    def _amount(self, *counts):
        """Counts with the unit: "12 img", "12/100 img", "1.21M/2.00MB"."""
        number = (
            (lambda n: tqdm.format_sizeof(n, divisor=1024))
            if self.unit_scale
            else "{:,.0f}".format
        )
        return "/".join(map(number, counts)) + ("" if self.unit_scale else " ") + self.unit

    def _rate(self, done, seconds):
        rate = done / max(seconds, 1e-9)
        if self.unit_scale:
            return f"{self._amount(rate)}/s"
        return f"{rate:,.1f} {self.unit}/s" if rate >= 1 else f"{rate:.2g} {self.unit}/s"


def _duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
