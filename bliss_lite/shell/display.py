"""Text tables for the shell: position tables (wa, wm) and the live motion display of umv."""
from __future__ import annotations

import shutil
import sys

import gevent


def fmt(value, digits=5):
    return f"{value:.{digits}f}"


def columns_table(headers, rows, row_labels=None, width=None):
    """Right-aligned columns, wrapped into several blocks when wider than the terminal."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    labels = row_labels or [""] * len(rows)
    label_width = max((len(x) for x in labels), default=0)
    col_widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    blocks, start = [], 0
    while start < len(headers):
        used, stop = label_width, start
        while stop < len(headers) and (stop == start or used + 2 + col_widths[stop] <= width):
            used += 2 + col_widths[stop]
            stop += 1
        span = range(start, stop)
        pad = " " * label_width
        lines = [pad + "".join(f"  {headers[i]:>{col_widths[i]}}" for i in span),
                 pad + "".join(f"  {'-' * col_widths[i]}" for i in span)]
        for label, row in zip(labels, rows):
            lines.append(f"{label:<{label_width}}" + "".join(f"  {row[i]:>{col_widths[i]}}" for i in span))
        blocks.append("\n".join(lines))
        start = stop
    return "\n\n".join(blocks)


def position_rows(axes):
    """[user row, dial row] as text, from one hardware read per axis (consistent mid-move)."""
    dials = [a.dial for a in axes]
    return [[fmt(a.dial2user(d)) for a, d in zip(axes, dials)], [fmt(d) for d in dials]]


def axis_header(axis):
    return f"{axis.name}[{axis.unit}]" if axis.unit else axis.name


class MotionDisplay:
    """Shows user and dial positions of moving axes, refreshed ~10 Hz on a terminal."""

    PERIOD = 0.1

    def __init__(self, axes, stream=None):
        self.axes = list(axes)
        self.stream = stream or sys.stdout
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self._greenlet = None
        self._drawn = False

    def _draw(self):
        text = columns_table([axis_header(a) for a in self.axes], position_rows(self.axes), ["user", "dial"], width=10**6)
        if self._drawn and self.live:
            self.stream.write(f"\x1b[{text.count(chr(10)) + 1}F")  # back to the table's first line
        self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = True

    def _refresh(self):
        while True:
            gevent.sleep(self.PERIOD)
            self._draw()

    def __enter__(self):
        if self.live:
            self._draw()
            self._greenlet = gevent.spawn(self._refresh)
        return self

    def __exit__(self, *exc):
        if self._greenlet is not None:
            self._greenlet.kill()
        self._draw()
        return False
