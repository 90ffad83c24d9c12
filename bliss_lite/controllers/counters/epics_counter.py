"""A PV as a sampling counter (pyepics client, as controllers/motors/epics_motor.py says why).

The PV is read every `sample_period` seconds during the count and the readings are reduced by
the counter's mode (controllers/counters/device_sampling.py); a failed read names the counter
and the PV.

    - {name: ecnt, class: epics_counter, pv: "SIM:cnt", unit: mA}
"""
from __future__ import annotations

from bliss_lite.config.fields import Field, positive, read_fields
from bliss_lite.controllers.counters.device_sampling import DeviceSamplingCounter
from bliss_lite.controllers.counters.kinds import mode_complaint
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motors.epics_motor import Channels

FIELDS = (Field("pv", "str"), Field("unit", "str", ""), Field("mode", "str", "MEAN", check=mode_complaint),
          Field("timeout", "number", 1.0, check=positive), Field("sample_period", "number", 0.005, check=positive))


class EpicsCounter(DeviceSamplingCounter):
    controller_name = "epics"

    def __init__(self, name, pv, unit="", mode="MEAN", timeout=1.0, sample_period=0.005):
        super().__init__(name, unit, mode, sample_period)
        self.pv = pv
        self.ca = Channels(float(timeout))  # not `channels`: that is the counter's list of scan channels

    def read_value(self):
        try:
            return float(self.ca.get(self.pv))
        except (TimeoutError, OSError) as exc:
            raise AxisFault(f"{self.name}: EPICS PV {self.pv}: {exc}") from None

    def __info__(self):
        return f"EpicsCounter {self.name}: {self.pv} [{self.unit}] ({self.mode})"


def create_counter(name, node, config):
    return EpicsCounter(name, **read_fields(node, FIELDS, f"counter '{name}'"))
