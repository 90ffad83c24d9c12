"""A sampling counter whose value lives in a device (a Tango attribute, an EPICS PV): read
again and again during the count time, as BLISS's SamplingCounter does, then reduced by its
mode (controllers/counters/kinds.py), so a MEAN is the mean over the count, not one reading.

In a scan the timer says when each count starts (`start_sampling`, scans/step_objects.py):
a greenlet reads the device every `sample_period` seconds until the counter slave asks for
the value at the end of the count. Read outside a scan (`read(count_time)`), it samples for
the count time there and then. There is always at least one reading (a count time of 0, or a
device slower than the count). A failed read ends the sampling, and its error (naming the
counter and the device) is raised when the value is asked for.
"""
from __future__ import annotations

import time

import gevent
import numpy as np

from bliss_lite.controllers.counters.kinds import SamplingCounter, SamplingMode


class DeviceSamplingCounter(SamplingCounter):
    """Subclasses give `read_value()`: one reading of the device (an AxisFault when it fails)."""

    def __init__(self, name, unit="", mode=SamplingMode.MEAN, sample_period=0.005):
        super().__init__(name, unit, mode)
        self.sample_period = float(sample_period)
        self._sampling = None  # (greenlet, readings, failures) while a count is sampled

    def read_value(self):
        raise NotImplementedError

    # -- in a scan: the timer starts a count, the counter slave reads at its end --------------
    def start_sampling(self):
        """A count starts now: read the device until its value is asked for."""
        self.cancel_sampling()
        readings, failures = [], []
        self._sampling = (gevent.spawn(self._sample, readings, failures), readings, failures)

    def cancel_sampling(self):
        """Stop reading (the scan ended or failed); what was read is dropped."""
        sampling, self._sampling = self._sampling, None
        if sampling is not None:
            sampling[0].kill()

    def _sample(self, readings, failures):
        try:
            while True:
                readings.append(self.read_value())
                gevent.sleep(self.sample_period)
        except Exception as exc:  # noqa: BLE001 - raised where the value is asked for
            failures.append(exc)

    # -- SamplingCounter ---------------------------------------------------------------------
    def samples(self, n, count_time):
        """The readings of the count that just ended (n, for a simulated rate, is not used)."""
        sampling, self._sampling = self._sampling, None
        if sampling is None:  # not started by a scan: sample for the count time here
            return np.asarray(self._sample_for(count_time), dtype=float)
        greenlet, readings, failures = sampling
        greenlet.kill()
        if failures:
            raise failures[0]
        return np.asarray(readings or [self.read_value()], dtype=float)

    def _sample_for(self, count_time):
        readings, deadline = [], time.monotonic() + float(count_time)
        while True:
            readings.append(self.read_value())
            if time.monotonic() >= deadline:
                return readings
            gevent.sleep(min(self.sample_period, max(0.0, deadline - time.monotonic())))

    def kind_text(self):
        return f"sampling, {self.mode}"
