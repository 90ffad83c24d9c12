"""Axes that are Tango motor devices (pytango client), one device per axis.

The device's Position is the axis's dial position (steps = Position * steps_per_unit, so the
axis code, which counts in steps, is the same as for every controller); moving writes Position,
stopping runs the Stop command, MOVING is the device's State (or the attribute `state_attribute`
names); a device in FAULT (ALARM, UNKNOWN, DISABLE) is not moved, and a move that ends in one
is an AxisFault naming axis and device. Each call waits at most `timeout`
seconds (the Tango client timeout), and any DevFailed becomes an AxisFault naming the axis and
the device, so a dead or silent device server ends the move instead of hanging it (a server
that stops answering costs each call Tango's own reconnection wait on top, ~3 s: its default
timeout, whatever `timeout` says). A device that comes back is reached again on the next call
(the proxy reconnects by itself).

    - class: tango_motor
      timeout: 1.0
      axes:
        - {name: tmot, device: "tango://127.0.0.1:20000/sim/motor/1#dbase=no", steps_per_unit: 1000}
        - {name: th, device: "id00/motor/th", steps_per_unit: 1000}   # through TANGO_HOST's database

The names default to a typical Tango motor device's; a controller's devices of another class
name them (all optional): position_attribute (Position), velocity_attribute (Velocity),
acceleration_attribute (Acceleration), stop_command (Stop), state_attribute (empty: the
device's own State; else an attribute read as a DevState or a state word).
"""
from __future__ import annotations

from bliss_lite.config.fields import Field, positive
from bliss_lite.controllers.axis_state import AxisState
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motors.device_motor import DeviceMotorController

FAULTY = {"FAULT", "ALARM", "UNKNOWN", "DISABLE"}


def tango_error(exc):
    """The first line of a DevFailed's description (or the exception's text)."""
    args = getattr(exc, "args", ())
    desc = getattr(args[0], "desc", None) if args else None
    return (desc or str(exc)).strip().splitlines()[0][:200]


class TangoMotorController(DeviceMotorController):
    FIELDS = (Field("timeout", "number", 1.0, check=positive),
              Field("position_attribute", "str", "Position"), Field("velocity_attribute", "str", "Velocity"),
              Field("acceleration_attribute", "str", "Acceleration"), Field("stop_command", "str", "Stop"),
              Field("state_attribute", "str", ""))
    AXIS_EXTRA_FIELDS = (Field("device", "str"),)
    FAULT_TEXT = "in FAULT after the move"

    def __init__(self, name, node, config):
        self.devices, self._proxies, self._sent = {}, {}, {}
        super().__init__(name, node, config)
        self.timeout = float(self.options["timeout"])

    def initialize_axis(self, axis, extras):
        self.devices[axis] = extras["device"]

    def _proxy(self, axis):
        proxy = self._proxies.get(axis)
        if proxy is None:
            import tango  # lazily: the shell starts without the Tango library loaded

            proxy = tango.DeviceProxy(self.devices[axis])
            proxy.set_timeout_millis(int(self.timeout * 1000))
            self._proxies[axis] = proxy
        return proxy

    def _call(self, axis, what, function, *args):
        """function(proxy, *args); a Tango failure is an AxisFault naming axis and device."""
        try:
            return function(self._proxy(axis), *args)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "tango":
                raise
            raise AxisFault(f"{axis.name}: {self.device_text(axis)}: {what} failed: "
                            f"{type(exc).__name__}: {tango_error(exc)}") from None

    def _read(self, axis, attribute):
        return float(self._call(axis, f"read {attribute}", lambda p: p.read_attribute(attribute).value))

    def _write(self, axis, attribute, value):
        try:
            self._call(axis, f"write {attribute}", lambda p: p.write_attribute(attribute, value))
        except TypeError as exc:  # pytango's answer when the device did not describe the attribute
            raise AxisFault(f"{axis.name}: {self.device_text(axis)}: write {attribute} failed: "
                            f"no answer about the attribute ({exc})") from None

    # -- hardware API ------------------------------------------------------------------------
    def device_text(self, axis):
        return f"Tango device {self.devices[axis]}"

    def read_position(self, axis):
        return self._read(axis, self.options["position_attribute"]) * axis.steps_per_unit

    def _state_word(self, axis):
        """The motor's Tango state as a word (MOVING, ON, FAULT...): the device's State, or the
        attribute `state_attribute` names (a DevState or a string)."""
        name = self.options["state_attribute"]
        if not name:
            return str(self._call(axis, "read State", lambda p: p.state()))
        return str(self._call(axis, f"read {name}", lambda p: p.read_attribute(name).value))

    def state(self, axis):
        word = self._state_word(axis)
        if word == "MOVING":
            return AxisState("MOVING")
        if word in FAULTY:
            return AxisState("FAULT")
        return AxisState("READY")

    def _refuse_faulty(self, axis):
        """A device in FAULT (ALARM, UNKNOWN, DISABLE) is not moved: an AxisFault naming it, with
        its Status when it says more."""
        word = self._state_word(axis)
        if word in FAULTY:
            try:
                status = str(self._proxy(axis).status()).strip().splitlines()[0][:200]
            except Exception:  # noqa: BLE001 - the status only adds to the message
                status = ""
            raise AxisFault(f"{axis.name}: {self.device_text(axis)} is in {word}: move refused"
                            + (f" ({status})" if status else ""))

    def start_all(self, *moves):
        for axis, _ in moves:
            self._refuse_faulty(axis)
        for axis, _ in moves:
            wanted = (axis.velocity, axis.acceleration)
            if self._sent.get(axis) != wanted:
                self._write(axis, self.options["velocity_attribute"], float(axis.velocity))
                self._write(axis, self.options["acceleration_attribute"], float(axis.acceleration))
                self._sent[axis] = wanted
        for axis, target in moves:
            self._write(axis, self.options["position_attribute"], float(target) / axis.steps_per_unit)

    def stop_axis(self, axis):
        self._call(axis, "stop", lambda p: p.command_inout(self.options["stop_command"]))

    def axis_info(self, axis):
        return f"TANGO MOTOR AXIS:\n    {axis.name} on device {self.devices[axis]}"


def create_controller(name, node, config):
    return TangoMotorController(name, node, config)
