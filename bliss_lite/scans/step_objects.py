"""The acquisition objects of step scans: a motor master, a timer master, a counter slave.

A step scan is the chain  MotorMaster -> TimerMaster -> CounterSlave: the motor master moves
to a point and records where the axes arrived, the timer counts for the count time, the
counter slave reads every counter integrated over it. A time scan drops the motor master.
"""
from __future__ import annotations

import itertools
import time

import gevent
import numpy as np

from bliss_lite.controllers.counters.kinds import counter_channels, read_counter
from bliss_lite.controllers.group import Group
from bliss_lite.data.model import ChannelSpec
from bliss_lite.scans.chain import AcquisitionMaster, AcquisitionObject

now = time.monotonic
TIMER_SLACK = 0.002  # gevent's timers fire up to ~1.5 ms late: the last bit is waited cooperatively


def sleep_until(deadline):
    """Return at `deadline` (monotonic) within ~0.1 ms, letting other greenlets run meanwhile."""
    while True:
        remaining = deadline - now()
        if remaining <= 0:
            return
        gevent.sleep(remaining - TIMER_SLACK if remaining > TIMER_SLACK else 0)


class MotorMaster(AcquisitionMaster):
    """Moves axes through a list of points together; records the read-back position of each.

    With a guard (scans/suspension.py), it waits before each point while the scan is
    suspended or paused, and takes a point again when a suspender tripped during it."""

    redo = "point"

    def __init__(self, axes, points, children=()):
        super().__init__("axes", children)
        self.axes = list(axes)
        self.points = points  # sequence of rows, one target per axis
        self._group = Group(*self.axes)
        self.guard = None

    def channels(self):
        return [ChannelSpec(a.name, "float64", (), a.unit) for a in self.axes]

    def iterate(self):
        axes, group, guard = self.axes, self._group, self.guard
        if guard is None:
            for row in self.points:
                group.move(dict(zip(axes, row)))
                self.emit({a.name: a.position for a in axes})
                yield
            return
        i = 0
        while i < len(self.points):
            guard.before_point()
            group.move(dict(zip(axes, self.points[i])))
            self.emit({a.name: a.position for a in axes})
            yield
            if guard.after_point():
                i += 1

    def stop(self):
        self._group.stop()


class TimerMaster(AcquisitionMaster):
    """Counts `count_time` per trigger, `npoints` times (None: until stopped), `sleep_time` apart.

    Emits `elapsed_time` (from the scan's first count) and `epoch` (start of each count).
    """

    redo = "point"

    def __init__(self, count_time, npoints=1, sleep_time=0.0, children=()):
        super().__init__("timer", children)
        self.count_time = float(count_time)
        self.npoints = npoints
        self.sleep_time = float(sleep_time)
        self._t0 = None
        self.guard = None  # set when it paces the scan (a time scan): as MotorMaster's

    def channels(self):
        return [ChannelSpec("elapsed_time", "float64", (), "s"), ChannelSpec("epoch", "float64", (), "s")]

    def iterate(self):
        counts = range(self.npoints) if self.npoints is not None else itertools.count()
        guard = self.guard
        for i in counts:
            if i and self.sleep_time:
                sleep_until(now() + self.sleep_time)
            while True:
                if guard is not None:
                    guard.before_point()
                self._count()
                yield
                if guard is None or guard.after_point():
                    break

    def _count(self):
        start, epoch = now(), time.time()
        if self._t0 is None:
            self._t0 = start
        for child in self.children:
            child.count_starts()
        if self.count_time > 0:
            sleep_until(start + self.count_time)
        else:
            gevent.sleep(0)  # a zero-time loop still lets the I/O greenlet run
        self.emit({"elapsed_time": start - self._t0, "epoch": epoch})


class CounterSlave(AcquisitionObject):
    """Reads counters at each trigger, over the timer's count time: integrating counters count
    over it, sampling counters reduce their samples by their mode (controllers/counters/kinds.py).
    Counters that read a device during the count (`start_sampling`) start when the count does."""

    def __init__(self, counters, count_time):
        super().__init__("counters")
        self.counters = list(counters)
        self.count_time = float(count_time)
        self._sampled = [c for c in self.counters if callable(getattr(c, "start_sampling", None))]

    def count_starts(self):
        for counter in self._sampled:
            counter.start_sampling()

    def stop(self):
        for counter in self._sampled:
            counter.cancel_sampling()

    def channels(self):
        return [spec for c in self.counters for spec in counter_channels(c)]

    def trigger(self):
        t = self.count_time
        values = {}
        for counter in self.counters:
            for name, value in read_counter(counter, t).items():
                if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
                    raise TypeError(f"counter {counter.name} returned {value!r}, not a number")
                values[name] = value
        self.emit(values)
