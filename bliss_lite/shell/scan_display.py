"""What the shell prints while a scan runs: a header, a table of points (or a progress line
when points come too fast to read), then a summary with the file and entry.

It runs in its own greenlet at ~10 Hz and only reads the scan's buffers, so printing never
slows the scan loop; `ct` prints the counted values instead of a table.
"""
from __future__ import annotations

import sys
import time

import gevent

from bliss_lite.controllers.counters.kinds import INTEGRATING, counter_channels, kind_of

PERIOD = 0.1
FAST = 10  # more new points than this in one refresh: show a progress line instead of rows
WIDTH = 12


def _cell(value, width):
    try:
        return f"{value:>{width}.6g}"
    except (TypeError, ValueError):
        return f"{str(value):>{width}}"


class ScanDisplay:
    def __init__(self, scan, stream=None):
        self.scan = scan
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.columns = (["elapsed_time"] + [m.name for m in scan.motors]
                        + [spec.name for c in scan.counters for spec in counter_channels(c)])
        self.widths = [max(WIDTH, len(c) + 2) for c in self.columns]
        self.printed = 0
        self.progress = False
        self._greenlet = None
        self._t0 = time.monotonic()

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()

    # -- context manager around the scan's run -----------------------------------------------
    def __enter__(self):
        if self.scan.name in ("ct", "sct"):
            return self
        scan = self.scan
        where = f"{scan.filename} entry {scan.entry}" if scan.filename else "not saved"
        self.write(f"\nScan {scan.number} {time.strftime('%a %b %d %H:%M:%S %Y')} {where}\n{scan.title}\n\n")
        headers = ["dt[s]"] + self.columns[1:]
        self.write(f"{'#':>{WIDTH}}" + "".join(f"{h:>{w}}" for h, w in zip(headers, self.widths)) + "\n")
        self._greenlet = gevent.spawn(self._refresh)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._greenlet is not None:
            self._greenlet.kill()
            self._show_new(final=True)
        if self.scan.name in ("ct", "sct"):
            self._show_counts()
        self._summary(exc_type)
        return False

    # -- drawing -----------------------------------------------------------------------------
    def _refresh(self):
        while True:
            gevent.sleep(PERIOD)
            self._show_new()

    def _show_new(self, final=False):
        available = self.scan.data.npoints
        new = available - self.printed
        if not self.progress and new > FAST and not final:
            self.progress = True
        if not self.progress and self.printed < max((b.base for b in self.scan.data.buffers.values()), default=0):
            self.progress = True  # rows already let go (written to the file) cannot be printed
        if self.progress:
            if self.tty:
                total = f"/{self.scan.npoints}" if self.scan.npoints else ""
                self.write(f"\r{'':>{WIDTH - 1}}#{available}{total} points, {time.monotonic() - self._t0:.1f} s"
                           + ("\n" if final else ""))
            self.printed = available
            return
        for index in range(self.printed, available):
            point = self.scan.data.last_point(index)
            self.write(f"{index:>{WIDTH}}" + "".join(_cell(point[c], w) for c, w in zip(self.columns, self.widths)) + "\n")
        self.printed = available

    def _show_counts(self):
        """One line per channel: value and unit; integrating counters also per second."""
        point = self.scan.data.last_point() if self.scan.data.npoints else {}
        t = self.scan.count_time
        lines = [f"\n{time.strftime('%a %b %d %H:%M:%S %Y')}  (count time {t:g} s)\n"]
        rows = [(c, spec) for c in self.scan.counters for spec in counter_channels(c) if spec.name in point]
        width = max((len(spec.name) for _, spec in rows), default=0)
        for counter, spec in rows:
            value = point[spec.name]
            unit = f" {spec.unit}" if spec.unit else ""
            line = f"  {spec.name:>{width}} = {value:>12.6g}{unit}"
            if kind_of(counter) == INTEGRATING and t:
                line = f"{line:<{width + 30}}  ({value / t:>12.6g} {spec.unit or 'counts'}/s)"
            lines.append(line.rstrip())
        self.write("\n".join(lines) + "\n")

    def _summary(self, exc_type):
        scan = self.scan
        took = time.monotonic() - self._t0
        outcome = {"SUCCESS": "", "USER_ABORT": " ABORTED by the user", "FAILURE": " FAILED"}.get(scan.end_reason, "")
        where = f", {scan.filename} entry {scan.entry}" if scan.filename else ""
        self.write(f"\nScan {scan.number}{outcome}: {scan.data.npoints} points, took {took:.3f} s{where}\n")
