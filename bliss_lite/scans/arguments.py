"""Checking scan arguments before anything moves: numbers, point counts, counters, limits.

Every message starts with the command and names the argument, e.g.
"ascan: intervals must be a whole number >= 1, got 0" or "dscan: m0: target 120 beyond high
limit 100": a scan that would fail at its 900th point is refused at its first.
"""
from __future__ import annotations

import logging
import numbers

import numpy as np

from bliss_lite.config.errors import shown
from bliss_lite.config.fields import is_finite_number
from bliss_lite.config.session import current_session, is_counter, is_measurement_group
from bliss_lite.controllers.axis import Axis
from bliss_lite.controllers.counters.kinds import integrates
from bliss_lite.controllers.counters.measurement_group import active_mg
from bliss_lite.controllers.errors import AxisError, LimitError
from bliss_lite.controllers.motion import check_reachable
from bliss_lite.scans import limits
from bliss_lite.scans.context import current_context

logger = logging.getLogger(__name__)


def number(command, what, value) -> float:
    if not is_finite_number(value):
        raise ValueError(f"{command}: {what} must be a finite number, got {shown(value)}")
    return float(value)


def count_time(command, value) -> float:
    value = number(command, "count time", value)
    if value < 0:
        raise ValueError(f"{command}: count time must be >= 0, got {value!r}")
    return value


# points of one scan: a step scan's targets (and a mesh's rows) are built before the first move,
# so a typo like 10**12 intervals must be refused, not met with MemoryError or a swapping machine.
# The defaults; a session's own are its ScanContext's `limits` (SCAN_LIMITS in the shell).
MAX_POINTS, MAX_FRAMES = limits.MAX_POINTS, limits.MAX_FRAMES


def whole(command, what, value, minimum=1, maximum=None, setting=None) -> int:
    """`setting` names where `maximum` comes from (e.g. "SCAN_LIMITS.max_frames"), for the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{command}: {what} must be a whole number >= {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        where = f" ({setting})" if setting else ""
        raise ValueError(f"{command}: {what} must be at most {maximum:,}{where}, got {value!r}")
    return int(value)


def total_points(command, counts, what="points", limit=MAX_POINTS, setting=None):
    """The product of per-dimension counts, refused beyond `limit` (`setting` names it)."""
    total = 1
    for count in counts:
        total *= count
    if total > limit:
        where = f" ({setting})" if setting else ""
        raise ValueError(f"{command}: {total:,} {what} is more than {limit:,}{where}")
    return total


def session_limits():
    """The current session's ScanLimits (the defaults without a session)."""
    return current_context().limits


def flag(command, what, value) -> bool:
    """True/False only: `snake="no"` would otherwise be true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{command}: {what} must be True or False, got {shown(value)}")
    return bool(value)


def positions(command, name, value) -> list:
    """A non-empty one-dimensional sequence of finite numbers (axis `name`'s), as floats."""
    try:
        one_dimensional = np.ndim(value) == 1 and not isinstance(value, (str, bytes, dict))
    except ValueError:  # numpy refuses ragged nested lists
        one_dimensional = False
    if not one_dimensional or len(value) == 0:
        raise ValueError(f"{command}: {name}: positions must be a non-empty list of numbers, got {shown(value)}")
    return [number(command, f"{name} position {i}", p) for i, p in enumerate(value)]


def axis(command, value, what="motor") -> Axis:
    if not isinstance(value, Axis):
        raise TypeError(f"{command}: {what} must be an axis, got {shown(value)}")
    if value.is_moving:
        raise AxisError(f"{command}: {value.name} is moving; wait for it (or stop it) first")
    return value


def distinct_axes(command, axes):
    names = [a.name for a in axes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{command}: axis {', '.join(twice)} given twice")


def _by_name(command, name):
    session = current_session()
    obj = session.objects.get(name) if session is not None else None
    if obj is None or not (is_counter(obj) or is_measurement_group(obj)):
        known = sorted(c.name for c in session.counters) if session is not None else []
        raise ValueError(f"{command}: unknown counter {shown(name)}" + (f" (counters: {', '.join(known)})" if known else ""))
    return obj


def counters(command, args):
    """Counters from counters, measurement groups or names; the active group's when none."""
    if not args:
        group = active_mg()
        if group is None:
            raise ValueError(f"{command}: no counter given and no active measurement group")
        args = (group,)
    found = []
    for arg in args:
        obj = _by_name(command, arg) if isinstance(arg, str) else arg
        if is_measurement_group(obj):
            found.extend(obj.counters)
        elif is_counter(obj):
            found.append(obj)
        else:
            raise TypeError(f"{command}: {shown(arg)} is not a counter or a measurement group")
    chosen = list({id(c): c for c in found}.values())
    if not chosen:
        raise ValueError(f"{command}: no enabled counter to count")
    return chosen


def counts_something(command, count_time, chosen):
    """Warn, before anything moves, that integrating counters read 0 at count time 0 (sampling
    counters still take one sample: a count time of 0 suits them). Returns their names."""
    zero = [c.name for c in chosen if integrates(c)] if count_time <= 0 else []
    if zero:
        logger.warning(f"WARNING: {command}: count time 0: integrating counters ({', '.join(zero)}) will read 0 "
                       f"at every point; give a count time > 0 to count them")
    return zero


def reachable(command, axis, targets):
    """Every target (and its backlash approach) inside the axis limits, or a LimitError."""
    targets = np.asarray(targets, dtype=float)
    if targets.size == 0:
        return
    if not np.all(np.isfinite(targets)):
        raise ValueError(f"{command}: {axis.name}: positions must be finite numbers")
    try:
        for target in {float(targets.min()), float(targets.max())}:
            check_reachable(axis, target)
    except LimitError as exc:
        raise LimitError(f"{command}: {exc}") from None
