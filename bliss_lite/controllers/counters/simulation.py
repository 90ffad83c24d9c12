"""Simulation counters: a noisy diode, and a value that follows a motor position.

`read(count_time)` returns the value integrated over the count time, as a real counter would
(so a Gaussian of height H counted for t seconds gives H * t at the centre).
"""
from __future__ import annotations

import math

import numpy as np

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, non_negative, one_of, positive, read_fields

DISTRIBUTIONS = ("gaussian", "flat", "linear")


class SimulationCounter:
    """A counter whose value is a function of an axis position (or a constant), plus noise."""

    controller_name = "simulation"
    shape = ()
    dtype = "float64"

    def __init__(self, name, distribution="flat", axis=None, center=0.0, fwhm=1.0, height=1.0,
                 background=0.0, slope=0.0, noise=0.0, unit="", seed=None):
        self.name = name
        self.distribution = distribution
        self.axis = axis
        self.center, self.fwhm, self.height = center, fwhm, height
        self.background, self.slope, self.noise, self.unit = background, slope, noise, unit
        self._rng = np.random.default_rng(seed)

    @property
    def fullname(self):
        return f"{self.controller_name}:{self.name}"

    def value_at(self, x):
        """The noise-free rate (per second) at axis position x."""
        if self.distribution == "gaussian":
            return self.background + self.height * math.exp(-4 * math.log(2) * ((x - self.center) / self.fwhm) ** 2)
        if self.distribution == "linear":
            return self.background + self.slope * x
        return self.background + self.height

    def read(self, count_time=1.0):
        x = self.axis.position if self.axis is not None else 0.0
        value = self.value_at(x) * count_time
        if self.noise:
            value += self._rng.normal(0.0, self.noise * abs(value))
        return value

    def __info__(self):
        follows = f" of {self.axis.name}" if self.axis is not None else ""
        return (f"SimulationCounter {self.name}: {self.distribution}{follows}, "
                f"height={self.height:g} center={self.center:g} fwhm={self.fwhm:g} "
                f"background={self.background:g} noise={self.noise:g}")

    def __repr__(self):
        return f"<Counter {self.fullname}>"


COUNTER_FIELDS = (
    Field("distribution", "str", "flat", check=one_of(*DISTRIBUTIONS)),
    Field("axis", "ref", None),
    Field("center", "number", 0.0),
    Field("fwhm", "number", 1.0, check=positive),
    Field("height", "number", 1.0),
    Field("background", "number", 0.0),
    Field("slope", "number", 0.0),
    Field("noise", "number", 0.0, check=non_negative),
    Field("unit", "str", ""),
    Field("seed", "int", None, check=non_negative),
)


def create_counter(name, node, config):
    values = read_fields(node, COUNTER_FIELDS, f"counter '{name}'")
    if values["axis"] is not None:
        axis = config.resolve(values["axis"])
        if not hasattr(axis, "position"):
            raise ConfigError(f"{where(node, 'axis')}: counter '{name}': axis {values['axis']} is not an axis")
        values["axis"] = axis
    elif values["distribution"] != "flat":
        raise ConfigError(f"{where(node)}: counter '{name}': a {values['distribution']} distribution needs 'axis'")
    return SimulationCounter(name, **values)


def create_diode(name, node, config):
    """A diode: a flat mean with relative Gaussian noise (default 1 %)."""
    values = read_fields(node, (Field("mean", "number", 100.0), Field("noise", "number", 0.01, check=non_negative),
                                Field("unit", "str", ""), Field("seed", "int", None, check=non_negative)),
                         f"diode '{name}'")
    return SimulationCounter(name, "flat", height=values["mean"], noise=values["noise"],
                             unit=values["unit"], seed=values["seed"])
