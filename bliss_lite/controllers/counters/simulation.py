"""Simulation counters: a noisy diode, and a signal that follows a motor position.

Each is a counter of a kind (controllers/counters/kinds.py). `simulation_diode` samples a
flat value by default (a current, a temperature: it reads its mean whatever the count time);
`simulation_counter` integrates by default (a detector looking at a peak: counts over the
count time, its `height` and `background` are rates per second). `integrating:` in the YAML
picks the other kind; `mode:` the sampling mode. Noise is seeded per process unless `seed:`
fixes it (the same values in every run, when asked).
"""
from __future__ import annotations

import math

import numpy as np

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, non_negative, one_of, positive, read_fields
from bliss_lite.controllers.counters.kinds import IntegratingCounter, SamplingCounter, SamplingMode, mode_complaint

DISTRIBUTIONS = ("gaussian", "flat", "linear")


class _Signal:
    """The noise-free value at an axis position (or a constant), and the noise generator."""

    def _set_signal(self, distribution, axis, center, fwhm, height, background, slope, noise, seed):
        self.distribution = distribution
        self.axis = axis
        self.center, self.fwhm, self.height = center, fwhm, height
        self.background, self.slope, self.noise = background, slope, noise
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def value_at(self, x):
        """The noise-free value (a rate per second, for an integrating counter) at axis position x."""
        if self.distribution == "gaussian":
            return self.background + self.height * math.exp(-4 * math.log(2) * ((x - self.center) / self.fwhm) ** 2)
        if self.distribution == "linear":
            return self.background + self.slope * x
        return self.background + self.height

    def _now(self):
        return self.value_at(self.axis.position if self.axis is not None else 0.0)

    def __info__(self):
        follows = f" of {self.axis.name}" if self.axis is not None else ""
        unit = f" [{self.unit}]" if self.unit else ""
        return (f"{type(self).__name__} {self.name}{unit} ({self.kind_text()}): {self.distribution}{follows}, "
                f"height={self.height:g} center={self.center:g} fwhm={self.fwhm:g} "
                f"background={self.background:g} noise={self.noise:g}")


class SimulationSamplingCounter(_Signal, SamplingCounter):
    """Samples the signal (relative Gaussian noise on each sample)."""

    controller_name = "simulation"

    def __init__(self, name, distribution="flat", axis=None, center=0.0, fwhm=1.0, height=1.0, background=0.0,
                 slope=0.0, noise=0.0, unit="", seed=None, mode=SamplingMode.MEAN):
        SamplingCounter.__init__(self, name, unit, mode)
        self._set_signal(distribution, axis, center, fwhm, height, background, slope, noise, seed)

    def samples(self, n, count_time):
        value = self._now()
        if not self.noise:
            return np.full(n, value)
        return value + self._rng.normal(0.0, self.noise * abs(value), n)

    def kind_text(self):
        return f"sampling, {self.mode}"


class SimulationIntegratingCounter(_Signal, IntegratingCounter):
    """Counts the signal's rate over the count time (relative Gaussian noise on the count)."""

    controller_name = "simulation"

    def __init__(self, name, distribution="flat", axis=None, center=0.0, fwhm=1.0, height=1.0, background=0.0,
                 slope=0.0, noise=0.0, unit="counts", seed=None):
        IntegratingCounter.__init__(self, name, unit)
        self._set_signal(distribution, axis, center, fwhm, height, background, slope, noise, seed)

    def read(self, count_time=1.0):
        value = self._now() * count_time
        if self.noise:
            value += self._rng.normal(0.0, self.noise * abs(value))
        return value

    def kind_text(self):
        return "integrating"


SimulationCounter = SimulationIntegratingCounter  # the name the configuration's class has


KIND_FIELDS = (
    Field("integrating", "bool", None),
    Field("mode", "str", None, check=mode_complaint),
)

COUNTER_FIELDS = (
    Field("distribution", "str", "flat", check=one_of(*DISTRIBUTIONS)),
    Field("axis", "ref", None),
    Field("center", "number", 0.0),
    Field("fwhm", "number", 1.0, check=positive),
    Field("height", "number", 1.0),
    Field("background", "number", 0.0),
    Field("slope", "number", 0.0),
    Field("noise", "number", 0.0, check=non_negative),
    Field("unit", "str", None),
    Field("seed", "int", None, check=non_negative),
    *KIND_FIELDS,
)


def _build(name, node, values, integrating_by_default):
    """The counter of the kind the YAML asks for (`integrating:`, `mode:`)."""
    integrating = values.pop("integrating")
    mode = values.pop("mode")
    if integrating is None:
        integrating = integrating_by_default and mode is None
    if integrating and mode is not None:
        raise ConfigError(f"{where(node, 'mode')}: counter '{name}': 'mode' is for sampling counters; "
                          f"this one is integrating (integrating: false makes it sampling)")
    if integrating:
        values["unit"] = "counts" if values["unit"] is None else values["unit"]
        return SimulationIntegratingCounter(name, **values)
    values["unit"] = values["unit"] or ""
    return SimulationSamplingCounter(name, mode=mode or SamplingMode.MEAN, **values)


def create_counter(name, node, config):
    """`simulation_counter`: integrating unless `integrating: false` or a `mode:` is given."""
    values = read_fields(node, COUNTER_FIELDS, f"counter '{name}'")
    if values["axis"] is not None:
        axis = config.resolve(values["axis"])
        if not hasattr(axis, "position"):
            raise ConfigError(f"{where(node, 'axis')}: counter '{name}': axis {values['axis']} is not an axis")
        values["axis"] = axis
    elif values["distribution"] != "flat":
        raise ConfigError(f"{where(node)}: counter '{name}': a {values['distribution']} distribution needs 'axis'")
    return _build(name, node, values, integrating_by_default=True)


DIODE_FIELDS = (
    Field("mean", "number", 100.0),
    Field("noise", "number", 0.01, check=non_negative),
    Field("unit", "str", None),
    Field("seed", "int", None, check=non_negative),
    *KIND_FIELDS,
)


def create_diode(name, node, config):
    """`simulation_diode`: a flat mean with relative Gaussian noise (default 1 %), sampled
    (mode MEAN) unless `integrating: true`."""
    values = read_fields(node, DIODE_FIELDS, f"diode '{name}'")
    values["height"] = values.pop("mean")
    return _build(name, node, values, integrating_by_default=False)
