"""A simulated motor and counter served as real Tango devices, without a Tango database.

    python simulators/tango_server.py --port 0 [--motors sim/motor/1,...] [--counters sim/counter/1]
                                      [--renamed-motors sim/rmotor/1]

prints `LISTENING port` once the devices answer; a client reaches them as
`tango://127.0.0.1:PORT/sim/motor/1#dbase=no`. The motor has the attributes of a typical Tango
motor device (Position, Velocity, Acceleration, State) and a Stop command; StopCount says how
many stops it received (tests check that Ctrl-C reached the device). Writing SimFault True puts
a motor in FAULT, SimRefuseWrites True makes it refuse writes of Position, Velocity and
Acceleration (a test stops the whole server with SIGSTOP for a device that does not answer).
`--renamed-motors sim/rmotor/1` also serves motors whose attributes and command have other names
(DialPosition, Speed, Accel, MotorState, Abort; their own State stays ON). The counter's Value is a
noisy flat signal; its Ramp grows by 1000 a second from the server's start (a counter sampled
during a count reads a mean over the count, not one value).
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command
from tango.test_context import MultiDeviceTestContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulators.trapezoid import Trapezoid  # noqa: E402


class SimMotorBase(Device):
    """The motion and the test hooks every simulated motor shares: SimFault (the device in FAULT,
    as a drive that tripped), SimRefuseWrites (writes of its position, velocity and acceleration
    raise, as a device that refuses them) and StopCount (stops received)."""

    def init_device(self):
        super().init_device()
        self.set_state(DevState.ON)
        self.motion = Trapezoid(0.0, 5.0, 50.0)
        self.stops, self.fault, self.refuse = 0, False, False

    def motor_state(self):
        if self.fault:
            return DevState.FAULT
        return DevState.MOVING if self.motion.moving() else DevState.ON

    def dev_status(self):
        return "simulated fault: drive tripped" if self.fault else f"the motor is {self.motor_state()}"

    def refused(self, what):
        if self.refuse:
            raise ValueError(f"simulated refusal: {what} not written")

    def write_position(self, target):
        self.refused("position")
        if self.motion.moving():
            raise ValueError("already moving")
        self.motion.move(float(target))

    def write_velocity(self, value):
        self.refused("velocity")
        self.motion.velocity = float(value)

    def write_acceleration(self, value):
        self.refused("acceleration")
        self.motion.acceleration = float(value)

    def stop(self):
        self.stops += 1
        self.motion.stop()

    @attribute(dtype=int)
    def StopCount(self):
        return self.stops

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE)
    def SimFault(self):
        return self.fault

    @SimFault.write
    def SimFault(self, value):
        self.fault = bool(value)
        if self.fault:
            self.motion.stop()  # a tripped drive brakes

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE)
    def SimRefuseWrites(self):
        return self.refuse

    @SimRefuseWrites.write
    def SimRefuseWrites(self, value):
        self.refuse = bool(value)


def motor_class(class_name, position, velocity, acceleration, stop, state=None):
    """A simulated motor device class whose attributes and stop command have these names. With
    `state`, the motor's state is that attribute and the device's own State stays ON (as some
    facilities' motor devices have it); without, the device's State is the motor's."""
    def rw(name, read, write, **kwargs):
        return attribute(fget=read, fset=write, name=name, dtype=float, access=AttrWriteType.READ_WRITE, **kwargs)

    def stop_command(self):
        self.stop()

    stop_command.__name__ = stop
    body = {position: rw(position, lambda self: self.motion.position(), SimMotorBase.write_position, unit="mm"),
            velocity: rw(velocity, lambda self: self.motion.velocity, SimMotorBase.write_velocity),
            acceleration: rw(acceleration, lambda self: self.motion.acceleration, SimMotorBase.write_acceleration),
            stop: command(f=stop_command)}
    if state:
        body[state] = attribute(fget=lambda self: self.motor_state(), name=state, dtype=DevState)
    else:
        body["dev_state"] = lambda self: self.motor_state()
    return type(class_name, (SimMotorBase,), body)


SimMotor = motor_class("SimMotor", "Position", "Velocity", "Acceleration", "Stop")
# the same motor under other names (a facility's own device class), for the configurable names
SimRenamedMotor = motor_class("SimRenamedMotor", "DialPosition", "Speed", "Accel", "Abort", state="MotorState")


class SimCounter(Device):
    def init_device(self):
        super().init_device()
        self.set_state(DevState.ON)
        self.rng = np.random.default_rng()
        self.started = time.monotonic()

    @attribute(dtype=float, unit="mA")
    def Value(self):
        return 100.0 + self.rng.normal(0.0, 0.5) + 0.001 * (time.monotonic() % 1)

    @attribute(dtype=float)
    def Ramp(self):
        return 1000.0 * (time.monotonic() - self.started)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--motors", default="sim/motor/1")
    parser.add_argument("--counters", default="sim/counter/1")
    parser.add_argument("--renamed-motors", default="", help="motors of SimRenamedMotor's names")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    info = [{"class": SimMotor, "devices": [{"name": n} for n in args.motors.split(",") if n]},
            {"class": SimCounter, "devices": [{"name": n} for n in args.counters.split(",") if n]}]
    if args.renamed_motors:
        info.append({"class": SimRenamedMotor, "devices": [{"name": n} for n in args.renamed_motors.split(",")]})
    with MultiDeviceTestContext(info, host="127.0.0.1", port=port, process=False, server_name="SimServer"):
        print(f"LISTENING {port}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
