"""Peak tools on the last scan (SPEC/BLISS names): cen, com, peak, fwhm and goto_*.

They work on the last scan that moved an axis (a `ct` in between does not count), on the
selected counter (`plotselect(counter)`, else the scan's first counter) against the scan's
first axis (or `axis=`). For scans of several axes moving together, `goto_*` moves every axis
to where it was at the same (interpolated) point of the scan.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from bliss_lite.config.session import current_session
from bliss_lite.controllers.group import Group
from bliss_lite.data.model import plotselect_key
from bliss_lite.scans.context import current_context

__all__ = ["cen", "com", "peak", "fwhm", "goto_cen", "goto_com", "goto_peak", "plotselect"]



def plotselect(*counters):
    """Choose the counters that the plot shows (the live view follows it through Redis); the
    peak tools use the first."""
    if not counters:
        raise TypeError("plotselect: give one or more counters (or their names)")
    names = [getattr(c, "name", c) for c in counters]
    for counter, name in zip(counters, names):
        if not isinstance(name, str):
            raise TypeError(f"plotselect: give a counter or its name, got {counter!r}")
    session = current_session()
    if session is not None:
        known = [c.name for c in session.counters]
        for name in names:
            if name not in known:
                raise ValueError(f"plotselect: no counter {name!r} in session {session.name} "
                                 f"(counters: {', '.join(known)})")
    context = current_context()
    context.plot_selection = list(dict.fromkeys(names))
    if session is not None:
        _publish_selection(context, session.name)


def _publish_selection(context, session_name):
    """The selection goes to Redis for the live view; without Redis only the shell knows it."""
    client = context.redis.client()
    if client is None:
        return
    try:
        client.set(plotselect_key(session_name), json.dumps(context.plot_selection))
    except Exception as exc:  # noqa: BLE001 - the view misses the choice; the shell still has it
        logging.getLogger(__name__).warning(f"WARNING: plotselect not published to Redis ({exc})")


# -- the numbers, on plain arrays -------------------------------------------------------------
def peak_index(y):
    return int(np.nanargmax(y))


def center_of_mass(x, y):
    total = np.sum(y)
    if total == 0:
        raise ValueError("center of mass: the counter sums to zero")
    return float(np.sum(x * y) / total)


def half_max_crossings(x, y):
    """x where y crosses half its height (background = min) on each side of the maximum,
    interpolated linearly between points."""
    i = peak_index(y)
    low, high = float(np.nanmin(y)), float(y[i])
    if high == low:
        raise ValueError("fwhm: the counter is flat")
    half = low + (high - low) / 2

    def crossing(indices):
        previous = i
        for j in indices:
            if y[j] < half:
                y0, y1, x0, x1 = y[j], y[previous], x[j], x[previous]
                return float(x0 + (half - y0) * (x1 - x0) / (y1 - y0))
            previous = j
        return float(x[previous])  # the peak runs off the scan: its edge

    return crossing(range(i - 1, -1, -1)), crossing(range(i + 1, len(y)))


def fwhm_and_center(x, y):
    left, right = half_max_crossings(x, y)
    return abs(right - left), (left + right) / 2


# -- on the last scan -------------------------------------------------------------------------
def _last_scan():
    """The last scan that moved an axis."""
    for scan in reversed(current_context().scans):
        if scan.motors:
            return scan
    raise RuntimeError("no scan of an axis yet: peak tools need one (ascan, dscan, ...)")


def _curve(scan, counter=None, axis=None):
    """(data, x, y, x axis) of the scan for the peak tools, or a ValueError that says why not."""
    if "shape" in scan.scan_info:
        raise ValueError(f"scan {scan.number} is a mesh: peak tools need a one-dimensional scan")
    names = [c.name for c in scan.counters]
    name = getattr(counter, "name", counter) if counter is not None else current_context().selected_counter()
    if name not in names:
        if counter is not None:
            raise ValueError(f"counter {name!r} is not in scan {scan.number} (counters: {', '.join(names)})")
        name = names[0]  # the selected counter was not counted: the scan's first, as BLISS does
    axes = {m.name: m for m in scan.motors}
    axis_name = getattr(axis, "name", axis) if axis is not None else scan.motors[0].name
    if axis_name not in axes:
        raise ValueError(f"axis {axis_name!r} did not move in scan {scan.number} (axes: {', '.join(axes)})")
    data = scan.get_data()
    n = min(len(data[name]), len(data[axis_name]))
    if n == 0:
        raise ValueError(f"scan {scan.number} has no point")
    return data, np.asarray(data[axis_name][:n], float), np.asarray(data[name][:n], float), axes[axis_name]


def peak(counter=None, axis=None):
    """Position of the axis where the counter is highest."""
    _, x, y, _ = _curve(_last_scan(), counter, axis)
    return float(x[peak_index(y)])


def com(counter=None, axis=None):
    """Center of mass of the counter along the axis."""
    _, x, y, _ = _curve(_last_scan(), counter, axis)
    return center_of_mass(x, y)


def cen(counter=None, axis=None):
    """Center of the peak: the middle of its two half-maximum points."""
    _, x, y, _ = _curve(_last_scan(), counter, axis)
    return fwhm_and_center(x, y)[1]


def fwhm(counter=None, axis=None):
    """Full width at half maximum of the peak (background = the counter's minimum)."""
    _, x, y, _ = _curve(_last_scan(), counter, axis)
    return fwhm_and_center(x, y)[0]


def goto_targets(position, counter=None, axis=None):
    """{axis: target}: where every axis of the scan was when `axis` was at `position`
    (interpolated by point index)."""
    scan = _last_scan()
    data, x, _, chosen = _curve(scan, counter, axis)
    index = np.arange(len(x), dtype=float)
    order = np.argsort(x)
    fraction = float(np.interp(position, x[order], index[order]))
    targets = {m: float(np.interp(fraction, index, np.asarray(data[m.name][:len(x)], float))) for m in scan.motors}
    targets[chosen] = position
    return targets


def _goto(position, counter, axis):
    targets = goto_targets(position, counter, axis)
    Group(*targets).move(targets)
    return position


def goto_peak(counter=None, axis=None):
    return _goto(peak(counter, axis), counter, axis)


def goto_com(counter=None, axis=None):
    return _goto(com(counter, axis), counter, axis)


def goto_cen(counter=None, axis=None):
    return _goto(cen(counter, axis), counter, axis)
