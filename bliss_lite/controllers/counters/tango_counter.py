"""Any scalar Tango attribute as a sampling counter (pytango client).

The attribute is read every `sample_period` seconds during the count and the readings are
reduced by the counter's mode (controllers/counters/device_sampling.py; a read costs ~1 ms),
and a failed read is an error naming the counter and the device, within `timeout` seconds.

    - {name: tcnt, class: tango_attribute_counter, device: "sim/counter/1", attribute: Value, unit: mA}
"""
from __future__ import annotations

from bliss_lite.config.fields import Field, positive, read_fields
from bliss_lite.controllers.counters.device_sampling import DeviceSamplingCounter
from bliss_lite.controllers.counters.kinds import mode_complaint
from bliss_lite.controllers.errors import AxisFault
from bliss_lite.controllers.motors.tango_motor import tango_error

FIELDS = (Field("device", "str"), Field("attribute", "str", "Value"), Field("unit", "str", ""),
          Field("mode", "str", "MEAN", check=mode_complaint), Field("timeout", "number", 1.0, check=positive),
          Field("sample_period", "number", 0.005, check=positive))


class TangoAttributeCounter(DeviceSamplingCounter):
    controller_name = "tango"

    def __init__(self, name, device, attribute="Value", unit="", mode="MEAN", timeout=1.0, sample_period=0.005):
        super().__init__(name, unit, mode, sample_period)
        self.device, self.attribute, self.timeout = device, attribute, float(timeout)
        self._proxy = None

    def read_value(self):
        try:
            if self._proxy is None:
                import tango

                self._proxy = tango.DeviceProxy(self.device)
                self._proxy.set_timeout_millis(int(self.timeout * 1000))
            return float(self._proxy.read_attribute(self.attribute).value)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "tango":
                raise
            raise AxisFault(f"{self.name}: Tango device {self.device}: read {self.attribute} failed: "
                            f"{type(exc).__name__}: {tango_error(exc)}") from None

    def __info__(self):
        return f"TangoAttributeCounter {self.name}: {self.device}/{self.attribute} [{self.unit}] ({self.mode})"


def create_counter(name, node, config):
    return TangoAttributeCounter(name, **read_fields(node, FIELDS, f"counter '{name}'"))
