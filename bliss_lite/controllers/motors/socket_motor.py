"""A motor controller reached over TCP with a line-based text protocol (socket_protocol.py),
as real controllers are; the simulator is simulators/motor_server.py.

Every command waits for its reply at most `timeout` seconds, so a silent, dead or garbling
controller is an AxisFault that names the axis, the controller and the command, never a
hang. Queries are retried once on a fresh connection (a dropped link); motion commands are
not (the move may have started). While an axis moves, its position must change: an axis
that reads MOVING without moving for STALL_TIMEOUT is stopped and reported stalled.

    - class: socket_motor
      server: localhost:5000
      timeout: 1.0
      axes:
        - {name: sx, steps_per_unit: 1000, velocity: 5, acceleration: 50}
"""
from __future__ import annotations

import socket as stdlib_socket
import time

import gevent
import gevent.lock
from gevent import socket  # cooperative whether or not the process is monkey-patched

from bliss_lite.config.fields import Field, positive
from bliss_lite.controllers.axis_state import AxisState
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motor_controller import MotorController
from bliss_lite.controllers.motors.socket_protocol import DEFAULT_TIMEOUT, STALL_TIMEOUT

QUERIES = {"POS", "STATE", "VEL", "ACC", "PING", "AXES", "INIT", "CROSS", "POSAT"}
STATE_FLAGS = {"READY": ("READY",), "MOVING": ("MOVING",), "LIMPOS": ("READY", "LIMPOS"),
               "LIMNEG": ("READY", "LIMNEG"), "FAULT": ("FAULT",)}


class SocketMotorController(MotorController):
    FIELDS = (Field("server", "str"), Field("timeout", "number", DEFAULT_TIMEOUT, check=positive),
              Field("stall_timeout", "number", STALL_TIMEOUT, check=positive))
    AXIS_EXTRA_FIELDS = (Field("position", "number", 0.0),)  # dial position if the controller has none

    def __init__(self, name, node, config):
        self._initial, self._ready, self._sent = {}, set(), {}
        self._socket = self._buffer = None
        self._lock = gevent.lock.Semaphore()
        super().__init__(name, node, config)
        host, _, port = self.options["server"].rpartition(":")
        self.address = (host or "127.0.0.1", int(port))
        self.timeout = float(self.options["timeout"])
        self.stall_timeout = float(self.options["stall_timeout"])

    def initialize_axis(self, axis, extras):
        self._initial[axis] = round(extras["position"] * axis.steps_per_unit)

    # -- the link ----------------------------------------------------------------------------
    @property
    def where(self):
        return f"controller '{self.name}' at {self.address[0]}:{self.address[1]}"

    def _connect(self, axis):
        try:
            self._socket = socket.create_connection(self.address, timeout=self.timeout)
        except OSError as exc:
            raise AxisFault(f"{axis.name}: cannot reach {self.where}: {exc}") from None
        self._socket.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        self._buffer = b""
        self._ready.clear()  # a new link: axes are announced again

    def _drop(self):
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
        self._socket = None

    def _readline(self, deadline):
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._socket.settimeout(remaining)
            chunk = self._socket.recv(4096)
            if not chunk:
                raise ConnectionResetError("connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def _exchange(self, axis, line):
        if self._socket is None:
            self._connect(axis)
        self._socket.sendall((line + "\n").encode())
        return self._readline(time.monotonic() + self.timeout)

    def command(self, axis, line):
        """Send one command for `axis`, return what follows OK; every failure is an AxisFault."""
        with self._lock:
            verb = line.split()[0]
            for attempt in (0, 1):
                try:
                    reply = self._exchange(axis, line)
                    break
                except (TimeoutError, stdlib_socket.timeout):
                    self._drop()
                    raise AxisFault(f"{axis.name}: {self.where}: no reply to {verb} within {self.timeout:g} s") from None
                except OSError as exc:
                    self._drop()
                    if attempt or verb not in QUERIES:
                        raise AxisFault(f"{axis.name}: {self.where}: link lost during {verb}: {exc}") from None
                except BaseException:  # killed mid-exchange (a stop, Ctrl-C): its reply would
                    self._drop()  # answer the next command, so start the next on a fresh link
                    raise
        if reply.startswith("OK"):
            return reply[2:].strip()
        if reply.startswith("ERR"):
            raise AxisFault(f"{axis.name}: {self.where}: {verb} refused: {reply[3:].strip()}")
        self._drop()  # out of step with the controller: start afresh
        raise AxisFault(f"{axis.name}: {self.where}: garbled reply to {verb}: {reply[:60]!r}")

    def _announce(self, axis):
        if axis not in self._ready:
            spu = abs(axis.steps_per_unit)
            self.command(axis, f"INIT {axis.name} {self._initial[axis]} {axis.velocity * spu!r} {axis.acceleration * spu!r}")
            self._ready.add(axis)
            self._sent[axis] = (axis.velocity, axis.acceleration)

    def _number(self, axis, line):
        self._announce(axis)
        reply = self.command(axis, line)
        try:
            return float(reply)
        except ValueError:
            self._drop()
            raise AxisFault(f"{axis.name}: {self.where}: garbled reply to {line.split()[0]}: {reply[:60]!r}") from None

    # -- hardware API ------------------------------------------------------------------------
    def read_position(self, axis):
        return self._number(axis, f"POS {axis.name}")

    def read_position_at(self, axis, t):
        return self._number(axis, f"POSAT {axis.name} {t!r}")

    def crossing_time(self, axis, steps):
        self._announce(axis)
        reply = self.command(axis, f"CROSS {axis.name} {float(steps)!r}")
        if reply == "none":
            return None
        try:
            return float(reply)
        except ValueError:
            self._drop()
            raise AxisFault(f"{axis.name}: {self.where}: garbled reply to CROSS: {reply[:60]!r}") from None

    def set_position(self, axis, steps):
        self._announce(axis)
        self.command(axis, f"SETPOS {axis.name} {float(steps)!r}")

    def state(self, axis):
        self._announce(axis)
        word = self.command(axis, f"STATE {axis.name}")
        if word not in STATE_FLAGS:
            self._drop()
            raise AxisFault(f"{axis.name}: {self.where}: garbled reply to STATE: {word[:60]!r}")
        return AxisState(*STATE_FLAGS[word])

    def start_all(self, *moves):
        for axis, _ in moves:
            self._announce(axis)
            if self._sent.get(axis) != (axis.velocity, axis.acceleration):  # changed since we told it
                spu = abs(axis.steps_per_unit)
                self.command(axis, f"VEL {axis.name} {axis.velocity * spu!r}")
                self.command(axis, f"ACC {axis.name} {axis.acceleration * spu!r}")
                self._sent[axis] = (axis.velocity, axis.acceleration)
        self.command(moves[0][0], "MOVE " + " ".join(f"{axis.name} {float(target)!r}" for axis, target in moves))

    def stop_all(self, *axes):
        if axes:
            self.command(axes[0], "STOP " + " ".join(axis.name for axis in axes))

    def wait_move(self, axis):
        """Poll until the axis is no longer MOVING; an axis that stays still while MOVING for
        `stall_timeout` is stopped and reported."""
        last, since = None, time.monotonic()
        while "MOVING" in self.state(axis):
            position = self.read_position(axis)
            if position != last:
                last, since = position, time.monotonic()
            elif time.monotonic() - since > self.stall_timeout:
                self.stop_all(axis)
                raise AxisFault(f"{axis.name}: stalled at dial {position / axis.steps_per_unit:g}: MOVING but no "
                                f"motion for {self.stall_timeout:g} s ({self.where}); stopped")
            gevent.sleep(self.POLLING_TIME)

    def axis_info(self, axis):
        return f"SOCKET MOTOR AXIS:\n    {axis.name} on {self.where}"


def create_controller(name, node, config):
    return SocketMotorController(name, node, config)
