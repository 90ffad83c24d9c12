"""Phase maps by full-pattern decomposition: every voxel's reconstructed pattern (nq,) as a
non-negative sum of the phases' reference patterns, an amorphous component and a smooth
background, solved for all voxels at once (nnls.py), on the CPU or the GPU.

A window of q bins per phase (phase_maps.py, the "roi" method) is underdetermined where a phase
has no isolated peak (Si's reflections all sit on CeO2's) and leaves ghosts of the others; the
whole pattern is not. What the fit cannot explain is kept too: the RMS residual per voxel, a map
of where an unknown phase (or a wrong reference) is.

Units: a phase's map is in units of its reference (peak area 1 per reflection of intensity 1)
until a standard of that phase, of known thickness, has been measured (`standards`); its
reference is then scaled so that the map is the phase's volume fraction (units "1"). The
standard's pattern is taken per I0 count and per transmission, as the scan's patterns are, and
scaled by the scan's I0 reference.

Phase specifications ({name: spec}): a pyFAI calibrant name; {"calibrant" or "d_spacings",
"intensities"} (computed through the peak profile); {"pattern": {"q", "intensity"}} or
{"scan": {"filename", "entry"}} (measured); {"humps": [[q, fwhm, height], ...]} (amorphous, by
hand); None or {"amorphous": true}: amorphous, the smooth part of the scan's summed pattern.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bliss_lite.processing import references as refs
from bliss_lite.processing.nnls import nnls, nnls_normal

ROWS = 8192  # voxels per block when summing squares (bounded temporaries)
RESIDUAL = "residual"


@dataclass
class PhaseModel:
    """The components on the reduction's q axis: design (nq, k), phases first, then background."""

    q: np.ndarray
    names: list
    design: np.ndarray
    units: dict
    sources: dict
    profile: refs.PeakProfile | None
    background: int
    scales: dict = field(default_factory=dict)  # phase -> reference scale from its standard

    @property
    def phase_count(self):
        return len(self.names)

    def decompose(self, volume):
        """({phase: map (...)} float32 on the host, RMS residual (...) float32) of a volume
        (..., nq), NumPy or CuPy (solved where it is)."""
        from bliss_lite.processing.gpu import on_device, to_host

        xp = np
        if on_device(volume):
            import cupy as xp
        shape = volume.shape[:-1]
        nq = self.design.shape[0]
        if volume.shape[-1] != nq:
            raise ValueError(f"volume has {volume.shape[-1]} q bins, the phase model {nq}")
        norms = np.linalg.norm(self.design, axis=0)
        norms[norms == 0] = 1.0  # a phase with no reflection in the q range: its map is 0
        unit = self.design / norms
        y = xp.asarray(volume, dtype=np.float32).reshape(-1, nq)
        a = xp.asarray(unit, dtype=np.float32)
        b = (y @ a).T.astype(np.float64)  # (k, voxels): the one pass over the volume that matters
        gram = xp.asarray(unit.T @ unit)
        x = nnls_normal(gram, b, xp)
        squares = xp.concatenate([xp.einsum("ij,ij->i", y[i:i + ROWS].astype(np.float64), y[i:i + ROWS].astype(np.float64))
                                  for i in range(0, y.shape[0], ROWS)]) if y.shape[0] else xp.zeros(0)
        rss = squares - 2 * (x * b).sum(axis=0) + (x * (gram @ x)).sum(axis=0)
        residual = xp.sqrt(xp.maximum(rss, 0.0) / nq).astype(np.float32).reshape(shape)
        coefficients = x[:self.phase_count] / xp.asarray(norms[:self.phase_count])[:, None]
        coefficients = to_host(coefficients.astype(np.float32))
        maps = {name: coefficients[i].reshape(shape) for i, name in enumerate(self.names)}
        return maps, to_host(residual)

    def to_dict(self):
        """What the NXprocess configuration records of the model."""
        return {"method": "decomposition", "components": list(self.names) + [f"background_{i}" for i in
                                                                           range(self.background + 1)],
                "units": self.units, "sources": self.sources, "standard_scales": self.scales,
                "profile": None if self.profile is None else self.profile.to_dict(), "background_degree": self.background}


def is_amorphous(spec):
    return spec is None or (isinstance(spec, dict) and (spec.get("amorphous") or "humps" in spec))


def is_computed(spec):
    return isinstance(spec, str) or (isinstance(spec, dict) and ("calibrant" in spec or "d_spacings" in spec))


def check_phases(phases):
    """Refuse a phase specification that no reference can be made from (before anything moves)."""
    for name, spec in phases.items():
        if spec is None or isinstance(spec, str):
            continue
        if not isinstance(spec, dict):
            raise ValueError(f"phase {name!r}: give a pyFAI calibrant name, None (amorphous) or a mapping, got {spec!r}")
        kinds = [k for k in ("calibrant", "d_spacings", "pattern", "scan", "humps", "amorphous") if k in spec]
        if len(kinds) != 1:
            raise ValueError(f"phase {name!r}: give exactly one of calibrant, d_spacings, pattern, scan, humps, "
                             f"amorphous; got {sorted(spec)}")


def needs_data(phases, profile):
    """Whether the model needs the scan's summed pattern (an amorphous phase from the data, or a
    profile to measure)."""
    computed = any(is_computed(s) for s in phases.values())
    return any(s is None or (isinstance(s, dict) and s.get("amorphous")) for s in phases.values()) or (
        computed and profile is None)


def build_model(phases, q, summed=None, profile=None, background="auto", standards=None, reference_i0=1.0):
    """The PhaseModel of `phases` ({name: spec}) on q (nm^-1). `summed`: the scan's summed
    pattern (what the profile is measured from when none is given, and the amorphous part taken
    from); `background`: the degree of the smooth background, -1 for none, "auto" for none
    where an amorphous phase is mapped (over a short q range a smooth background and an
    amorphous hump are the same thing, and the fit could not tell them apart), else 1;
    `standards` {phase: {"pattern" or "scan", "thickness_mm"}}."""
    q = np.asarray(q, float)
    check_phases(phases)
    if background == "auto":
        background = -1 if any(is_amorphous(s) for s in phases.values()) else 1
    crystalline = {n: s for n, s in phases.items() if is_computed(s)}
    sources = {}
    if crystalline and profile is None:
        if summed is None:
            raise ValueError("decomposition: no peak profile given and no pattern to measure it from")
        specs = {n: (s if isinstance(s, str) else {k: v for k, v in s.items()}) for n, s in crystalline.items()}
        from bliss_lite.processing.peak_width import measure_profile

        profile = measure_profile(q, summed, specs, source="the scan's summed pattern")
    columns = {}
    for name, spec in phases.items():
        if is_computed(spec):
            columns[name], sources[name] = refs.computed_pattern(q, spec, profile), "computed"
        elif isinstance(spec, dict) and "humps" in spec:
            columns[name], sources[name] = refs.humps_pattern(q, spec["humps"]), "humps"
        elif isinstance(spec, dict) and ("pattern" in spec or "scan" in spec):
            columns[name], sources[name] = _measured(q, spec), "measured"
    for name in phases:
        if name not in columns:  # amorphous from the data, once the crystalline ones are known
            if summed is None:
                raise ValueError(f"decomposition: {name} (amorphous) needs a pattern, humps, or the summed pattern")
            known = np.column_stack([columns[n] for n in columns]) if columns else np.zeros((q.size, 0))
            columns[name], sources[name] = refs.smooth_component(q, summed, known, profile or refs.PeakProfile(
                (8 * float(np.median(np.diff(q))),))), "summed pattern"
    names = list(phases)
    units = {n: "a.u." for n in names}
    scales = {}
    for name, standard in (standards or {}).items():
        if name not in columns:
            raise ValueError(f"standards: {name!r} is not one of the phases ({', '.join(names)})")
        scales[name] = standard_scale(q, columns[name], standard, background, reference_i0)
        columns[name] = columns[name] * scales[name]
        units[name] = "1"
    design = np.column_stack([columns[n] for n in names] + [refs.bernstein(q, background)])
    return PhaseModel(q, names, design, units, sources, profile, background, scales)


def standard_scale(q, column, standard, background, reference_i0):
    """The factor that makes a phase's reference the pattern of a volume fraction of 1: the
    standard's pattern (per I0 count, per transmission) fitted by the reference and a background,
    divided by its thickness (mm) and times the scan's I0 reference."""
    thickness = float(standard.get("thickness_mm", 0))
    if not thickness > 0:
        raise ValueError(f"standard: thickness_mm must be > 0, got {standard.get('thickness_mm')!r}")
    pattern = _measured(q, standard)
    design = np.column_stack([column, refs.bernstein(q, background)])
    norms = np.linalg.norm(design, axis=0)
    amplitude = nnls(design / norms, pattern[None, :])[0][0] / norms[0]
    if not amplitude > 0:
        raise ValueError("standard: its pattern shows none of the phase's reference")
    return float(amplitude * reference_i0 / thickness)


def _measured(q, spec):
    if "scan" in spec:
        q_measured, intensity = scan_pattern(spec["scan"]["filename"], spec["scan"]["entry"])
    else:
        pattern = spec["pattern"]
        q_measured, intensity = (pattern["q"], pattern["intensity"]) if isinstance(pattern, dict) else pattern
    return refs.measured_pattern(q, q_measured, intensity)


def scan_pattern(filename, entry):
    """(q, mean pattern per I0 count and per transmission) of an integrated scan entry: the
    pattern of a pure phase or of a standard, normalised as the XRD-CT patterns are."""
    from bliss_lite.data.safe_open import open_hdf5

    with open_hdf5(filename) as h5:
        results = h5[f"{entry}/integrate/results"]
        q = results[results.attrs["axes"][-1]][()]
        intensity = results["intensity"][()].astype(np.float64)
        measurement = h5[f"{entry}/measurement"]
        it = measurement["it"][:intensity.shape[0]] if "it" in measurement else measurement["i0"][:intensity.shape[0]]
    return q, (intensity / np.asarray(it, float)[:, None]).mean(axis=0)
