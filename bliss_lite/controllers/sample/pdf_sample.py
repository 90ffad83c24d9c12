"""The simulated PDF-CT sample: phases with atomic structure, their total scattering from the
Debye equation, in a phantom on the omega/x/z stages, seen by the Pilatus through a
total-scattering geometry (high energy, short distance: Q to ~33 1/A).

Each phase's pattern (coherent + Compton per atom, times its atoms per volume) is computed once
per process on a Q grid (debye.py, cached), then rendered into detector images through the
PONI geometry with solid angle and polarisation, as the XRD-CT sample does (diffraction.py).
Air scatters into every frame (N2 and O2 dimers over AIR_PATH_MM); the specimen can be changed
(`sample.specimen = "capillary"`, "empty_capillary", "air") for static measurements: a
glass capillary (1.0 mm, 0.1 mm wall) of a loose CeO2 powder, the same capillary empty, nothing.

`description()` records, for the reduction, each phase's composition and its reference G(r)
computed from its atom positions (the reduction never imports this module).
"""
from __future__ import annotations

import functools

import numpy as np

from bliss_lite.controllers.sample import debye, structures
from bliss_lite.controllers.sample.diffraction import DiffractionModel
from bliss_lite.controllers.sample.phantom import EllipticCylinder, Phantom
from bliss_lite.controllers.sample.xrdct_sample import XrdctSample

Q_GRID = np.linspace(0.05, 36.0, 3000)  # 1/A: patterns computed here, interpolated per pixel
R_REFERENCE = np.round(np.arange(0.0, 30.0 + 1e-9, 0.01), 4)  # A: the recorded reference G(r)
AIR_PATH_MM = 100.0  # air the beam crosses, seen by the detector
AIR_DENSITY = 5.0e-5  # atoms / A^3 at 1 atm
SPECIMENS = ("pdfct", "capillary", "empty_capillary", "air")

# phase: (structure factory, packing fraction, bulk density g/cm^3 for the attenuation)
PHASES = {
    "SiO2_glass": (structures.silica_glass, 1.0, 2.2),
    "Ni_nano": (structures.fcc_particle, 0.5, 8.9),
    "CeO2": (structures.fluorite_crystal, 0.5, 7.22),
    "CeO2_powder": (structures.fluorite_crystal, 0.1, 7.22),  # a loose powder, in the capillary
    "capillary": (structures.silica_glass, 1.0, 2.2),  # the container: a glass capillary
}


@functools.lru_cache(maxsize=None)
def _built(factory):
    st = factory()
    return st, debye.pair_histograms(st)


def structure(phase):
    return _built(PHASES[phase][0])[0]


def _histograms(phase):
    return _built(PHASES[phase][0])[1]


@functools.lru_cache(maxsize=None)
def _per_atom(factory):
    st, hist = _built(factory)
    return np.maximum(debye.total_intensity(st, Q_GRID, hist), 0.0)  # a bulk's truncation: < 0 below Q ~ 0.1


def phase_pattern(phase):
    """Total scattering per A of path (electron units / A^3) of the phase on Q_GRID."""
    factory, packing, _ = PHASES[phase]
    return packing * structure(phase).number_density * _per_atom(factory)


@functools.lru_cache(maxsize=None)
def reference_gr(phase):
    """The phase's G(r) on R_REFERENCE from its atom positions (1/A^2)."""
    return debye.reference_gr(structure(phase), R_REFERENCE, _histograms(phase))


@functools.lru_cache(maxsize=None)
def air_pattern():
    """Air's scattering per A of path: 79 % N2, 21 % O2 molecules (dimers)."""
    total = np.zeros_like(Q_GRID)
    for share, element, bond in ((0.79, "N", 1.098), (0.21, "O", 1.208)):
        total += share * AIR_DENSITY * debye.total_intensity(structures.dimer(element, bond), Q_GRID)
    return total


def attenuation(phase, energy_kev):
    """Linear attenuation (1/mm) of the phase as packed, from xraydb."""
    import xraydb

    _, packing, density = PHASES[phase]
    return packing * float(xraydb.material_mu(structure(phase).formula, energy_kev * 1e3, density=density)) / 10.0


def phantom(specimen, energy_kev):
    """The phases and their shapes for a specimen (mm, as phantom.py)."""
    from bliss_lite.controllers.sample.phantom import Phase

    def phase(name, *shapes):
        return Phase(name, tuple(shapes), mu=attenuation(name, energy_kev))

    if specimen == "pdfct":  # three pure regions: a glass rod, a Ni nanopowder and a CeO2 powder
        return Phantom([
            phase("SiO2_glass", EllipticCylinder(-0.35, 0.05, 0.42, 0.55)),
            phase("Ni_nano", EllipticCylinder(0.4, 0.4, 0.3, 0.25, angle=20)),
            phase("CeO2", EllipticCylinder(0.35, -0.45, 0.28, 0.22, angle=-30, z_min=-0.5)),
        ], radius=1.0)
    capillary = [EllipticCylinder(0.0, 0.0, 0.5, 0.5), EllipticCylinder(0.0, 0.0, 0.4, 0.4, density=-1.0)]
    if specimen == "capillary":
        return Phantom([phase("CeO2_powder", EllipticCylinder(0.0, 0.0, 0.4, 0.4)), phase("capillary", *capillary)],
                       radius=1.0)
    if specimen == "empty_capillary":
        return Phantom([phase("capillary", *capillary)], radius=1.0)
    return Phantom([], radius=1.0)


class TotalScatteringModel(DiffractionModel):
    """DiffractionModel with the phases' Debye patterns (one intensity scale for all, so that
    their relative scattering is physical) and air in every frame."""

    def __init__(self, phantom, geometry, roi, flux=2.0e5, seed=None):
        from bliss_lite.controllers.detectors.pilatus_geometry import gap_mask

        self.phantom, self.roi, self.flux = phantom, roi, flux
        self.mask = gap_mask(roi)
        q_nm = geometry.array_from_unit(unit="q_nm^-1")[roi.slices]
        correction = (geometry.solidAngleArray() * geometry.polarization(factor=0.99))[roi.slices]
        self.q = q_nm
        q = q_nm / 10.0  # 1/A
        wide = Q_GRID > 1.0  # not a nanoparticle's small-angle scattering
        norm = max(float(phase_pattern(p)[wide].max()) for p in ("SiO2_glass", "Ni_nano", "CeO2"))  # per A of path
        self.images = {}
        for p in phantom.phases:
            image = np.interp(q, Q_GRID, phase_pattern(p.name)) / norm * correction
            image[self.mask] = 0.0
            self.images[p.name] = image.astype(np.float32)
        air = np.interp(q, Q_GRID, air_pattern()) / norm * correction * AIR_PATH_MM
        air[self.mask] = 0.0
        self.air = air.astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def expected(self, x, omega, z, exposure):
        image, transmission, lengths = super().expected(x, omega, z, exposure)
        image += self.air * np.float32(self.flux * exposure)
        return image, transmission, lengths


class PdfctSample(XrdctSample):
    """The XRD-CT sample's stages, monitors and detector interface with the PDF-CT phantom."""

    def __init__(self, *args, specimen="pdfct", **kwargs):
        super().__init__(*args, **kwargs)
        self._specimen = None
        self.specimen = specimen

    @property
    def energy_kev(self):
        return 12.398419843320026 / (self.geometry.wavelength * 1e10)

    @property
    def specimen(self):
        return self._specimen

    @specimen.setter
    def specimen(self, value):
        if value not in SPECIMENS:
            raise ValueError(f"{self.name}: specimen must be one of {', '.join(SPECIMENS)}, got {value!r}")
        self._specimen = value
        self.phantom = phantom(value, self.energy_kev)
        self._models.clear()

    def model(self, roi):
        if roi not in self._models:
            self._models[roi] = TotalScatteringModel(self.phantom, self.geometry, roi, self.flux, self.seed)
        return self._models[roi]

    def description(self):
        """The phases for the reconstruction's own maps (one amorphous 'total' component) and,
        for the PDF reduction, each phase's composition and reference G(r)."""
        names = self.phantom.names
        return {"name": self.name, "simulated": True, "specimen": self.specimen, "phases": {"total": None},
                "poni": str(self.poni),
                "pdf": {"composition": _mean_composition(names),
                        "phases": {p: {"composition": structure(p).formula, "r_A": R_REFERENCE.tolist(),
                                       "G": np.round(reference_gr(p), 5).tolist(),
                                       "first_peak_A": float(structure(p).notes["first_peak_A"])} for p in names}}}

    def __info__(self):
        return (f"Simulated PDF-CT sample {self.name}: specimen {self.specimen} ({', '.join(self.phantom.names) or 'air'}), "
                f"{self.energy_kev:.1f} keV; stages {self.omega.name}, {self.x.name}, {self.z.name}; "
                f"geometry {self.poni.name}")


def _mean_composition(names):
    """One composition for the whole object (PDF-CT reduces every voxel with it): atoms of the
    phases in proportion to their atoms per volume."""
    total = {}
    for p in names:
        st = structure(p)
        comp = st.composition
        n = sum(comp.values())
        for element, count in comp.items():
            total[element] = total.get(element, 0.0) + PHASES[p][1] * st.number_density * count / n
    return {e: round(v / sum(total.values()), 6) for e, v in total.items()} or None


def create(name, node, config):
    from bliss_lite.config.errors import ConfigError, where
    from bliss_lite.controllers.sample.xrdct_sample import create as create_xrdct

    for key in ("phantom", "phantom_radius"):  # the XRD-CT sample's geometries: not this sample's
        if key in node:
            raise ConfigError(f"{where(node, key)}: sample '{name}': a pdfct_sample has no key '{key}' (what is in "
                              "the beam is its specimen, chosen at run time)")
    base = create_xrdct(name, node, config)
    return PdfctSample(name, base.omega, base.x, base.z, base.poni, base.flux, base.monitor_rate, base.seed, base.ring)
