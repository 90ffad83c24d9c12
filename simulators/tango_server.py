"""A simulated motor and counter served as real Tango devices, without a Tango database.

    python simulators/tango_server.py --port 0 [--motors sim/motor/1,...] [--counters sim/counter/1]

prints `LISTENING port` once the devices answer; a client reaches them as
`tango://127.0.0.1:PORT/sim/motor/1#dbase=no`. The motor has the attributes of a typical Tango
motor device (Position, Velocity, Acceleration, State) and a Stop command; StopCount says how
many stops it received (tests check that Ctrl-C reached the device). The counter's Value is a
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


class SimMotor(Device):
    def init_device(self):
        super().init_device()
        self.motion = Trapezoid(0.0, 5.0, 50.0)
        self.stops = 0

    def dev_state(self):
        return DevState.MOVING if self.motion.moving() else DevState.ON

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE, unit="mm")
    def Position(self):
        return self.motion.position()

    @Position.write
    def Position(self, target):
        if self.motion.moving():
            raise ValueError("already moving")
        self.motion.move(float(target))

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def Velocity(self):
        return self.motion.velocity

    @Velocity.write
    def Velocity(self, value):
        self.motion.velocity = float(value)

    @attribute(dtype=float, access=AttrWriteType.READ_WRITE)
    def Acceleration(self):
        return self.motion.acceleration

    @Acceleration.write
    def Acceleration(self, value):
        self.motion.acceleration = float(value)

    @attribute(dtype=int)
    def StopCount(self):
        return self.stops

    @command
    def Stop(self):
        self.stops += 1
        self.motion.stop()


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
    args = parser.parse_args(argv)
    port = args.port or free_port()
    info = [{"class": SimMotor, "devices": [{"name": n} for n in args.motors.split(",") if n]},
            {"class": SimCounter, "devices": [{"name": n} for n in args.counters.split(",") if n]}]
    with MultiDeviceTestContext(info, host="127.0.0.1", port=port, process=False, server_name="SimServer"):
        print(f"LISTENING {port}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
