"""A simulated motor controller: exact trapezoid/triangle profiles, read analytically.

The position read during a move is the profile's position at that instant; `stop` brakes with
the configured acceleration; the resting position (in steps) is persisted so it survives a
restart. Tests can set hardware limit switches and inject a fault.
"""
from __future__ import annotations

import time

import gevent
import gevent.event

from bliss_lite.config.fields import Field
from bliss_lite.controllers.axis_state import AxisState
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motor_controller import MotorController
from bliss_lite.controllers.trajectory import Trajectory

now = time.monotonic
TIMER_SLACK = 0.002  # seconds; gevent's timers wake up to ~1.5 ms after their deadline


class MockupController(MotorController):
    AXIS_EXTRA_FIELDS = (Field("position", "number", 0.0),)  # dial position at first start

    def __init__(self, name, node, config):
        self._trajectories, self._changed, self._switches, self._lost_steps = {}, {}, {}, {}
        self._faults = set()
        super().__init__(name, node, config)  # builds the axes, calling initialize_axis

    def initialize_axis(self, axis, extras):
        saved = self.settings.get("mockup", axis.name).get("steps")
        steps = saved if isinstance(saved, (int, float)) else round(extras["position"] * axis.steps_per_unit)
        self._trajectories[axis] = Trajectory.at_rest(float(steps))
        self._changed[axis] = gevent.event.Event()

    def _set(self, axis, trajectory):
        self._trajectories[axis] = trajectory
        self._changed[axis].set()

    def _velocity_acceleration(self, axis):
        spu = abs(axis.steps_per_unit)
        return axis.velocity * spu, axis.acceleration * spu

    # -- hardware API ------------------------------------------------------------------------
    def read_position(self, axis):
        return self._trajectories[axis].position(now())

    def read_position_at(self, axis, t):
        return self._trajectories[axis].position(t)

    def crossing_time(self, axis, steps):
        return self._trajectories[axis].first_crossing(steps)

    def set_position(self, axis, steps):
        self._set(axis, Trajectory.at_rest(float(steps)))
        self.motion_done(axis)

    def state(self, axis):
        if axis in self._faults:
            return AxisState("FAULT")
        trajectory = self._trajectories[axis]
        if not trajectory.done(now()):
            return AxisState("MOVING")
        low, high = self._switches.get(axis, (None, None))
        position = trajectory.end_position
        if high is not None and position >= high:
            return AxisState("READY", "LIMPOS")
        if low is not None and position <= low:
            return AxisState("READY", "LIMNEG")
        return AxisState("READY")

    def start_all(self, *moves):
        t = now()
        for axis, _ in moves:
            if axis in self._faults:
                raise AxisFault(f"{axis.name}: controller reports FAULT; move refused")
        for axis, target in moves:
            target = float(target) - self._lost_steps.pop(axis, 0)
            start = self._trajectories[axis].position(t)
            velocity, acceleration = self._velocity_acceleration(axis)
            trajectory = Trajectory.point_to_point(t, start, float(target), velocity, acceleration)
            self._set(axis, self._stopped_by_switch(axis, trajectory))

    def _stopped_by_switch(self, axis, trajectory):
        """Cut the motion where it reaches a switch in its direction of travel."""
        low, high = self._switches.get(axis, (None, None))
        x0, x1 = trajectory.position(trajectory.start), trajectory.end_position
        switch = high if (high is not None and x1 > max(x0, high)) else None
        if low is not None and x1 < min(x0, low):
            switch = low
        if switch is None:
            return trajectory
        hit = trajectory.start if (x0 - switch) * (x1 - switch) >= 0 else trajectory.first_crossing(switch)
        cut = trajectory.truncated(hit)
        return Trajectory(cut.start, cut.segments, switch)  # exactly on the switch

    def stop_all(self, *axes):
        t = now()
        for axis in axes:
            trajectory = self._trajectories[axis]
            if not trajectory.done(t):
                _, acceleration = self._velocity_acceleration(axis)
                braking = Trajectory.deceleration(t, trajectory.position(t), trajectory.velocity(t), acceleration)
                # a stepper comes to rest on a whole step
                self._set(axis, Trajectory(braking.start, braking.segments, float(round(braking.end_position))))

    def wait_move(self, axis):
        """Wake at the end of the trajectory, or when it changes (a stop, a fault)."""
        changed = self._changed[axis]
        while True:
            changed.clear()
            if axis in self._faults:
                return  # report the fault now: the other axes of the move must brake at once
            remaining = self._trajectories[axis].end - now()
            if remaining <= 0:
                return
            if remaining > TIMER_SLACK:
                changed.wait(remaining - TIMER_SLACK)
            else:
                gevent.sleep(0)  # the loop's timers fire ~1.5 ms late: finish cooperatively

    def motion_done(self, axis):
        self.settings.update_later("mockup", axis.name, steps=self._trajectories[axis].end_position)

    def sync(self, axis):
        """Record the hardware position as it is now (e.g. after it changed behind our back)."""
        self.settings.update("mockup", axis.name, steps=self._trajectories[axis].end_position)

    # -- simulation controls for tests -------------------------------------------------------
    def set_hw_limits(self, axis, low=None, high=None):
        """Limit switches at these dial positions (None: no switch)."""
        spu = axis.steps_per_unit
        steps = sorted(float(round(x * spu)) for x in (low, high) if x is not None)
        if low is not None and high is not None:
            self._switches[axis] = (steps[0], steps[1])
        elif low is not None or high is not None:
            value = steps[0]
            is_low = (low is not None) == (spu > 0)
            self._switches[axis] = (value, None) if is_low else (None, value)
        else:
            self._switches.pop(axis, None)

    def lose_steps(self, axis, steps):
        """The next move of the axis ends `steps` short, as a stalled stepper would."""
        self._lost_steps[axis] = steps

    def set_fault(self, axis, fault=True):
        """Inject (or clear) a controller fault; a moving axis brakes to rest."""
        if fault:
            self.stop_all(axis)
            self._faults.add(axis)
            self._changed[axis].set()
        else:
            self._faults.discard(axis)

    def axis_info(self, axis):
        return f"MOCKUP AXIS:\n    {axis.name} is a simulated axis of controller '{self.name}'"


def create_controller(name, node, config):
    return MockupController(name, node, config)
