"""Counter kinds, as in BLISS: sampling counters and integrating counters.

A sampling counter reads a value that exists at every instant (a ring current, a temperature,
a read-back): it is sampled during the count time and the samples are reduced by its `mode`,
so a current in mA reads ~200 mA whatever the count time. An integrating counter counts over
the count time (a diode's charge, a detector ROI): its value is counts, and `ct` shows the
rate beside it. A counter says which it is with `counter_kind` ("sampling", "integrating");
any other object with `read(count_time)` still counts, as one channel.

Modes of a sampling counter: MEAN (default), LAST, MIN, MAX, INTEGRATE (mean x count time, in
unit*s) and STATS, which gives five channels: `name` (the mean), `name_std`, `name_min`,
`name_max` and `name_N` (the number of samples).
"""
from __future__ import annotations

from enum import StrEnum

import numpy as np

from bliss_lite.data.model import ChannelSpec

SAMPLING, INTEGRATING = "sampling", "integrating"


class SamplingMode(StrEnum):
    MEAN = "MEAN"
    LAST = "LAST"
    MIN = "MIN"
    MAX = "MAX"
    STATS = "STATS"
    INTEGRATE = "INTEGRATE"


STATS_SUFFIXES = ("std", "min", "max", "N")


def sampling_mode(value, who="counter"):
    """A SamplingMode from itself or its name (any case), or a ValueError naming the choices."""
    try:
        return SamplingMode(str(value).upper())
    except ValueError:
        choices = ", ".join(m.value for m in SamplingMode)
        raise ValueError(f"{who}: mode must be one of {choices}, got {value!r}") from None


def mode_complaint(value):
    """For a YAML `mode:` field (config/fields.Field check): None when it names a mode."""
    try:
        sampling_mode(value)
    except ValueError:
        return f"must be one of {', '.join(m.value for m in SamplingMode)}"
    return None


class SamplingCounter:
    """Samples a value `sample_rate` times a second during the count time (at least once) and
    reduces the samples by `mode`. Subclasses give `samples(n, count_time)`."""

    counter_kind = SAMPLING
    controller_name = "sampling"
    shape = ()
    dtype = "float64"
    sample_rate = 1000.0  # Hz
    max_samples = 10_000

    def __init__(self, name, unit="", mode=SamplingMode.MEAN):
        self.name = name
        self.unit = unit
        self.mode = mode

    @property
    def fullname(self):
        return f"{self.controller_name}:{self.name}"

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        self._mode = sampling_mode(value, self.name)

    def samples(self, n, count_time):
        """n values spread over the count time that just ended."""
        raise NotImplementedError

    def sample_count(self, count_time):
        return int(min(self.max_samples, max(1, round(count_time * self.sample_rate))))

    def channels(self):
        """The channels a scan records for this counter, with their units."""
        extra = {"kind": SAMPLING, "mode": str(self.mode)}
        main = ChannelSpec(self.name, self.dtype, (), self.value_unit, extra=extra)
        if self.mode != SamplingMode.STATS:
            return [main]
        return [main] + [ChannelSpec(f"{self.name}_{s}", "int64" if s == "N" else self.dtype, (),
                                     "" if s == "N" else self.unit, extra=extra) for s in STATS_SUFFIXES]

    @property
    def value_unit(self):
        """The unit of the main channel: the counter's, or unit*s when integrated over time."""
        if self.mode == SamplingMode.INTEGRATE:
            return f"{self.unit}*s" if self.unit else "s"
        return self.unit

    def read_channels(self, count_time=1.0):
        """{channel: value} for one count of `count_time` seconds."""
        values = np.asarray(self.samples(self.sample_count(count_time), count_time), dtype=float)
        mode = self.mode
        if mode == SamplingMode.STATS:
            return {self.name: float(values.mean()), f"{self.name}_std": float(values.std()),
                    f"{self.name}_min": float(values.min()), f"{self.name}_max": float(values.max()),
                    f"{self.name}_N": int(values.size)}
        if mode == SamplingMode.LAST:
            value = values[-1]
        elif mode == SamplingMode.MIN:
            value = values.min()
        elif mode == SamplingMode.MAX:
            value = values.max()
        elif mode == SamplingMode.INTEGRATE:
            value = values.mean() * count_time
        else:
            value = values.mean()
        return {self.name: float(value)}

    def read(self, count_time=1.0):
        """The main value (the mean, for STATS)."""
        return self.read_channels(count_time)[self.name]

    def __repr__(self):
        return f"<Counter {self.fullname}>"


class IntegratingCounter:
    """Counts over the count time: `read(count_time)` is what was counted, in `unit`."""

    counter_kind = INTEGRATING
    controller_name = "integrating"
    shape = ()
    dtype = "float64"

    def __init__(self, name, unit="counts"):
        self.name = name
        self.unit = unit

    @property
    def fullname(self):
        return f"{self.controller_name}:{self.name}"

    def channels(self):
        return [ChannelSpec(self.name, self.dtype, tuple(self.shape), self.unit, extra={"kind": INTEGRATING})]

    def read_channels(self, count_time=1.0):
        return {self.name: self.read(count_time)}

    def read(self, count_time=1.0):
        raise NotImplementedError

    def __repr__(self):
        return f"<Counter {self.fullname}>"


# -- any counter, of a kind or not ------------------------------------------------------------
def kind_of(counter):
    """"sampling", "integrating", or None for a counter that does not say."""
    kind = getattr(counter, "counter_kind", None)
    return kind if kind in (SAMPLING, INTEGRATING) else None


def integrates(counter):
    """True when the counter's value grows with the count time (0 at count time 0)."""
    kind = kind_of(counter)
    return kind == INTEGRATING or (kind == SAMPLING and getattr(counter, "mode", None) == SamplingMode.INTEGRATE)


def counter_channels(counter):
    """[ChannelSpec] a scan records for this counter (one, unless it says otherwise)."""
    channels = getattr(counter, "channels", None)
    if callable(channels):
        return list(channels())
    kind = kind_of(counter)
    extra = {"kind": kind} if kind else {}
    if getattr(counter, "nexus_class", None):  # e.g. NXmonitor for a beam monitor (the writer's group class)
        extra["nexus_class"] = counter.nexus_class
    return [ChannelSpec(counter.name, getattr(counter, "dtype", "float64"), tuple(getattr(counter, "shape", ())),
                        getattr(counter, "unit", "") or "", extra=extra)]


def read_counter(counter, count_time):
    """{channel: value} of one count."""
    read_channels = getattr(counter, "read_channels", None)
    if callable(read_channels):
        return read_channels(count_time)
    return {counter.name: counter.read(count_time)}


def describe_kind(counter):
    """'sampling, MEAN' / 'integrating' / '' for summaries and listings."""
    kind = kind_of(counter)
    if kind == SAMPLING:
        return f"sampling, {getattr(counter, 'mode', SamplingMode.MEAN)}"
    return kind or ""
