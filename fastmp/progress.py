"""A one-line progress bar for long runs (sweeps, figures): batches done, trials per
second and time left, redrawn in place on a terminal.

Resumed batches (found finished on disk) count as done but not towards the rate, so the
time left reflects the work that remains. Off a terminal the bar is shown only when
asked (``force=True``) and then prints a line per update, at most every
``min_interval`` seconds, so that logs stay readable.
"""
from __future__ import annotations

import math
import sys
import time


def isatty(stream):
    """Whether ``stream`` is an interactive terminal (False for anything odd)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def fmt_eta(seconds):
    """``42s``, ``3m05s``, ``2h07m`` or ``?``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class ProgressBar:
    """``label [#####.....] 12/40 batches  31%  1,234 trials/s  1m02s left``.

    Parameters
    ----------
    total_batches, total_trials : int
        Work of the whole run (finished and remaining).
    label : str
        Prefix, e.g. ``"fastmp sweep"``.
    stream : text stream, default ``sys.stderr``.
    min_interval : float
        Seconds between redraws (the last update always draws).
    """

    def __init__(self, total_batches, total_trials, label="fastmp", stream=None,
                 min_interval=None, width=24):
        self.total_batches = int(total_batches)
        self.total_trials = int(total_trials)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.tty = isatty(self.stream)
        self.min_interval = (0.1 if self.tty else 5.0) if min_interval is None else min_interval
        self.width = width
        self.batches = 0
        self.trials = 0
        self._resumed_trials = 0
        self._run_trials = 0
        self.t0 = time.perf_counter()
        self._last = -math.inf
        self._shown = 0

    def resumed(self, batches, trials):
        """Batches found finished on disk (no rate)."""
        self.batches += int(batches)
        self.trials += int(trials)
        self._resumed_trials += int(trials)
        self.t0 = time.perf_counter()

    def update(self, batches=1, trials=0):
        """``batches`` more finished, holding ``trials`` trials."""
        self.batches += int(batches)
        self.trials += int(trials)
        self._run_trials += int(trials)
        now = time.perf_counter()
        if self.batches < self.total_batches and now - self._last < self.min_interval:
            return
        self._last = now
        self.draw(now)

    def line(self, now=None):
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = self._run_trials / elapsed
        left_trials = max(self.total_trials - self.trials, 0)
        if left_trials == 0:
            eta = 0.0
        else:
            eta = left_trials / rate if rate > 0 else math.inf
        frac = self.batches / self.total_batches if self.total_batches else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        return (f"{self.label} [{bar}] {self.batches}/{self.total_batches} batches "
                f"{100 * frac:3.0f}%  {rate:,.1f} trials/s  {fmt_eta(eta)} left")

    def draw(self, now=None):
        text = self.line(now)
        if self.tty:
            pad = max(0, self._shown - len(text))
            self.stream.write("\r" + text + " " * pad)
        else:
            self.stream.write(text + "\n")
        self._shown = len(text)
        self.stream.flush()

    def close(self):
        """Draw the final state and end the line."""
        if self._shown and self.tty:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()
        elif not self._shown:
            self.draw()
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
