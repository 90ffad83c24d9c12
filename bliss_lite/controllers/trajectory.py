"""Motion profiles as piecewise constant-acceleration segments: exact positions at any time.

A point-to-point move is a trapezoid (accelerate, cruise, decelerate) or, when the distance is
too short to reach the velocity, a triangle. A stop decelerates from the current velocity with
the configured acceleration. Units are whatever the caller uses (the mockup uses steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Segment:
    """Constant acceleration `a` for `duration` s, from position `x0` at speed `v0`."""

    t0: float  # seconds after the trajectory's start
    x0: float
    v0: float
    a: float
    duration: float

    def position(self, dt):
        return self.x0 + self.v0 * dt + 0.5 * self.a * dt * dt

    def velocity(self, dt):
        return self.v0 + self.a * dt

    def crossing(self, x):
        """Earliest dt in [0, duration] where the segment passes position x, or None."""
        c = self.x0 - x
        if self.a == 0:
            roots = [] if self.v0 == 0 else [-c / self.v0]
        else:
            disc = self.v0 * self.v0 - 2 * self.a * c
            if disc < 0:
                return None
            sq = math.sqrt(disc)
            roots = [(-self.v0 - sq) / self.a, (-self.v0 + sq) / self.a]
        valid = [r for r in roots if -1e-12 <= r <= self.duration + 1e-12]
        return max(0.0, min(valid)) if valid else None


class Trajectory:
    """A motion starting at absolute time `start` (seconds, monotonic clock)."""

    def __init__(self, start, segments, end_position):
        self.start = start
        self.segments = tuple(segments)
        self.end_position = end_position
        self.duration = sum(s.duration for s in self.segments)
        self.end = start + self.duration

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def at_rest(cls, position, start=0.0):
        return cls(start, (), position)

    @classmethod
    def point_to_point(cls, start, x0, x1, velocity, acceleration):
        """Trapezoid (or triangle) from rest at x0 to rest at x1."""
        if velocity <= 0 or acceleration <= 0:
            raise ValueError("velocity and acceleration must be > 0")
        distance = abs(x1 - x0)
        if distance == 0:
            return cls.at_rest(x1, start)
        direction = 1.0 if x1 > x0 else -1.0
        t_acc = velocity / acceleration
        d_acc = 0.5 * velocity * t_acc
        if distance >= 2 * d_acc:
            peak, t_cruise = velocity, (distance - 2 * d_acc) / velocity
        else:
            peak = math.sqrt(distance * acceleration)
            t_acc, d_acc, t_cruise = peak / acceleration, distance / 2, 0.0
        v, a = direction * peak, direction * acceleration
        segments = [Segment(0.0, x0, 0.0, a, t_acc)]
        x_cruise = x0 + direction * d_acc
        if t_cruise > 0:
            segments.append(Segment(t_acc, x_cruise, v, 0.0, t_cruise))
        segments.append(Segment(t_acc + t_cruise, x1 - direction * d_acc, v, -a, t_acc))
        return cls(start, segments, x1)

    @classmethod
    def deceleration(cls, start, x0, v0, acceleration):
        """From speed v0 at x0, brake with `acceleration` to rest."""
        if v0 == 0:
            return cls.at_rest(x0, start)
        t_stop = abs(v0) / acceleration
        a = -math.copysign(acceleration, v0)
        segment = Segment(0.0, x0, v0, a, t_stop)
        return cls(start, [segment], segment.position(t_stop))

    # -- evaluation --------------------------------------------------------------------------
    def _segment_at(self, t):
        dt = t - self.start
        for segment in self.segments:
            if dt < segment.t0 + segment.duration:
                return segment, max(0.0, dt - segment.t0)
        return None, None

    def position(self, t):
        segment, dt = self._segment_at(t)
        return self.end_position if segment is None else segment.position(dt)

    def velocity(self, t):
        segment, dt = self._segment_at(t)
        return 0.0 if segment is None else segment.velocity(dt)

    def done(self, t):
        return t >= self.end

    def truncated(self, t):
        """The same motion cut at absolute time t (a hard stop, as at a limit switch)."""
        dt = t - self.start
        kept = [replace(s, duration=min(s.duration, dt - s.t0)) for s in self.segments if s.t0 < dt]
        return Trajectory(self.start, kept, self.position(t))

    def first_crossing(self, x):
        """Absolute time at which the motion first reaches position x, or None."""
        for segment in self.segments:
            dt = segment.crossing(x)
            if dt is not None:
                return self.start + segment.t0 + dt
        return None


def ideal_move_time(distance, velocity, acceleration):
    """Duration of a point-to-point move: the figure `umv` overhead is measured against."""
    return Trajectory.point_to_point(0.0, 0.0, abs(distance), velocity, acceleration).duration
