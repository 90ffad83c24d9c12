"""Standard shell commands (SPEC/BLISS names): plain functions that also work from a script.

Arguments are checked before anything moves; Ctrl-C during a move stops every moving axis
(the motion task's job) and these commands say where each one stopped.
"""
from __future__ import annotations

import sys

from bliss_lite.config.fields import is_finite_number
from bliss_lite.config.session import current_session
from bliss_lite.controllers.axis import Axis
from bliss_lite.controllers.counters.measurement_group import active_mg
from bliss_lite.controllers.group import Group
from bliss_lite.shell.display import MotionDisplay, axis_header, columns_table, fmt, position_rows

__all__ = ["mv", "mvr", "umv", "umvr", "wa", "wm", "sta", "sync", "lsmot", "lscnt", "lsmg"]


def _pairs(command, args):
    """[(axis, number), ...] from (axis, pos, axis, pos, ...), or a clear TypeError/ValueError."""
    if not args or len(args) % 2:
        raise TypeError(f"{command}: give axis, position pairs, e.g. {command}(m0, 1.5, m1, 2)")
    pairs = []
    for i in range(0, len(args), 2):
        axis, value = args[i], args[i + 1]
        if not isinstance(axis, Axis):
            raise TypeError(f"{command}: argument {i + 1} must be an axis, got {axis!r}")
        if not is_finite_number(value):
            raise ValueError(f"{command}: position for {axis.name} must be a finite number, got {value!r}")
        pairs.append((axis, float(value)))
    return pairs


def _move(command, args, relative, display):
    pairs = _pairs(command, args)
    group = Group(*(axis for axis, _ in pairs))
    targets = {axis: (axis.position + value if relative else value) for axis, value in pairs}
    task = group.move(targets, wait=False)  # limits of every axis checked before any motion
    axes = list(targets)
    try:
        if display:
            with MotionDisplay(axes):
                task.wait()
        else:
            task.wait()
    except KeyboardInterrupt:
        stopped = ", ".join(f"{a.name} at {a.position:.5f}" for a in axes)
        print(f"\n{command} interrupted: stopped {stopped}", file=sys.stderr, flush=True)
        raise
    return None


def mv(*args):
    """mv(axis, pos, ...): move to absolute user positions and wait.

    axis, pos: pairs of an axis and its target, in the axis's user unit (mm, deg: wa() shows
    it). Every axis starts together; all limits are checked before anything moves. Ctrl-C
    stops every axis and says where each one stopped.
    Example: mv(sby, 0.35, sbz, 1.2)"""
    _move("mv", args, relative=False, display=False)


def mvr(*args):
    """mvr(axis, delta, ...): move by relative distances and wait.

    axis, delta: pairs of an axis and a distance from its current position, in the axis's
    user unit. Otherwise as mv.
    Example: mvr(sby, -0.1)"""
    _move("mvr", args, relative=True, display=False)


def umv(*args):
    """umv(axis, pos, ...): like mv, showing user/dial positions while moving.

    axis, pos: pairs of an axis and its absolute target, in the axis's user unit.
    Example: umv(srot, 90)"""
    _move("umv", args, relative=False, display=True)


def umvr(*args):
    """umvr(axis, delta, ...): like mvr, showing user/dial positions while moving.

    axis, delta: pairs of an axis and a distance from where it is, in the axis's user unit.
    Example: umvr(sby, 0.05, sbz, -0.05)"""
    _move("umvr", args, relative=True, display=True)


def _session_axes():
    session = current_session()
    return session.axes if session is not None else []


def wa(*, out=None):
    """Where all: user and dial positions of every axis of the session.

    Each column is headed name[unit]. out: a file to print to (default the screen).
    Example: wa()"""
    axes = _session_axes()
    out = out or sys.stdout
    if not axes:
        print("No axis in this session.", file=out)
        return
    print("Current Positions: user\n                   dial\n", file=out)
    print(columns_table([axis_header(a) for a in axes], position_rows(axes)), file=out)


def wm(*axes, out=None):
    """Where motor: user high/current/low, offset, dial high/current/low of the given axes.

    axes: one or more axes; values in each axis's unit (the column header says it).
    Example: wm(sby, srot)"""
    if not axes:
        raise TypeError("wm: give one or more axes, e.g. wm(m0, m1)")
    for axis in axes:
        if not isinstance(axis, Axis):
            raise TypeError(f"wm: {axis!r} is not an axis")
    labels = ["User", " High", " Current", " Low", "Offset", "", "Dial", " High", " Current", " Low"]
    rows = []
    for axis in axes:
        low, high = axis.limits
        dial_low, dial_high = axis.dial_limits
        rows.append(["", fmt(high), fmt(axis.position), fmt(low), fmt(axis.offset), "", "",
                     fmt(dial_high), fmt(axis.dial), fmt(dial_low)])
    columns = list(zip(*rows))
    print(columns_table([axis_header(a) for a in axes], [list(c) for c in columns], labels), file=out or sys.stdout)


def sta(*, out=None):
    """Status of every axis of the session (READY, MOVING, LIMPOS, FAULT... with their meaning).

    Example: sta()"""
    axes = _session_axes()
    print(columns_table(["Axis", "Status"], [[a.name, a.state.describe()] for a in axes]),
          file=out or sys.stdout)


def sync(*axes):
    """Re-read positions and states from the controllers (all axes when none given).

    axes: axes to re-read; none: every axis of the session. Use it after a controller was
    moved or reset outside the session.
    Example: sync(srot)  or  sync()"""
    for axis in axes or _session_axes():
        axis.sync_hard()


def lsmot(*, out=None):
    """Names of the session's axes, sorted.

    Example: lsmot()"""
    names = sorted(a.name for a in _session_axes())
    print("Motors configured in this session:\n" + "  ".join(names), file=out or sys.stdout)


def lscnt(*, out=None):
    """The session's counters: full name, shape, controller, name, unit.

    Example: lscnt()"""
    session = current_session()
    counters = session.counters if session is not None else []
    rows = [[c.fullname, "0D" if not c.shape else f"{len(c.shape)}D", c.controller_name, c.name, c.unit]
            for c in counters]
    print(columns_table(["Fullname", "Shape", "Controller", "Name", "Unit"], rows), file=out or sys.stdout)


def lsmg(*, out=None):
    """The session's measurement groups and their counters; the active one is marked with '*'.

    Example: lsmg()"""
    session = current_session()
    groups = session.measurement_groups if session is not None else []
    active = active_mg()
    for group in groups:
        mark = "*" if group is active else " "
        print(f"{mark} {group.name}: {', '.join(c.name for c in group.counters)}", file=out or sys.stdout)
