"""Planning and running moves of one or several axes: limits, backlash, start/stop together.

`plan_motion` turns a user target into dial legs (steps) and refuses, before anything moves,
a target or backlash approach beyond a limit. `MotionTask` runs the legs of several axes in one
greenlet: all axes of a leg start together; an error, a fault, a kill or Ctrl-C on the waiter
stops every axis of the task with its deceleration, and the `finally` always records the end.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import gevent

from bliss_lite.config.fields import is_finite_number
from bliss_lite.controllers import axis_lease
from bliss_lite.controllers.errors import AxisError, AxisFault, LimitError
from bliss_lite.controllers.motion_bounds import MAX_STEPS, move_problem


@dataclass(frozen=True)
class MotionPlan:
    axis: object
    user_target: float
    legs: tuple  # dial targets in steps, in order; two legs when backlash applies


def _check_target(axis, target):
    if not is_finite_number(target):
        raise ValueError(f"{axis.name}: target must be a finite number, got {target!r}")
    steps = axis.user2dial(float(target)) * axis.steps_per_unit
    if not math.isfinite(steps) or abs(steps) > MAX_STEPS:  # else OverflowError in round(), or float steps
        raise LimitError(f"{axis.name}: target {float(target):g} is too large to count in steps")


def plan_motion(axis, user_target) -> MotionPlan:
    """Legs for moving `axis` to `user_target`; raises before any motion if it can't be done."""
    _check_target(axis, user_target)
    user_target = float(user_target)
    if axis.disabled:
        raise AxisError(f"{axis.name}: axis is disabled")
    spu = axis.steps_per_unit
    final_steps = round(axis.user2dial(user_target) * spu)
    current_steps = axis.controller.read_position(axis)
    delta = final_steps - current_steps
    backlash_steps = round(axis.backlash * spu)
    if backlash_steps and delta and (delta > 0) != (backlash_steps > 0):
        legs = (final_steps - backlash_steps, final_steps)
    elif abs(delta) >= 0.5:
        legs = (final_steps,)
    else:
        legs = ()
    for i, steps in enumerate(legs):
        _check_limits(axis, user_target, steps / spu, is_backlash=(i == 0 and len(legs) == 2))
    _check_finite_motion(axis, user_target, current_steps, legs)
    return MotionPlan(axis, float(user_target), legs)


def _check_finite_motion(axis, user_target, current_steps, legs):
    """Refuse, before anything moves, legs whose computed time or path is not finite."""
    velocity, acceleration = abs(axis.velocity * axis.steps_per_unit), abs(axis.acceleration * axis.steps_per_unit)
    start = float(current_steps)
    for steps in legs:
        problem = move_problem(start, float(steps), velocity, acceleration)
        if problem:
            raise AxisError(f"{axis.name}: move to {user_target:g} refused: {problem}")
        start = float(steps)


def check_reachable(axis, user_target):
    """Refuse a target that a move from anywhere could not reach: the target itself and, with
    backlash, its approach point (scans check every target this way before the first move)."""
    _check_target(axis, user_target)
    if axis.disabled:
        raise AxisError(f"{axis.name}: axis is disabled")
    spu = axis.steps_per_unit
    final_steps = round(axis.user2dial(float(user_target)) * spu)
    _check_limits(axis, float(user_target), final_steps / spu, is_backlash=False)
    backlash_steps = round(axis.backlash * spu)
    if backlash_steps:
        _check_limits(axis, float(user_target), (final_steps - backlash_steps) / spu, is_backlash=True)


def _check_limits(axis, user_target, dial, is_backlash):
    low, high = axis.dial_limits
    if low - 1e-9 <= dial <= high + 1e-9:
        return
    user = axis.dial2user(dial)
    user_low, user_high = axis.limits
    side, limit = ("high", user_high) if user > user_high else ("low", user_low)
    if is_backlash:
        raise LimitError(
            f"{axis.name}: move to {user_target:g} needs a backlash approach from {user:g}, "
            f"beyond {side} limit {limit:g}"
        )
    raise LimitError(f"{axis.name}: target {user_target:g} beyond {side} limit {limit:g}")


def _by_controller(items, key):
    groups = {}
    for item in items:
        groups.setdefault(id(key(item).controller), []).append(item)
    return [(key(group[0]).controller, group) for group in groups.values()]


def _check_arrival(axis):
    state = axis.controller.state(axis)
    for flag in ("FAULT", "LIMPOS", "LIMNEG"):
        if flag in state:
            raise AxisFault(f"{axis.name}: {state.describe()} at {axis.position:g}")


def _check_reached(plan):
    axis = plan.axis
    dial = axis.controller.read_position(axis) / axis.steps_per_unit
    expected = plan.legs[-1] / axis.steps_per_unit
    if abs(dial - expected) > axis.tolerance:
        raise AxisFault(
            f"{axis.name}: did not reach its target: dial {dial:g} instead of {expected:g} "
            f"(tolerance {axis.tolerance:g})"
        )


def _quietly(call, *args):
    """call(*args), or None with a warning when the controller fails (stopping goes on)."""
    try:
        return call(*args)
    except AxisError as exc:
        logging.getLogger(__name__).warning(f"WARNING: while stopping: {exc}")
        return None


def _settle(axis, timeout=2.0):
    """Wait until a faulted axis holds its position: FAULT hides MOVING, and a controller
    brakes a faulted axis to rest (the move is not over while it still runs)."""
    deadline = gevent.get_hub().loop.now() + timeout
    last = axis.controller.read_position(axis)
    while gevent.get_hub().loop.now() < deadline:
        gevent.sleep(0.01)
        position = axis.controller.read_position(axis)
        if position == last:
            return
        last = position
    raise AxisFault(f"{axis.name}: still moving {timeout:g} s after its fault")


def _outcome(call, *args):
    """call(*args)'s exception, or None: a waiter greenlet hands its error over instead of
    dying with it (gevent's hub would print a traceback for every one)."""
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - raised by the task that waits
        return exc
    return None


class MotionTask:
    """The legs of one or several axes, run together in one greenlet."""

    def __init__(self, plans):
        self.plans = [p for p in plans if p.legs]
        self.axes = [p.axis for p in self.plans]
        self._greenlet = None
        self._lease = None  # this process's leases on the axes (controllers/axis_lease.py)
        self._stopping = False  # in _stop_hardware: a stop() waits instead of killing
        self.error = None  # what ended the motion, re-raised by wait()

    def start(self):
        for axis in self.axes:
            if axis.is_moving:
                raise AxisError(f"{axis.name}: already moving")
        self._lease = axis_lease.hold([axis.name for axis in self.axes])  # AxisLocked: another process moves one
        for axis in self.axes:
            axis._motion = self
        self._greenlet = gevent.spawn(self._run)
        return self

    @property
    def done(self):
        return self._greenlet is None or self._greenlet.dead

    def _run(self):
        try:
            self._run_legs()
        except gevent.GreenletExit:
            pass  # stopped on purpose: the axes were braked to rest
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter by wait()
            self.error = exc

    def _run_legs(self):
        try:
            for leg in range(max((len(p.legs) for p in self.plans), default=0)):
                moves = [(p.axis, p.legs[leg]) for p in self.plans if leg < len(p.legs)]
                for controller, group in _by_controller(moves, key=lambda m: m[0]):
                    controller.start_all(*group)
                self._wait_all([axis for axis, _ in moves])
            for plan in self.plans:
                _check_reached(plan)
        except BaseException:
            self._stop_hardware()
            raise
        finally:
            self._free_lease()
            for axis in self.axes:
                axis.motion_ended(self)

    def _wait_all(self, axes):
        """Wait for every axis; the first one to end in FAULT or on a limit switch raises."""
        if len(axes) == 1:
            axes[0].controller.wait_move(axes[0])
            _check_arrival(axes[0])
            return
        waiters = {gevent.spawn(_outcome, axis.controller.wait_move, axis): axis for axis in axes}
        try:
            for waiter in gevent.iwait(list(waiters)):
                if waiter.value is not None:
                    raise waiter.value
                _check_arrival(waiters[waiter])
        finally:
            gevent.killall(list(waiters))

    def _stop_hardware(self):
        """Brake every axis still moving. Runs while another error is on its way up: a
        controller that fails here (dead, silent) must not hide that error, so its failure is
        only printed, and the other controllers' axes are still stopped."""
        self._stopping = True
        states = {axis: _quietly(axis.controller.state, axis) for axis in self.axes}
        # an unreadable state is no proof of rest; stopping an axis at rest is harmless
        moving = [axis for axis, state in states.items() if state is None or "MOVING" in state]
        for controller, group in _by_controller(moving, key=lambda a: a):
            _quietly(controller.stop_all, *group)
        for axis in moving:
            _quietly(axis.controller.wait_move, axis)
        for axis, state in states.items():
            if state is not None and "FAULT" in state:
                _quietly(_settle, axis)

    def _free_lease(self):
        lease, self._lease = self._lease, None
        axis_lease.free(lease)

    def wait(self):
        """Wait for the end; on Ctrl-C (or any interruption) stop all axes first, then re-raise."""
        if self._greenlet is None:
            return
        try:
            self._greenlet.join()
        except BaseException:
            if not self._greenlet.dead:
                self._greenlet.kill()
            if self._greenlet.dead:  # killed before it ran: its finally never freed the lease
                self._free_lease()
            raise
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def stop(self, wait=True):
        if self._greenlet is None or self._greenlet.dead:
            return
        if self._stopping:  # already braking the axes (after an error): let it finish, a kill
            if wait:  # would leave them braking unwatched
                self._greenlet.join()
            return
        self._greenlet.kill(block=wait)
        if self._greenlet.dead:  # killed before it ran: its finally never freed the lease
            self._free_lease()
