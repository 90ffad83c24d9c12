"""The common base of controllers whose every axis is one device of a control system (a Tango
motor device, an EPICS motor record): what they do alike, whatever the protocol.

- Stopping tells every axis's device, even when one does not answer, then raises the first
  failure (an AxisFault naming that axis and its device).
- A move that ends with the device in fault is an AxisFault naming the axis and the device.
- The dial is the device's own position: it is not redefined from here (`axis.dial = v` is
  refused, naming axis and device). Setting the user position (`axis.position = v`) changes
  only the axis's offset, as for every axis (SPEC's `set`), and never writes the device.

A subclass gives `device_text(axis)` ("Tango device ...", "EPICS record ..."), `stop_axis`
and FAULT_TEXT (how its devices say they are in fault).
"""
from __future__ import annotations

from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motor_controller import MotorController


class DeviceMotorController(MotorController):
    FAULT_TEXT = "is in fault after the move"

    def device_text(self, axis):
        """The axis's device, as messages name it."""
        raise NotImplementedError

    def stop_axis(self, axis):
        raise NotImplementedError

    def stop_all(self, *axes):
        failures = []
        for axis in axes:  # every device is told, even when one does not answer
            try:
                self.stop_axis(axis)
            except AxisFault as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def wait_move(self, axis):
        super().wait_move(axis)
        if self.state(axis).FAULT:
            raise AxisFault(f"{axis.name}: {self.device_text(axis)} {self.FAULT_TEXT}")

    def set_position(self, axis, steps):
        raise AxisFault(f"{axis.name}: {self.device_text(axis)}: the dial is the device's own position and is not "
                        f"redefined from here; set the user position instead ({axis.name}.position = value "
                        "changes only the offset)")
