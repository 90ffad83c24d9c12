"""The simulated sample on the omega/x/z stages: what the detector and the monitors see.

Reads where the stages were at a given time (the analytic profile of the mockup), and gives
the diffraction frame (via DiffractionModel, one per detector ROI, built on first use) and
the beam monitors: I0 (incident, Poisson) and `it` (I0 times the sample's transmission).
With a storage `ring` (controllers/storage_ring.py) the flux and the monitors follow its
current: during a beam loss the monitors read ~0 and the frames hold no diffraction.
`phantom.phase_map(...)` is the ground truth for reconstructions. Which phantom (the demo's, or
another geometry: phantom.PHANTOMS) and its size come from the YAML (`phantom`, `phantom_radius`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, non_negative, one_of, positive, read_fields
from bliss_lite.controllers.sample.diffraction import PEAK_FWHM_Q, DiffractionModel, load_geometry
from bliss_lite.controllers.sample.phantom import PHANTOMS, default_phantom, make_phantom


class XrdctSample:
    def __init__(self, name, omega, x, z, poni, flux=2.0e5, monitor_rate=1.0e6, seed=None, ring=None, phantom=None):
        self.name = name
        self.ring = ring  # a StorageRing, or None: a beam that never fails
        self.omega, self.x, self.z = omega, x, z
        self.poni = Path(poni)
        self.flux = flux
        self.monitor_rate = monitor_rate  # I0 counts per second
        self.seed = seed  # None: noise seeded afresh in every process (YAML `seed:` makes it repeat)
        self.phantom = phantom if phantom is not None else default_phantom()
        self._geometry = None
        self._models = {}
        self._rng = np.random.default_rng(None if seed is None else seed + 1)

    def reseed(self, seed):
        """Fix the noise from now on (frames and monitors), as `seed:` in the YAML does: two
        samples reseeded alike render the same frames."""
        self.seed = seed
        self._rng = np.random.default_rng(None if seed is None else seed + 1)
        self._models.clear()

    @property
    def geometry(self):
        if self._geometry is None:
            self._geometry = load_geometry(self.poni)
        return self._geometry

    def model(self, roi):
        if roi not in self._models:
            self._models[roi] = DiffractionModel(self.phantom, self.geometry, roi, self.flux, self.seed)
        return self._models[roi]

    def beam_at(self, t):
        """(x, omega, z) of the stages at monotonic time t."""
        return self.x.position_at(t), self.omega.position_at(t), self.z.position_at(t)

    def beam_fraction_at(self, t):
        """The beam's intensity at time t relative to the nominal (1 without a ring)."""
        return 1.0 if self.ring is None else self.ring.beam_fraction_at(t)

    def frame_at(self, t, exposure, roi):
        x, omega, z = self.beam_at(t)
        return self.model(roi).frame(x, omega, z, exposure * self.beam_fraction_at(t))

    def monitors_at(self, t, exposure):
        """(I0, it) counts over `exposure` around time t."""
        x, omega, z = self.beam_at(t)
        lengths = self.phantom.path_lengths(x, omega, z)
        transmission = float(self.phantom.transmission(lengths))
        i0 = float(self._rng.poisson(self.monitor_rate * exposure * self.beam_fraction_at(t)))
        return i0, float(self._rng.poisson(i0 * transmission))

    def description(self):
        """What a scan records of its sample (scan_info["sample"]): reduction takes the phases to
        map, and their peak width, from the scan's data, never from this simulator's code;
        `phantom` records the geometry (kind, radius, shapes) the ground truth comes from."""
        return {"name": self.name, "simulated": True,
                "phases": {p.name: p.calibrant for p in self.phantom.phases},
                "peak_fwhm": PEAK_FWHM_Q, "peak_fwhm_unit": "nm^-1", "poni": str(self.poni),
                "stages": self.stages(), "phantom": self.phantom.describe()}

    def stages(self):
        """How the sample is mounted, sample side first (NeXus axes: z along the beam, y up): it
        sits on the rotation omega (about y), on the translation x (across the beam), on z (up)."""
        return [{"axis": self.omega.name, "type": "rotation", "vector": [0, 1, 0]},
                {"axis": self.x.name, "type": "translation", "vector": [1, 0, 0]},
                {"axis": self.z.name, "type": "translation", "vector": [0, 1, 0]}]

    def __info__(self):
        kind = f"{self.phantom.kind} phantom: " if self.phantom.kind else ""
        return (f"Simulated XRD-CT sample {self.name}: {kind}phases {', '.join(self.phantom.names)} within "
                f"{self.phantom.radius:g} mm of the axis; stages {self.omega.name}, {self.x.name}, {self.z.name}; "
                f"geometry {self.poni.name}")


class SampleMonitor:
    """A beam monitor in front of (`i0`) or behind (`it`) the sample: counts over the count
    time, `it` attenuated by the sample where the stages are now."""

    controller_name = "sample"
    counter_kind = "integrating"  # counts over the count time (controllers/counters/kinds.py)
    nexus_class = "NXmonitor"  # a beam monitor, not a detector, in the file
    shape = ()
    dtype = "float64"
    unit = "counts"

    def __init__(self, name, sample, kind):
        self.name, self.sample, self.kind = name, sample, kind

    @property
    def fullname(self):
        return f"{self.controller_name}:{self.name}"

    def read(self, count_time=1.0):
        i0, it = self.sample.monitors_at(time.monotonic(), count_time)
        return i0 if self.kind == "i0" else it

    def __info__(self):
        where = "in front of" if self.kind == "i0" else "behind"
        return f"Beam monitor {self.name}: {where} sample {self.sample.name}"

    def __repr__(self):
        return f"<Counter {self.fullname}>"


def create_monitor(name, node, config):
    values = read_fields(node, (Field("sample", "ref"), Field("kind", "str", check=one_of("i0", "it"))),
                         f"monitor '{name}'")
    sample = config.resolve(values["sample"])
    if not isinstance(sample, XrdctSample):
        raise ConfigError(f"{where(node, 'sample')}: monitor '{name}': {values['sample']} is not an xrdct_sample")
    return SampleMonitor(name, sample, values["kind"])


SAMPLE_FIELDS = (
    Field("omega", "ref"), Field("x", "ref"), Field("z", "ref"),
    Field("poni", "str"),
    Field("flux", "number", 2.0e5, check=positive),
    Field("monitor_rate", "number", 1.0e6, check=positive),
    Field("seed", "int", None, check=non_negative),
    Field("ring", "ref", None),
    Field("phantom", "str", "default", check=one_of(*PHANTOMS)),
    Field("phantom_radius", "number", None, check=positive),  # mm; none: the phantom's own
)


def create(name, node, config):
    values = read_fields(node, SAMPLE_FIELDS, f"sample '{name}'")
    axes = {}
    for key in ("omega", "x", "z"):
        axis = config.resolve(values[key])
        if not hasattr(axis, "position_at"):
            raise ConfigError(f"{where(node, key)}: sample '{name}': {values[key]} is not an axis")
        axes[key] = axis
    poni = config.file_beside(node, values["poni"])
    if not poni.is_file():
        raise ConfigError(f"{where(node, 'poni')}: sample '{name}': PONI file {values['poni']} not found (looked at {poni})")
    ring = config.resolve(values["ring"]) if values["ring"] is not None else None
    if ring is not None and not hasattr(ring, "beam_fraction_at"):
        raise ConfigError(f"{where(node, 'ring')}: sample '{name}': {values['ring']} is not a storage ring")
    phantom = make_phantom(values["phantom"], values["phantom_radius"])
    return XrdctSample(name, axes["omega"], axes["x"], axes["z"], poni, values["flux"], values["monitor_rate"],
                       values["seed"], ring, phantom)
