#!/usr/bin/env python3
"""A motor controller simulator as its own process, behind a line-based TCP protocol, with
faults to inject (protocol: bliss_lite/controllers/motors/socket_protocol.py).

Axes move with the same exact trapezoid profiles as the in-process mockup (controllers/
trajectory.py), in steps, with the velocity and acceleration the driver sets. One thread per
connection; every command is answered by one line.

    python simulators/motor_server.py [--port 0]

prints `LISTENING <port>` once it accepts connections.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bliss_lite.controllers.trajectory import Trajectory  # noqa: E402

now = time.monotonic


class SimAxis:
    def __init__(self, steps, velocity, acceleration):
        self.trajectory = Trajectory.at_rest(float(steps), now())
        self.velocity, self.acceleration = velocity, acceleration
        self.low = self.high = None  # limit switches (steps)
        self.fault = False
        self.stalled = None  # time the axis froze mid-move (INJECT stall)

    def position(self):
        return self.trajectory.position(self.stalled if self.stalled is not None else now())

    def state(self):
        if self.fault:
            return "FAULT"
        if self.stalled is not None or not self.trajectory.done(now()):
            return "MOVING"
        position = self.trajectory.end_position
        if self.high is not None and position >= self.high:
            return "LIMPOS"
        if self.low is not None and position <= self.low:
            return "LIMNEG"
        return "READY"

    def move(self, target, t):
        start = self.position()
        trajectory = Trajectory.point_to_point(t, start, float(target), self.velocity, self.acceleration)
        x1 = trajectory.end_position
        switch = self.high if (self.high is not None and x1 > max(start, self.high)) else None
        if self.low is not None and x1 < min(start, self.low):
            switch = self.low
        if switch is not None:  # cut where the switch is hit
            hit = t if (start - switch) * (x1 - switch) >= 0 else trajectory.first_crossing(switch)
            cut = trajectory.truncated(hit)
            trajectory = Trajectory(cut.start, cut.segments, switch)
        self.trajectory = trajectory

    def stop(self):
        t = now()
        if self.stalled is not None:  # frozen: it stays where it froze
            self.trajectory = Trajectory.at_rest(float(round(self.position())), t)
            self.stalled = None
            return
        if not self.trajectory.done(t):
            braking = Trajectory.deceleration(t, self.trajectory.position(t), self.trajectory.velocity(t),
                                              self.acceleration)
            self.trajectory = Trajectory(braking.start, braking.segments, float(round(braking.end_position)))


class Controller:
    """The axes and the faults, shared by every connection."""

    def __init__(self):
        self.axes = {}
        self.lock = threading.Lock()
        self.delay = 0.0  # seconds before each reply
        self.garble = 0  # replies to garble
        self.drop = False  # close the connection instead of the next reply
        self.silent = False  # read commands, answer nothing

    def axis(self, name):
        if name not in self.axes:
            raise KeyError(f"no axis {name}")
        return self.axes[name]

    def handle(self, words):
        command, args = words[0].upper(), words[1:]
        if command == "PING":
            return "OK pong"
        if command == "AXES":
            return "OK " + " ".join(self.axes)
        if command == "INIT":  # INIT name steps velocity acceleration: create, or keep its position
            name, steps, velocity, acceleration = args[0], float(args[1]), float(args[2]), float(args[3])
            if velocity <= 0 or acceleration <= 0:
                raise ValueError("velocity and acceleration must be > 0")
            if name in self.axes:
                self.axes[name].velocity, self.axes[name].acceleration = velocity, acceleration
            else:
                self.axes[name] = SimAxis(steps, velocity, acceleration)
            return f"OK {self.axes[name].position()!r}"
        if command == "POS":
            return f"OK {self.axis(args[0]).position()!r}"
        if command == "POSAT":  # POSAT name t: the encoder position latched at monotonic time t
            axis, t = self.axis(args[0]), float(args[1])
            return f"OK {axis.trajectory.position(min(t, axis.stalled) if axis.stalled is not None else t)!r}"
        if command == "CROSS":  # CROSS name steps: when the motion passes there (position compare)
            axis = self.axis(args[0])
            t = axis.trajectory.first_crossing(float(args[1]))
            if t is None or axis.fault or (axis.stalled is not None and t > axis.stalled):
                return "OK none"
            return f"OK {t!r}"
        if command == "STATE":
            return f"OK {self.axis(args[0]).state()}"
        if command == "MOVE":  # MOVE a1 t1 [a2 t2 ...]: all start together
            pairs = [(self.axis(args[i]), float(args[i + 1])) for i in range(0, len(args), 2)]
            for axis, _ in pairs:
                if axis.fault:
                    raise RuntimeError("axis in FAULT")
            t = now()
            for axis, target in pairs:
                axis.move(target, t)
            return "OK"
        if command == "STOP":
            for name in args:
                self.axis(name).stop()
            return "OK"
        if command == "SETPOS":
            axis = self.axis(args[0])
            axis.trajectory = Trajectory.at_rest(float(args[1]), now())
            return "OK"
        if command in ("VEL", "ACC"):
            axis = self.axis(args[0])
            attribute = "velocity" if command == "VEL" else "acceleration"
            if len(args) > 1:
                setattr(axis, attribute, float(args[1]))
            return f"OK {getattr(axis, attribute)!r}"
        if command == "INJECT":
            return self.inject(args)
        raise ValueError(f"unknown command {command}")

    def inject(self, args):
        """INJECT drop | delay S | garble N | silent | stall AXIS | limit AXIS LOW HIGH | fault AXIS | clear"""
        kind = args[0].lower()
        if kind == "drop":
            self.drop = True
        elif kind == "delay":
            self.delay = float(args[1])
        elif kind == "garble":
            self.garble = int(args[1])
        elif kind == "silent":
            self.silent = True
        elif kind == "stall":
            axis = self.axis(args[1])
            axis.stalled = now()
        elif kind == "limit":
            axis = self.axis(args[1])
            axis.low, axis.high = (None if v == "none" else float(v) for v in args[2:4])
        elif kind == "fault":
            axis = self.axis(args[1])
            axis.stop()
            axis.fault = True
        elif kind == "clear":
            self.delay, self.garble, self.drop, self.silent = 0.0, 0, False, False
            for axis in self.axes.values():
                axis.fault, axis.stalled, axis.low, axis.high = False, None, None, None
        else:
            raise ValueError(f"unknown fault {kind}")
        return "OK"


def serve_connection(connection, controller):
    try:
        _serve(connection, controller)
    except OSError:
        pass  # the client went away (reset, killed): its thread ends quietly


def _serve(connection, controller):
    stream = connection.makefile("rb")
    with connection:
        for raw in stream:
            words = raw.decode(errors="replace").split()
            if not words:
                continue
            with controller.lock:
                is_inject = words[0].upper() == "INJECT"
                try:
                    reply = controller.handle(words)
                except (KeyError, ValueError, IndexError, RuntimeError) as exc:
                    reply = f"ERR {exc}".replace("\n", " ")
                if is_inject:
                    connection.sendall((reply + "\n").encode())
                    continue
                if controller.silent:
                    continue
                if controller.drop:
                    controller.drop = False
                    connection.shutdown(socket.SHUT_RDWR)
                    return
                delay = controller.delay
                if controller.garble:
                    controller.garble -= 1
                    reply = "#?" + reply[::-1]
            if delay:
                time.sleep(delay)
            connection.sendall((reply + "\n").encode())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    controller = Controller()
    server = socket.create_server((args.host, args.port))
    print(f"LISTENING {server.getsockname()[1]}", flush=True)
    while True:
        connection, _ = server.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_connection, args=(connection, controller), daemon=True).start()


if __name__ == "__main__":
    main()
