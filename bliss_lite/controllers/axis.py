"""A motor axis as in BLISS/SPEC: user = sign * dial + offset, limits held in dial units.

Positions come from the controller in steps; dial = steps / steps_per_unit. Setting a user
position changes the offset (SPEC's `set`); offset, sign and limits are persisted settings.
"""
from __future__ import annotations

import math

from bliss_lite.config.fields import is_finite_number
from bliss_lite.controllers.errors import AxisError
from bliss_lite.controllers.motion import MotionTask, plan_motion
from bliss_lite.controllers.motion_bounds import position_problem, rate_problem


def _finite(name, what, value):
    if not is_finite_number(value):
        raise ValueError(f"{name}: {what} must be a finite number, got {value!r}")
    return float(value)


def _positive(name, what, value):
    if _finite(name, what, value) <= 0:
        raise ValueError(f"{name}: {what} must be > 0, got {value!r}")
    return float(value)


class Axis:
    """One motor axis of a controller. Built by the controller from an `AxisConfig`."""

    def __init__(self, config, controller, settings):
        self.config = config
        self.name = config.name
        self.controller = controller
        self._settings = settings
        saved = settings.get("axis", self.name)
        self._sign = int(saved.get("sign", config.sign))
        self._offset = float(saved.get("offset", 0.0))
        self._dial_limits = (
            float(saved.get("low_limit", config.low_limit)),
            float(saved.get("high_limit", config.high_limit)),
        )
        self._velocity = config.velocity
        self._acceleration = config.acceleration
        self._motion = None
        self.disabled = False

    # -- static properties -------------------------------------------------------------------
    unit = property(lambda self: self.config.unit)
    steps_per_unit = property(lambda self: self.config.steps_per_unit)
    backlash = property(lambda self: self.config.backlash)
    tolerance = property(lambda self: self.config.tolerance)

    # -- user / dial -------------------------------------------------------------------------
    def dial2user(self, dial):
        return self._sign * dial + self._offset

    def user2dial(self, user):
        return (user - self._offset) / self._sign

    @property
    def dial(self):
        return self.controller.read_position(self) / self.steps_per_unit + 0.0  # no -0.0

    @dial.setter
    def dial(self, value):
        """Redefine the dial (the controller's position) without moving; offset is kept."""
        value = _finite(self.name, "dial position", value)
        self._refuse_while_moving("set the dial position")
        self.controller.set_position(self, round(value * self.steps_per_unit))

    @property
    def position(self):
        return self.dial2user(self.dial)

    def position_at(self, t):
        """User position at monotonic time t, for controllers that know their motion profile
        (the encoder reading latched by a trigger at t); the current position otherwise."""
        at = getattr(self.controller, "read_position_at", None)
        steps = at(self, t) if at is not None else self.controller.read_position(self)
        return self.dial2user(steps / self.steps_per_unit + 0.0)

    def time_at(self, user_position):
        """Monotonic time at which the current motion reaches `user_position` (None if it
        does not, or the controller cannot tell): where position triggers fire."""
        at = getattr(self.controller, "crossing_time", None)
        return at(self, self.user2dial(user_position) * self.steps_per_unit) if at is not None else None

    @position.setter
    def position(self, value):
        """Redefine the user position without moving: the offset changes (SPEC's `set`)."""
        value = _finite(self.name, "position", value)
        self._refuse_while_moving("set the position")
        self.offset = value - self._sign * self.dial

    @property
    def offset(self):
        return self._offset

    @offset.setter
    def offset(self, value):
        self._offset = self._bounded_position("offset", _finite(self.name, "offset", value))
        self._settings.update("axis", self.name, offset=self._offset)

    @property
    def sign(self):
        return self._sign

    @sign.setter
    def sign(self, value):
        """Change the sign keeping the current user position (the offset follows)."""
        if value not in (1, -1):
            raise ValueError(f"{self.name}: sign must be 1 or -1, got {value!r}")
        user = self.position
        self._sign = value
        self._settings.update("axis", self.name, sign=value)
        self.offset = user - value * self.dial

    # -- limits ------------------------------------------------------------------------------
    @property
    def dial_limits(self):
        return self._dial_limits

    @property
    def limits(self):
        """(low, high) in user units."""
        a, b = (self.dial2user(x) for x in self._dial_limits)
        return (a, b) if a <= b else (b, a)

    @limits.setter
    def limits(self, value):
        low, high = value
        low, high = (-math.inf if low is None else low), (math.inf if high is None else high)
        for what, x in (("low limit", low), ("high limit", high)):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
                raise ValueError(f"{self.name}: {what} must be a number, got {x!r}")
        if low > high:
            raise ValueError(f"{self.name}: low limit {low} is above high limit {high}")
        dials = sorted(self.user2dial(x) for x in (low, high))
        for what, dial in zip(("low limit", "high limit"), dials):
            if math.isfinite(dial):
                self._bounded_position(what, dial)
        self._dial_limits = tuple(dials)
        self._settings.update("axis", self.name, low_limit=dials[0], high_limit=dials[1])

    low_limit = property(lambda self: self.limits[0], lambda self, v: setattr(self, "limits", (v, self.limits[1])))
    high_limit = property(lambda self: self.limits[1], lambda self, v: setattr(self, "limits", (self.limits[0], v)))

    # -- dynamics ----------------------------------------------------------------------------
    @property
    def velocity(self):
        return self._velocity

    @velocity.setter
    def velocity(self, value):
        self._velocity = self._bounded_rate("velocity", _positive(self.name, "velocity", value))

    @property
    def acceleration(self):
        return self._acceleration

    @acceleration.setter
    def acceleration(self, value):
        self._acceleration = self._bounded_rate("acceleration", _positive(self.name, "acceleration", value))

    def _bounded_rate(self, what, value):
        """`value` if every motion computed with it stays finite (motion_bounds)."""
        problem = rate_problem(what, value, self.steps_per_unit)
        if problem:
            raise ValueError(f"{self.name}: {problem} (steps_per_unit {self.steps_per_unit:g})")
        return value

    def _bounded_position(self, what, value):
        problem = position_problem(what, value, self.steps_per_unit)
        if problem:
            raise ValueError(f"{self.name}: {problem} (steps_per_unit {self.steps_per_unit:g})")
        return value

    @property
    def acctime(self):
        return self._velocity / self._acceleration

    @acctime.setter
    def acctime(self, value):
        self.acceleration = self._velocity / _positive(self.name, "acctime", value)

    # -- state and motion --------------------------------------------------------------------
    @property
    def state(self):
        state = self.controller.state(self)
        return state.with_("DISABLED") if self.disabled else state

    @property
    def is_moving(self):
        return self._motion is not None and not self._motion.done

    def _refuse_while_moving(self, what):
        if self.is_moving:
            raise AxisError(f"{self.name}: cannot {what} while moving")

    def move(self, target, wait=True, relative=False):
        """Move to a user position (or by a distance, `relative=True`)."""
        if relative:
            target = self.position + _finite(self.name, "distance", target)
        task = MotionTask([plan_motion(self, target)]).start()
        if wait:
            task.wait()
        return task

    def rmove(self, distance, wait=True):
        return self.move(distance, wait=wait, relative=True)

    def wait_move(self):
        if self._motion is not None:
            self._motion.wait()

    def stop(self, wait=True):
        """Decelerate to rest (all axes of the group move this axis belongs to)."""
        if self._motion is not None:
            self._motion.stop(wait=wait)

    def motion_ended(self, task):
        """Called by the motion task (controllers/motion.py) once it ended: normally, stopped or failed."""
        if self._motion is task:
            self._motion = None
        self.controller.motion_done(self)

    def sync_hard(self):
        """Forget cached state and re-read the hardware (SPEC's `sync`)."""
        self.controller.sync(self)

    def enable(self):
        self.disabled = False

    def disable(self):
        self._refuse_while_moving("disable")
        self.disabled = True

    # -- display -----------------------------------------------------------------------------
    def __info__(self):
        low, high = self.limits
        cfg = self.config
        lines = [
            f"AXIS {self.name}:",
            f"     unit (R): {self.unit}",
            f"     state (R): {self.state.describe()}",
            f"     position (RW): {self.position:.5f}",
            f"     dial (RW): {self.dial:.5f}",
            f"     offset (RW): {self.offset:.5f}",
            f"     sign (RW): {self.sign}",
            f"     limits (RW): Low: {low:.5f} High: {high:.5f}  (config, dial: Low: {cfg.low_limit:.5f} High: {cfg.high_limit:.5f})",
            f"     steps_per_unit (R): {self.steps_per_unit:g}",
            f"     backlash (R): {self.backlash:.5f}",
            f"     tolerance (R): {self.tolerance:g}",
            f"     velocity (RW): {self.velocity:10.5f}  (config: {cfg.velocity:10.5f})",
            f"     acceleration (RW): {self.acceleration:10.5f}  (config: {cfg.acceleration:10.5f})",
            f"     acctime (RW): {self.acctime:10.5f}  (config: {cfg.velocity / cfg.acceleration:10.5f})",
            "",
            self.controller.axis_info(self),
        ]
        return "\n".join(lines)

    def __repr__(self):
        try:  # a repr never fails, also for an axis whose controller is gone
            where = f"{self.position:g}"
        except Exception:  # noqa: BLE001
            where = "?"
        return f"<Axis {self.name} at {where} {self.unit}>".replace(" >", ">")
