"""A simulated storage ring: the beam current that every monitor and detector sees.

The current (mA) decays with the beam lifetime (`lifetime_h`; none: a top-up machine whose
current stays at `current`) and is topped up to `current` every `refill_every_s` (none: it
only decays); beam losses drop it to 0 for their duration, after
which the ring is refilled over `refill_s`. Losses come from a schedule (`beam_losses`, in
seconds from the moment the ring was made or `restart()`ed), at random (`mtbf_s`: mean time
between losses, exponential), or by hand (`lose_beam(duration_s)`). Everything is a function
of monotonic time, so the sample can ask what the beam was at the middle of any exposure.

`beam_fraction_at(t)` (current / nominal) scales I0, the transmission monitor and the
diffracted flux (controllers/sample/xrdct_sample.py): no beam, no counts. `ring_current`
(`RingCurrent`) samples the current, as a real ring's current monitor does: its value does
not grow with the count time.
"""
from __future__ import annotations

import bisect
import math
import time

import numpy as np

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.fields import Field, non_negative, positive, read_fields
from bliss_lite.controllers.counters.kinds import SamplingCounter, SamplingMode, mode_complaint

now = time.monotonic


class StorageRing:
    def __init__(self, name, current=200.0, lifetime_h=None, refill_every_s=None, refill_s=0.0, beam_losses=(),
                 mtbf_s=None, loss_duration_s=20.0, seed=0):
        self.name = name
        self.nominal = float(current)
        self.lifetime_s = None if lifetime_h is None else float(lifetime_h) * 3600.0  # None: top-up, no decay
        self.refill_every_s = refill_every_s
        self.refill_s = float(refill_s)
        self.schedule = [(float(at), float(duration)) for at, duration in beam_losses]
        self.mtbf_s = mtbf_s
        self.loss_duration_s = float(loss_duration_s)
        self.seed = seed
        self.counters = {}
        self.restart()

    def restart(self, t0=None):
        """Time 0 of the schedule is now (or `t0`, monotonic); random losses drawn afresh."""
        self.t0 = now() if t0 is None else float(t0)
        self._rng = np.random.default_rng(self.seed)
        self._losses = sorted((self.t0 + at, self.t0 + at + duration) for at, duration in self.schedule)
        self._random_until = self.t0

    # -- losses ------------------------------------------------------------------------------
    def lose_beam(self, duration_s=None, after_s=0.0):
        """Trip a beam loss by hand: the current is 0 from now (+ after_s) for duration_s."""
        duration = self.loss_duration_s if duration_s is None else float(duration_s)
        if not duration > 0 or not math.isfinite(duration) or not after_s >= 0:
            raise ValueError(f"{self.name}: lose_beam needs a duration > 0 and after_s >= 0, got {duration_s!r}, "
                             f"{after_s!r}")
        start = now() + float(after_s)
        bisect.insort(self._losses, (start, start + duration))
        return start

    def _draw_random(self, t):
        """Random losses (mtbf_s) up to time t, drawn once, in order."""
        while self.mtbf_s and self._random_until <= t:
            start = self._random_until + self._rng.exponential(self.mtbf_s)
            duration = max(0.1, self._rng.exponential(self.loss_duration_s))
            bisect.insort(self._losses, (start, start + duration))
            self._random_until = start + duration

    def _last_loss(self, t):
        """(start, end) of the last loss starting at or before t, or None."""
        self._draw_random(t)
        k = bisect.bisect_right(self._losses, (t, math.inf))
        if k == 0:
            return None
        return max(self._losses[:k], key=lambda loss: loss[1])  # overlapping losses: the one ending last

    # -- the current -------------------------------------------------------------------------
    def current_at(self, t=None):
        """The ring current (mA) at monotonic time t (default now)."""
        t = now() if t is None else float(t)
        if t < self.t0:
            return self.nominal  # before the ring was simulated: as filled (never above nominal)
        loss = self._last_loss(t)
        refilled = self.t0
        if loss is not None:
            start, end = loss
            if t < end:
                return 0.0
            if t < end + self.refill_s:
                return self.nominal * (t - end) / self.refill_s
            refilled = end + self.refill_s
        if self.refill_every_s:
            refilled += ((t - refilled) // self.refill_every_s) * self.refill_every_s
        return self.nominal * math.exp(-(t - refilled) / self.lifetime_s) if self.lifetime_s else self.nominal

    @property
    def current(self):
        return self.current_at()

    def beam_fraction_at(self, t):
        """Current / nominal current at time t: what the monitors and the flux are scaled by."""
        return self.current_at(t) / self.nominal

    @property
    def beam_lost(self):
        return self.current_at() <= 0.0

    def config_children(self):
        return dict(self.counters)

    def __info__(self):
        losses = "random, mean every {:g} s".format(self.mtbf_s) if self.mtbf_s else f"{len(self.schedule)} scheduled"
        lifetime = "top-up" if not self.lifetime_s else f"lifetime {self.lifetime_s / 3600:g} h"
        return (f"Storage ring {self.name}: {self.current:.2f} mA (nominal {self.nominal:g} mA, {lifetime}); "
                f"beam losses: {losses}")

    def __repr__(self):
        return f"<StorageRing {self.name} {self.current:.1f} mA>"


class RingCurrent(SamplingCounter):
    """The ring's current monitor as a sampling counter (controllers/counters/kinds.py): the
    current (mA) sampled over the count time, reduced by its mode (MEAN by default)."""

    controller_name = "ring"

    def __init__(self, name, ring, mode=SamplingMode.MEAN):
        super().__init__(name, "mA", mode)
        self.ring = ring

    def samples(self, n, count_time):
        end = now()
        start = max(end - count_time, min(self.ring.t0, end))  # nothing sampled before the ring began
        return [self.ring.current_at(t) for t in np.linspace(start, end, n)]

    def __info__(self):
        return f"Ring current monitor {self.name} (sampling, {self.mode}): {self.ring.current:.2f} mA"


def _optional_positive(value):
    return None if value > 0 else "must be > 0"


RING_FIELDS = (
    Field("current", "number", 200.0, check=positive),
    Field("lifetime_h", "number", None, check=_optional_positive),
    Field("refill_every_s", "number", None, check=_optional_positive),
    Field("refill_s", "number", 0.0, check=non_negative),
    Field("beam_losses", "list", []),
    Field("mtbf_s", "number", None, check=_optional_positive),
    Field("loss_duration_s", "number", 20.0, check=positive),
    Field("seed", "int", 0, check=non_negative),
    Field("counters", "list", []),
)


def _losses(node, what, items):
    """`beam_losses: [{at_s: 30, duration_s: 20}, ...]`, checked with file and line."""
    losses = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{where(node, 'beam_losses')}: {what}: beam_losses item {number} must be a mapping "
                              f"{{at_s, duration_s}}, got {shown(item)}")
        values = read_fields(item, (Field("at_s", "number", check=non_negative),
                                    Field("duration_s", "number", check=positive)), f"{what}: beam loss {number}")
        losses.append((values["at_s"], values["duration_s"]))
    return losses


def create(name, node, config):
    what = f"storage ring '{name}'"
    values = read_fields(node, RING_FIELDS, what)
    counters = values.pop("counters")
    values["beam_losses"] = _losses(node, what, values["beam_losses"])
    ring = StorageRing(name, **values)
    for number, item in enumerate(counters, 1):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where(node, 'counters')}: {what}: counters item {number} must be a mapping with a "
                              f"'name', got {shown(item)}")
        options = read_fields(item, (Field("mode", "str", SamplingMode.MEAN.value, check=mode_complaint),),
                              f"{what}: counter {item['name']!r}")
        ring.counters[item["name"]] = RingCurrent(item["name"], ring, options["mode"])
    return ring
