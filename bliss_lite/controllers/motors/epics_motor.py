"""Axes that are EPICS motor records, over Channel Access (pyepics client), one record per axis.

pyepics rather than caproto's threading client: it drives libca (C, shipped in its wheel), whose
own threads do the network work, so a read costs ~0.3 ms and never depends on how gevent has
patched Python's threads; it is also what ophyd uses, so the benchmark compares like with like.
Reads are real CA gets (not a monitor's cache), so a dead IOC is seen at once, not as a stale value.

The record's .RBV is the dial position (steps = RBV * steps_per_unit); a move writes .VAL after
.VELO and .ACCL (s to full speed), refused first when beyond the record's .HLM/.LLM; MOVING is
.DMOV == 0; .MSTA gives the limit switches and the problem bit; stopping writes .STOP = 1. Any
channel that does not connect or answer within `timeout` is an AxisFault naming axis and PV.

    - class: epics_motor
      timeout: 1.0
      axes:
        - {name: emot, prefix: "SIM:m1", steps_per_unit: 1000}
"""
from __future__ import annotations

from bliss_lite.config.fields import Field, positive
from bliss_lite.controllers.axis_state import AxisState
from bliss_lite.controllers.errors import AxisFault, LimitError
from bliss_lite.controllers.motor_controller import MotorController

PLUS_LS, MINUS_LS, PROBLEM = 1 << 2, 1 << 13, 1 << 9  # motor record MSTA bits


class Channels:
    """PV objects by name, connected on first use, read without a monitor's cache."""

    CONNECT_TIMEOUT = 3.0  # s for a channel's first connection: a CA search may take a few tries

    def __init__(self, timeout):
        self.timeout = timeout
        self._pvs = {}

    def pv(self, name):
        pv = self._pvs.get(name)
        if pv is None:
            import epics  # lazily: the shell starts without libca loaded

            pv = self._pvs[name] = epics.PV(name, auto_monitor=False, connection_timeout=self.timeout)
            wait = max(self.timeout, self.CONNECT_TIMEOUT)
        else:  # connected once: a lost link is a fault within the timeout
            wait = self.timeout
        if not pv.connected and not pv.wait_for_connection(timeout=wait):
            raise TimeoutError(f"{name} not connected within {wait:g} s")
        return pv

    def get(self, name):
        value = self.pv(name).get(timeout=self.timeout, use_monitor=False)
        if value is None:
            raise TimeoutError(f"no value of {name} within {self.timeout:g} s")
        return value

    def put(self, name, value):
        if self.pv(name).put(value, wait=False) is None:
            raise TimeoutError(f"put to {name} failed")


class EpicsMotorController(MotorController):
    FIELDS = (Field("timeout", "number", 1.0, check=positive),)
    AXIS_EXTRA_FIELDS = (Field("prefix", "str"),)

    def __init__(self, name, node, config):
        self.prefixes, self._sent = {}, {}
        super().__init__(name, node, config)
        self.timeout = float(self.options["timeout"])
        self.channels = Channels(self.timeout)

    def initialize_axis(self, axis, extras):
        self.prefixes[axis] = extras["prefix"]

    def _do(self, axis, field, function, *args):
        name = f"{self.prefixes[axis]}{field}"
        try:
            return function(name, *args)
        except (TimeoutError, OSError) as exc:
            raise AxisFault(f"{axis.name}: EPICS PV {name}: {exc}") from None

    def _get(self, axis, field):
        return self._do(axis, field, self.channels.get)

    def _put(self, axis, field, value):
        self._do(axis, field, self.channels.put, value)

    # -- hardware API ------------------------------------------------------------------------
    def read_position(self, axis):
        return float(self._get(axis, ".RBV")) * axis.steps_per_unit

    def set_position(self, axis, steps):
        raise AxisFault(f"{axis.name}: EPICS record {self.prefixes[axis]}: setting the dial is not supported")

    def state(self, axis):
        if not int(self._get(axis, ".DMOV")):
            return AxisState("MOVING")
        status = int(self._get(axis, ".MSTA"))
        if status & PROBLEM:
            return AxisState("FAULT")
        names = ["READY"] + (["LIMPOS"] if status & PLUS_LS else []) + (["LIMNEG"] if status & MINUS_LS else [])
        return AxisState(*names)

    def start_all(self, *moves):
        for axis, target in moves:
            dial = float(target) / axis.steps_per_unit
            low, high = float(self._get(axis, ".LLM")), float(self._get(axis, ".HLM"))
            if not low <= dial <= high:
                raise LimitError(f"{axis.name}: dial {dial:g} beyond the limits [{low:g}, {high:g}] of "
                                 f"EPICS record {self.prefixes[axis]}")
            wanted = (axis.velocity, axis.acceleration)
            if self._sent.get(axis) != wanted:
                self._put(axis, ".VELO", float(axis.velocity))
                self._put(axis, ".ACCL", float(axis.velocity) / float(axis.acceleration))
                self._sent[axis] = wanted
        for axis, target in moves:
            self._put(axis, ".VAL", float(target) / axis.steps_per_unit)

    def stop_all(self, *axes):
        failures = []
        for axis in axes:  # every record is told, even when one IOC does not answer
            try:
                self._put(axis, ".STOP", 1)
            except AxisFault as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def wait_move(self, axis):
        super().wait_move(axis)
        if self.state(axis).FAULT:
            raise AxisFault(f"{axis.name}: EPICS record {self.prefixes[axis]} reports a problem (MSTA)")

    def axis_info(self, axis):
        return f"EPICS MOTOR AXIS:\n    {axis.name} on record {self.prefixes[axis]}"


def create_controller(name, node, config):
    return EpicsMotorController(name, node, config)
