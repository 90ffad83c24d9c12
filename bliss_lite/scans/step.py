"""Step-scan commands (SPEC/BLISS names): plain functions returning the Scan they ran.

Counters are given as counters, measurement groups or names; none means the active
measurement group. Every argument, every counter and every point's target are checked before
the first move. Relative scans (d*) move back to where they started at the end, on error and
on Ctrl-C. `save=False` skips the file (Redis and `get_data()` still have every point).
`run=False` moves nothing: the scan comes back unrun with its `estimate` (scans/estimate.py),
and `scan.run()` runs it.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.scans import arguments as check
from bliss_lite.scans.chain import AcquisitionChain
from bliss_lite.scans.estimate import run_or_plan
from bliss_lite.scans.scan import Scan
from bliss_lite.scans.step_objects import CounterSlave, MotorMaster, TimerMaster
from bliss_lite.scans.suspenders import checked_suspenders

__all__ = ["ct", "sct", "ascan", "a2scan", "anscan", "dscan", "d2scan", "dnscan", "amesh", "dmesh",
           "lookupscan", "pointscan", "timescan", "loopscan"]


def _suspenders(command, suspenders):
    """A scan's own suspenders (None: the session's), checked before anything moves."""
    return checked_suspenders(command, suspenders)


def _fmt(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _title(command, *parts):
    return " ".join([command, *(getattr(p, "name", None) or _fmt(p) for p in parts)])


def _run_steps(command, title, axes, points, count_time, counter_args, save, restore=None, scan_info=None,
               run=True, suspenders=None):
    """Check everything, build MotorMaster -> TimerMaster -> CounterSlave, run it (or, with
    run=False, return it unrun with its estimate)."""
    t = check.count_time(command, count_time)
    counters = check.counters(command, counter_args)
    check.counts_something(command, t, counters)
    save, run = check.flag(command, "save", save), check.flag(command, "run", run)
    points = np.asarray(points, dtype=float).reshape((len(points), len(axes)))
    for i, axis in enumerate(axes):
        check.reachable(command, axis, points[:, i])
    timer = TimerMaster(t, 1, children=[CounterSlave(counters, t)])
    chain = AcquisitionChain(MotorMaster(axes, points.tolist(), children=[timer]))
    scan = Scan(chain, name=command, title=title, npoints=len(points), save=save, restore=restore,
                motors=axes, counters=counters, count_time=t, scan_info=scan_info,
                suspenders=_suspenders(command, suspenders))
    return run_or_plan(scan, run)


def _line(command, motor_ranges, intervals, relative):
    """Axes, start/stop per axis (absolute), and the points of a straight line scan."""
    most = check.session_limits().max_points
    intervals = check.whole(command, "intervals", intervals, maximum=most - 1, setting="SCAN_LIMITS.max_points - 1")
    axes = [check.axis(command, m) for m, _, _ in motor_ranges]
    check.distinct_axes(command, axes)
    starts, stops = [], []
    for axis, start, stop in motor_ranges:
        start, stop = check.number(command, f"{axis.name} start", start), check.number(command, f"{axis.name} stop", stop)
        offset = axis.position if relative else 0.0
        starts.append(start + offset)
        stops.append(stop + offset)
    with np.errstate(over="ignore", invalid="ignore"):  # -1e308..1e308: refused as not finite below
        points = np.linspace(starts, stops, intervals + 1)
    return axes, points


def _nscan(command, motor_ranges, intervals, count_time, counters, save, relative, run=True, suspenders=None):
    axes, points = _line(command, motor_ranges, intervals, relative)
    parts = [x for m in motor_ranges for x in m] + [intervals, count_time]
    restore = {a: a.position for a in axes} if relative else None
    return _run_steps(command, _title(command, *parts), axes, points, count_time, counters, save, restore, run=run,
                      suspenders=suspenders)


def _triples(command, motor_tuple_list):
    if not isinstance(motor_tuple_list, (list, tuple)) or not motor_tuple_list:
        raise TypeError(f"{command}: give a list of (motor, start, stop) tuples")
    for item in motor_tuple_list:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise TypeError(f"{command}: each entry must be (motor, start, stop), got {item!r}")
    return [tuple(item) for item in motor_tuple_list]


# -- counting ---------------------------------------------------------------------------------
def _count(command, count_time, counters, save, run=True, suspenders=None):
    t = check.count_time(command, count_time)
    chosen = check.counters(command, counters)
    check.counts_something(command, t, chosen)
    save, run = check.flag(command, "save", save), check.flag(command, "run", run)
    chain = AcquisitionChain(TimerMaster(t, 1, children=[CounterSlave(chosen, t)]))
    return run_or_plan(Scan(chain, name=command, title=_title(command, t), npoints=1, save=save, counters=chosen,
                            count_time=t, suspenders=_suspenders(command, suspenders)), run)


def ct(count_time=1.0, *counters, save=False, run=True, suspenders=None):
    """Count once for `count_time` seconds and show each counter's value with its unit, and
    the rate per second of integrating counters; not saved (see `sct`).

    count_time: seconds (default 1). counters: counters, groups or names; none: the active
    measurement group. Returns the Scan (`.get_data()`).
    Example: ct(0.5)  or  ct(1, xtal, ring_current)"""
    return _count("ct", count_time, counters, save, run, suspenders)


def sct(count_time=1.0, *counters, save=True, run=True, suspenders=None):
    """Like `ct`, saved as a scan entry of the session's file.

    Example: sct(1)  ->  the entry N.1 of SCAN_SAVING.filename"""
    return _count("sct", count_time, counters, save, run, suspenders)


# -- absolute and relative line scans ---------------------------------------------------------
def ascan(motor, start, stop, intervals, count_time, *counters, save=True, run=True, suspenders=None):
    """Step `motor` from `start` to `stop` in `intervals` equal steps (intervals+1 points)
    and count `count_time` seconds at each; the axis stays at `stop`.

    motor: an axis. start, stop: absolute positions, in the axis's unit (mm, deg: wa() shows
    it). intervals: a whole number >= 1.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: ascan(sby, 0, 1, 40, 0.1, xtal)  then  cen(), goto_cen()"""
    return _nscan("ascan", [(motor, start, stop)], intervals, count_time, counters, save,
                  relative=False, run=run, suspenders=suspenders)


def a2scan(motor1, start1, stop1, motor2, start2, stop2, intervals, count_time, *counters, save=True,
           run=True, suspenders=None):
    """Two axes moving together, each from its start to its stop, in `intervals` steps.

    start1, stop1 (motor1) and start2, stop2 (motor2): absolute, in each axis's unit.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: a2scan(sby, 0, 1, sbz, 0, 0.5, 20, 0.1)"""
    return _nscan("a2scan", [(motor1, start1, stop1), (motor2, start2, stop2)], intervals, count_time,
                  counters, save, relative=False, run=run, suspenders=suspenders)


def anscan(motor_tuple_list, intervals, count_time, *counters, save=True, run=True, suspenders=None):
    """anscan([(m0, start, stop), (m1, start, stop), ...], intervals, t): n axes together,
    each from its start to its stop (absolute, in its unit).
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: anscan([(sby, 0, 1), (sbz, 0, 2)], 10, 0.1)"""
    return _nscan("anscan", _triples("anscan", motor_tuple_list), intervals, count_time, counters, save,
                  relative=False, run=run, suspenders=suspenders)


def dscan(motor, start, stop, intervals, count_time, *counters, save=True, run=True, suspenders=None):
    """Like ascan, with start and stop relative to the current position; the axis returns
    there at the end, after an error and after Ctrl-C.

    motor: an axis. start, stop: offsets from where it is, in its unit. intervals: >= 1.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: dscan(sby, -1, 1, 40, 0.1, xtal)  then  goto_cen()"""
    return _nscan("dscan", [(motor, start, stop)], intervals, count_time, counters, save,
                  relative=True, run=run, suspenders=suspenders)


def d2scan(motor1, start1, stop1, motor2, start2, stop2, intervals, count_time, *counters, save=True,
           run=True, suspenders=None):
    """Like a2scan, relative to the current positions; the axes return there at the end.

    Example: d2scan(sby, -1, 1, sbz, -0.5, 0.5, 20, 0.1)"""
    return _nscan("d2scan", [(motor1, start1, stop1), (motor2, start2, stop2)], intervals, count_time,
                  counters, save, relative=True, run=run, suspenders=suspenders)


def dnscan(motor_tuple_list, intervals, count_time, *counters, save=True, run=True, suspenders=None):
    """Like anscan, relative to the current positions; the axes return there at the end.

    Example: dnscan([(sby, -1, 1), (sbz, -1, 1)], 10, 0.1)"""
    return _nscan("dnscan", _triples("dnscan", motor_tuple_list), intervals, count_time, counters, save,
                  relative=True, run=run, suspenders=suspenders)


# -- meshes -----------------------------------------------------------------------------------
def _mesh(command, args, count_time, counters, save, backnforth, relative, run=True, suspenders=None):
    motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2 = args
    fast, slow = check.axis(command, motor1), check.axis(command, motor2)
    check.distinct_axes(command, [fast, slow])
    check.total_points(command, [check.whole(command, "intervals", n) + 1 for n in (intervals1, intervals2)],
                       limit=check.session_limits().max_points, setting="SCAN_LIMITS.max_points")
    backnforth = check.flag(command, "backnforth", backnforth)
    _, fast_points = _line(command, [(fast, start1, stop1)], intervals1, relative)
    _, slow_points = _line(command, [(slow, start2, stop2)], intervals2, relative)
    rows = []
    for j, y in enumerate(slow_points[:, 0]):
        line = fast_points[:, 0][::-1] if backnforth and j % 2 else fast_points[:, 0]
        rows.extend((x, y) for x in line)
    restore = {fast: fast.position, slow: slow.position} if relative else None
    info = {"shape": [int(intervals2) + 1, int(intervals1) + 1], "backnforth": bool(backnforth)}
    title = _title(command, *args, count_time)
    return _run_steps(command, title, [fast, slow], rows, count_time, counters, save, restore, info, run, suspenders)


def amesh(motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2, count_time, *counters,
          backnforth=False, save=True, run=True, suspenders=None):
    """A grid: motor1 (fast) from start1 to stop1 in intervals1 steps at each of the
    intervals2+1 positions of motor2 (slow), absolute, in each axis's unit.
    `backnforth=True` scans every other line of motor1 in reverse.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: amesh(sby, 0, 1, 10, sbz, 0, 1, 5, 0.1, xtal)"""
    return _mesh("amesh", (motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2),
                 count_time, counters, save, backnforth, relative=False, run=run, suspenders=suspenders)


def dmesh(motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2, count_time, *counters,
          backnforth=False, save=True, run=True, suspenders=None):
    """Like amesh, relative to the current positions; the axes return there at the end.

    Example: dmesh(sby, -0.5, 0.5, 10, sbz, -0.5, 0.5, 10, 0.1, xtal)"""
    return _mesh("dmesh", (motor1, start1, stop1, intervals1, motor2, start2, stop2, intervals2),
                 count_time, counters, save, backnforth, relative=True, run=run, suspenders=suspenders)


# -- given positions --------------------------------------------------------------------------
def lookupscan(motor_pos_tuple_list, count_time, *counters, save=True, run=True, suspenders=None):
    """lookupscan([(m0, positions), (m1, positions)], t): the axes visit the listed positions
    together (every list the same length) and count `count_time` seconds at each.

    motor_pos_tuple_list: (axis, positions) pairs; positions absolute, in the axis's unit.
    count_time: seconds per point. counters: counters, measurement groups or names; none: the
    active measurement group. save, run: as for ascan. Returns the Scan.
    Example: lookupscan([(sby, [0, 0.2, 0.5]), (sbz, [1, 1.5, 2])], 0.1, xtal)"""
    return _lookup("lookupscan", motor_pos_tuple_list, count_time, counters, save, run, suspenders)


def pointscan(motor, positions, count_time, *counters, save=True, run=True, suspenders=None):
    """pointscan(m, [p0, p1, ...], t): visit the listed positions of one axis, in that order,
    and count `count_time` seconds at each.

    motor: an axis. positions: absolute, in the axis's unit. count_time: seconds per point.
    counters, save, run: as for ascan. Returns the Scan.
    Example: pointscan(sby, [0, 0.3, 0.35, 0.4, 1], 0.1, xtal)"""
    return _lookup("pointscan", [(check.axis("pointscan", motor), positions)], count_time, counters, save,
                   run, suspenders)


def _lookup(command, motor_pos_tuple_list, count_time, counters, save, run=True, suspenders=None):
    if not isinstance(motor_pos_tuple_list, (list, tuple)) or not motor_pos_tuple_list:
        raise TypeError(f"{command}: give a list of (motor, positions) tuples")
    axes, columns = [], []
    for item in motor_pos_tuple_list:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise TypeError(f"{command}: each entry must be (motor, positions), got {item!r}")
        axes.append(check.axis(command, item[0]))
        columns.append(check.positions(command, axes[-1].name, item[1]))
    check.distinct_axes(command, axes)
    if len({len(c) for c in columns}) != 1:
        lengths = ", ".join(f"{a.name}: {len(c)}" for a, c in zip(axes, columns))
        raise ValueError(f"{command}: every axis needs the same number of positions ({lengths})")
    title = f"{command} " + " ".join(a.name for a in axes) + f" {len(columns[0])} points {_fmt(count_time)}"
    return _run_steps(command, title, axes, list(zip(*columns)), count_time, counters, save, run=run,
                      suspenders=suspenders)


# -- time -------------------------------------------------------------------------------------
def timescan(count_time, *counters, npoints=0, sleep_time=0.0, save=True, run=True, suspenders=None):
    """Count every `count_time` seconds (+ `sleep_time` seconds between counts), `npoints`
    times; npoints=0 counts until Ctrl-C. Nothing moves.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: timescan(0.5, ring_current, npoints=20)"""
    command = "timescan"
    n = check.whole(command, "npoints", npoints, minimum=0) or None  # 0.0 is not 0: refused
    return _timed(command, _title(command, count_time), count_time, counters, n, sleep_time, save, run, suspenders)


def loopscan(npoints, count_time, *counters, sleep_time=0.0, save=True, run=True, suspenders=None):
    """Count `npoints` times for `count_time` seconds each (+ `sleep_time` seconds between).
    Nothing moves.
    counters: counters, measurement groups or names; none: the active measurement group.
    count_time: seconds per point; integrating counters read 0 at 0 s (sampling ones sample once).
    save=False: published but not written to the file. run=False: nothing moves; the scan
    comes back unrun with its `estimate` (`.run()` runs it). Returns the Scan.
    Example: loopscan(10, 0.1)"""
    command = "loopscan"
    n = check.whole(command, "npoints", npoints)
    return _timed(command, _title(command, npoints, count_time), count_time, counters, n, sleep_time, save,
                  run, suspenders)


def _timed(command, title, count_time, counter_args, npoints, sleep_time, save, run=True, suspenders=None):
    t = check.count_time(command, count_time)
    pause = check.number(command, "sleep time", sleep_time)
    if pause < 0:
        raise ValueError(f"{command}: sleep time must be >= 0, got {sleep_time!r}")
    chosen = check.counters(command, counter_args)
    check.counts_something(command, t, chosen)
    save, run = check.flag(command, "save", save), check.flag(command, "run", run)
    chain = AcquisitionChain(TimerMaster(t, npoints, pause, children=[CounterSlave(chosen, t)]))
    return run_or_plan(Scan(chain, name=command, title=title, npoints=npoints, save=save, counters=chosen,
                            count_time=t, suspenders=_suspenders(command, suspenders)), run)
