"""Bounds that keep every computed motion finite: positions, times, speeds.

Why: finite but extreme numbers in an axis's configuration (a velocity of 1e300, an
acceleration of 1e-300, limits of 1e308 steps) overflow the trajectory: the time to reach the
velocity became infinite and a move ran far past its limit, or a move never ended. Controllers
count in steps, so the bounds are in steps, where any axis's motion is computed:

- positions (limits, backlash, tolerance, targets): |x| <= MAX_STEPS = 2**53, where a float
  still holds every whole step;
- velocity in [MIN_RATE, MAX_VELOCITY] steps/s, acceleration in [MIN_RATE, MAX_ACCELERATION]
  steps/s^2: then v/a, v^2/a and distance/v stay far inside a float.

Checked where the numbers enter (YAML: `axis_config`, run-time setters: `axis`) and, for the
computed move itself, before anything moves (`motion.plan_motion`): a move whose duration or
positions are not finite is refused, and so is one planned to last longer than
MAX_MOVE_S = one week. The rates above still allow the lowest speed over the largest
distance (2**54 steps at 1e-6 steps/s: ~2e22 s), a move that never ends for anyone waiting
on it; a week is far beyond any real move and still an answer.
"""
from __future__ import annotations

import math

MAX_STEPS = float(2**53)
MIN_RATE = 1e-6
MAX_VELOCITY = 1e15  # steps/s (the instant test axis m4: 1e12)
MAX_ACCELERATION = 1e18  # steps/s^2 (m4: 1e16)
RATES = {"velocity": MAX_VELOCITY, "acceleration": MAX_ACCELERATION}
MAX_MOVE_S = 7 * 24 * 3600.0  # the longest move planned: a week


def rate_problem(what, value, steps_per_unit):
    """Why `value` (unit/s or unit/s^2) is no usable velocity or acceleration, or None."""
    steps = abs(value * steps_per_unit)
    if not math.isfinite(steps) or not MIN_RATE <= steps <= RATES[what]:
        return (f"{what} {value:g} is {steps:g} steps/s{'^2' if what == 'acceleration' else ''}, outside "
                f"[{MIN_RATE:g}, {RATES[what]:g}]")
    return None


def position_problem(what, value, steps_per_unit):
    """Why `value` (a position or distance in units) is too large in steps, or None."""
    steps = abs(value * steps_per_unit)
    if not math.isfinite(steps) or steps > MAX_STEPS:
        return f"{what} {value:g} is {steps:g} steps, beyond {MAX_STEPS:g}"
    return None


def move_problem(x0, x1, velocity, acceleration):
    """Why a move from x0 to x1 (steps) at these rates cannot be computed finitely, or None."""
    from bliss_lite.controllers.trajectory import Trajectory

    for value in (x0, x1, velocity, acceleration):
        if not math.isfinite(value):
            return f"a non-finite number in the move ({value})"
    if max(abs(x0), abs(x1)) > 2 * MAX_STEPS:
        return f"a position beyond {MAX_STEPS:g} steps"
    trajectory = Trajectory.point_to_point(0.0, x0, x1, velocity, acceleration)
    numbers = [trajectory.duration] + [v for s in trajectory.segments for v in (s.x0, s.v0, s.duration)]
    if not all(math.isfinite(v) for v in numbers):
        return f"its computed time or path is not finite (duration {trajectory.duration})"
    if trajectory.duration > MAX_MOVE_S:
        return (f"it would take {trajectory.duration:.3g} s, over the {MAX_MOVE_S:g} s (a week) a move may last: "
                f"distance {abs(x1 - x0):g} steps at velocity {velocity:g} steps/s, acceleration "
                f"{acceleration:g} steps/s^2")
    return None
