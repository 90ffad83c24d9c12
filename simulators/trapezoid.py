"""A motor's trapezoidal motion in time, shared by the simulated Tango device and EPICS IOC.

Positions are in the device's units; `stop` brakes at the acceleration, as a drive does.
"""
from __future__ import annotations

import math
import time


class Trapezoid:
    def __init__(self, position=0.0, velocity=5.0, acceleration=50.0):
        self.velocity, self.acceleration = float(velocity), float(acceleration)
        self._start, self._target, self._t0, self._t_acc, self._t_end, self._v = position, position, 0.0, 0.0, 0.0, 0.0

    def move(self, target, now=None):
        now = time.monotonic() if now is None else now
        start = self.position(now)
        d = abs(target - start)
        v, a = self.velocity, self.acceleration
        if d >= v * v / a:
            t_acc, t_end = v / a, d / v + v / a
        else:
            t_acc = math.sqrt(d / a)
            t_end, v = 2 * t_acc, a * t_acc
        self._start, self._target, self._t0, self._t_acc, self._t_end, self._v = start, target, now, t_acc, t_end, v

    def position(self, now=None):
        t = (time.monotonic() if now is None else now) - self._t0
        if t >= self._t_end:
            return self._target
        a, v, ta, te = self.acceleration, self._v, self._t_acc, self._t_end
        if t < ta:
            s = 0.5 * a * t * t
        elif t < te - ta:
            s = 0.5 * a * ta * ta + v * (t - ta)
        else:
            s = abs(self._target - self._start) - 0.5 * a * (te - t) ** 2
        return self._start + math.copysign(s, self._target - self._start)

    def moving(self, now=None):
        return (time.monotonic() if now is None else now) - self._t0 < self._t_end

    def stop(self, now=None):
        """Brake to rest: the motion ends where the current speed, decelerated, comes to zero."""
        now = time.monotonic() if now is None else now
        if not self.moving(now):
            return
        t = now - self._t0
        a, ta, te = self.acceleration, self._t_acc, self._t_end
        speed = a * t if t < ta else (self._v if t < te - ta else a * (te - t))
        here = self.position(now)
        direction = math.copysign(1.0, self._target - self._start)
        braking = speed / a
        self._start, self._target = here - direction * 0.5 * speed * braking, here + direction * 0.5 * speed * braking
        # re-expressed as the last ramp of a symmetric move from _start through `here`
        self._t0, self._t_acc, self._t_end, self._v = now - braking, braking, 2 * braking, speed
