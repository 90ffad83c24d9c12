"""A PV as a sampling counter (pyepics client, as controllers/motors/epics_motor.py says why).

The PV is read when the count ends (one sample), a failed read names the counter and the PV.

    - {name: ecnt, class: epics_counter, pv: "SIM:cnt", unit: mA}
"""
from __future__ import annotations

import numpy as np

from bliss_lite.config.fields import Field, positive, read_fields
from bliss_lite.controllers.counters.kinds import SamplingCounter, mode_complaint
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motors.epics_motor import Channels

FIELDS = (Field("pv", "str"), Field("unit", "str", ""), Field("mode", "str", "MEAN", check=mode_complaint),
          Field("timeout", "number", 1.0, check=positive))


class EpicsCounter(SamplingCounter):
    controller_name = "epics"
    max_samples = 1

    def __init__(self, name, pv, unit="", mode="MEAN", timeout=1.0):
        super().__init__(name, unit, mode)
        self.pv = pv
        self.channels = Channels(float(timeout))

    def samples(self, n, count_time):
        try:
            return np.full(n, float(self.channels.get(self.pv)))
        except (TimeoutError, OSError) as exc:
            raise AxisFault(f"{self.name}: EPICS PV {self.pv}: {exc}") from None

    def kind_text(self):
        return f"sampling, {self.mode}"

    def __info__(self):
        return f"EpicsCounter {self.name}: {self.pv} [{self.unit}] ({self.mode})"


def create_counter(name, node, config):
    return EpicsCounter(name, **read_fields(node, FIELDS, f"counter '{name}'"))
