"""Peak tools on the last scan (SPEC/BLISS names): cen, com, peak, fwhm and goto_*.

They work on the last scan that moved an axis (a `ct` in between does not count), on the
selected counter (`plotselect(counter)`, else the scan's first counter) against the scan's
first axis (or `axis=`). For scans of several axes moving together, `goto_*` moves every axis
to where it was at the same (interpolated) point of the scan.
"""
from __future__ import annotations

import json
import logging
import math
from typing import NamedTuple

import numpy as np

from bliss_lite.config.session import current_session
from bliss_lite.controllers.group import Group
from bliss_lite.data.model import plotselect_key
from bliss_lite.scans.context import current_context

__all__ = ["cen", "com", "peak", "fwhm", "goto_cen", "goto_com", "goto_peak", "plotselect"]



def plotselect(*counters):
    """Choose the counters that the plot shows (the live view follows it through Redis); the
    peak tools use the first.

    counters: one or more counters of the session, or their names.
    Example: plotselect(xtal)  then  cen()  ->  cen: sby = 0.3494 (xtal, fwhm 0.4026)"""
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
class PeakValue(float):
    """A peak tool's result: a float, which says in the shell what it was found from
    ("cen: sby = 0.3494 (xtal, fwhm 0.4026)")."""

    def __new__(cls, value, text):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __info__(self):
        return self.text


class Curve(NamedTuple):
    scan: object
    data: dict
    x: np.ndarray
    y: np.ndarray
    axis: object
    counter: str


def digits(axis):
    """Decimals that show an axis's steps (at least 4): 200 steps/mm -> 4, 20000 -> 5."""
    steps = abs(getattr(axis, "steps_per_unit", 0) or 0)
    return max(4, math.ceil(math.log10(steps)) if steps > 1 else 4)


def _last_scan():
    """The last scan that moved an axis."""
    for scan in reversed(current_context().scans):
        if scan.motors:
            return scan
    raise RuntimeError("no scan of an axis yet: peak tools need one (ascan, dscan, ...)")


def _curve(scan, counter=None, axis=None):
    """The scan's curve for the peak tools, or a ValueError that says why not."""
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
    return Curve(scan, data, np.asarray(data[axis_name][:n], float), np.asarray(data[name][:n], float),
                 axes[axis_name], name)


def _centre(curve, what):
    """(fwhm, centre) of the curve; a flat counter says what it read and, at count time 0, why."""
    try:
        return fwhm_and_center(curve.x, curve.y)
    except ValueError:
        why = ""
        if not curve.scan.count_time:
            why = " (count time 0: an integrating counter counts nothing; give a count time > 0)"
        raise ValueError(f"{what}: {curve.counter} is flat in scan {curve.scan.number} "
                         f"({curve.y[0]:g} at every point){why}") from None


def peak(counter=None, axis=None):
    """Position of the axis where the counter is highest, in the last scan.

    counter: a counter or its name (default: the plotselect-ed one, else the scan's first).
    axis: the axis it is taken against (default: the scan's first).
    Example: ascan(sby, 0, 1, 40, 0.1, xtal); peak()  ->  peak: sby = 0.3500 (xtal = 20050)
    """
    c = _curve(_last_scan(), counter, axis)
    i = peak_index(c.y)
    d = digits(c.axis)
    return PeakValue(c.x[i], f"peak: {c.axis.name} = {c.x[i]:.{d}f} ({c.counter} = {c.y[i]:g})")


def com(counter=None, axis=None):
    """Center of mass of the counter along the axis, in the last scan.

    counter, axis: as for peak(). Example: com()  ->  com: sby = 0.3497 (xtal)
    """
    c = _curve(_last_scan(), counter, axis)
    value = center_of_mass(c.x, c.y)
    return PeakValue(value, f"com: {c.axis.name} = {value:.{digits(c.axis)}f} ({c.counter})")


def cen(counter=None, axis=None):
    """Center of the peak, the middle of its two half-maximum points, in the last scan.

    counter, axis: as for peak(). Example: dscan(sby, -1, 1, 40, 0.1, xtal); cen()
    ->  cen: sby = 0.3494 (xtal, fwhm 0.4026)
    """
    c = _curve(_last_scan(), counter, axis)
    width, centre = _centre(c, "cen")
    d = digits(c.axis)
    return PeakValue(centre, f"cen: {c.axis.name} = {centre:.{d}f} ({c.counter}, fwhm {width:.{d}f})")


def fwhm(counter=None, axis=None):
    """Full width at half maximum of the peak (background = the counter's minimum), in the
    axis's unit, in the last scan.

    counter, axis: as for peak(). Example: fwhm()  ->  fwhm: 0.4026 mm (xtal along sby, cen 0.3494)
    """
    c = _curve(_last_scan(), counter, axis)
    width, centre = _centre(c, "fwhm")
    d, unit = digits(c.axis), f" {c.axis.unit}" if getattr(c.axis, "unit", "") else ""
    return PeakValue(width, f"fwhm: {width:.{d}f}{unit} ({c.counter} along {c.axis.name}, cen {centre:.{d}f})")


def goto_targets(position, counter=None, axis=None):
    """{axis: target}: where every axis of the scan was when `axis` was at `position`
    (interpolated by point index)."""
    scan = _last_scan()
    c = _curve(scan, counter, axis)
    index = np.arange(len(c.x), dtype=float)
    order = np.argsort(c.x)
    fraction = float(np.interp(position, c.x[order], index[order]))
    targets = {m: float(np.interp(fraction, index, np.asarray(c.data[m.name][:len(c.x)], float))) for m in scan.motors}
    targets[c.axis] = float(position)
    return targets


def arrived(command, found, targets):
    """What goto_* says after the move: where the axes are (targets rounded to their steps)."""
    moved = ", ".join(f"{a.name} = {a.position:.{digits(a)}f}" for a in targets)
    chosen = next((a for a, target in targets.items() if target == float(found)), next(iter(targets)))
    return PeakValue(chosen.position, f"{command}: {moved} ({found.text})")


def _goto(command, found, counter, axis):
    targets = goto_targets(found, counter, axis)
    Group(*targets).move(targets)
    return arrived(command, found, targets)


def goto_peak(counter=None, axis=None):
    """Move the scanned axes to the peak of the last scan (see peak()); says where they went.

    counter, axis: as for peak(). The axes go to the point of the highest value.
    Example: goto_peak()  ->  goto_peak: sby = 0.3500 (peak: sby = 0.3500 (xtal = 20050))"""
    return _goto("goto_peak", peak(counter, axis), counter, axis)


def goto_com(counter=None, axis=None):
    """Move the scanned axes to the center of mass of the last scan (see com()); says where
    they went (the target rounded to the axis's steps).

    counter, axis: as for peak().
    Example: goto_com()  ->  goto_com: sby = 0.3497 (com: sby = 0.3497 (xtal))"""
    return _goto("goto_com", com(counter, axis), counter, axis)


def goto_cen(counter=None, axis=None):
    """Move the scanned axes to the center of the peak of the last scan (see cen()).
    Example: goto_cen()  ->  goto_cen: sby = 0.3500 (cen: sby = 0.3494 (xtal, fwhm 0.4026))"""
    return _goto("goto_cen", cen(counter, axis), counter, axis)
