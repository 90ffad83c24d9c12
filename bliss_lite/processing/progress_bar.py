"""A one-line progress bar with rate and remaining time, for long offline jobs.

Why its own: reprocessing a dataset takes hours; the user needs to know whether to wait or to
go home. Redrawn in place on a terminal, at most every `every` seconds; into a file or a pipe
it writes a new line at most every `log_every` seconds instead, so logs stay short.
"""
from __future__ import annotations

import sys
import time


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """`update(n)` after each piece of work, `close()` at the end; `line()` is what it shows."""

    def __init__(self, total, unit="frames", stream=None, width=30, every=0.2, log_every=10.0, done=0):
        self.total, self.unit, self.width = max(int(total), 0), unit, width
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if self.tty else log_every
        self.done = self.skipped = int(done)  # already done before this run: not counted in the rate
        self.started = time.monotonic()
        self._drawn = 0.0

    def rate(self):
        elapsed = time.monotonic() - self.started
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    def line(self):
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = _duration(left) if left is not None else "?"
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {self.unit} "
                f"{fraction:4.0%}  {rate:,.0f} {self.unit}/s  {eta} left")

    def update(self, n=1):
        self.done += int(n)
        now = time.monotonic()
        if now - self._drawn >= self.every or self.done >= self.total:
            self._drawn = now
            self._draw()

    def _draw(self):
        self.stream.write(("\r" + self.line()) if self.tty else self.line() + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
