"""Reference patterns of the phases on the reduction's q axis, and the instrument's peak profile.

Full-pattern decomposition (decomposition.py) needs, for every phase, its pattern as this
instrument records it. Two sources, both outside the simulator:

- computed: the phase's reflections (a pyFAI calibrant name, or d-spacings in Angstrom with
  their integrated intensities) drawn through the instrument's peak profile: Gaussians whose
  FWHM(q) is `PeakProfile`, measured from a calibrant (`peak_width.measure_profile`: a
  calibrant scan's summed pattern, or the scan's own summed pattern at the isolated
  reflections of its crystalline phases), or given in the configuration;
- measured: a pattern of the pure phase (q and intensity arrays, or a scan of it), taken as it
  is. The amorphous component is a measured pattern, broad humps given in the configuration,
  or, given neither, the smooth part of the scan's own summed pattern once the crystalline
  references are fitted out (`smooth_component`).

q in nm^-1 throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bliss_lite.processing.nnls import nnls

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class PeakProfile:
    """The instrument's Gaussian peak width: FWHM(q) = np.polyval(fwhm, q), nm^-1."""

    fwhm: tuple
    source: str = "configuration"

    def width(self, q):
        return np.maximum(np.polyval(self.fwhm, np.asarray(q, float)), 1e-6)

    def to_dict(self):
        return {"fwhm": [float(c) for c in self.fwhm], "unit": "nm^-1", "source": self.source}


def profile_of(option):
    """A PeakProfile from an option: a number (constant FWHM, nm^-1), a list of polynomial
    coefficients (highest power first), a dict {fwhm, source}, or a PeakProfile."""
    if option is None or isinstance(option, PeakProfile):
        return option
    if isinstance(option, dict):
        if option.get("unit", "nm^-1") != "nm^-1":
            raise ValueError(f"profile: unit must be nm^-1, got {option['unit']!r}")
        return PeakProfile(tuple(np.atleast_1d(np.asarray(option["fwhm"], float))),
                           option.get("source", "configuration"))
    values = np.atleast_1d(np.asarray(option, float))
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"profile: FWHM must be a number or polynomial coefficients in nm^-1, got {option!r}")
    return PeakProfile(tuple(values))


def reflections(spec, q_max):
    """(q nm^-1, integrated intensity) of a phase's reflections below q_max. spec: a pyFAI
    calibrant name, or {"calibrant"| "d_spacings": [...], "intensities": [...]}. Without
    intensities each reflection gets (d / d_max)^2, a form factor falling with q."""
    if isinstance(spec, str):
        spec = {"calibrant": spec}
    if "d_spacings" in spec:
        d = np.asarray(spec["d_spacings"], float)
    else:
        from pyFAI.calibrant import get_calibrant

        d = np.asarray(get_calibrant(spec["calibrant"]).dspacing, float)  # Angstrom
    intensities = spec.get("intensities")
    weights = (d / d.max()) ** 2 if intensities is None else np.asarray(intensities, float)
    if weights.shape != d.shape:
        raise ValueError(f"{d.size} d-spacings but {weights.size} intensities")
    q = 20 * np.pi / d
    keep = q <= q_max
    return q[keep], weights[keep]


def computed_pattern(q, spec, profile):
    """The phase's pattern on q: each reflection a Gaussian of the profile's width and unit area
    times its intensity."""
    q = np.asarray(q, float)
    centres, weights = reflections(spec, q.max() + 2 * float(profile.width(q.max())))
    sigma = profile.width(centres) * FWHM_TO_SIGMA
    pattern = np.zeros_like(q)
    for c, w, s in zip(centres, weights, sigma):
        near = np.abs(q - c) < 8 * s
        pattern[near] += w * np.exp(-0.5 * ((q[near] - c) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    return pattern


def humps_pattern(q, humps):
    """Broad Gaussian humps [(q, fwhm, height), ...]: an amorphous component given by hand."""
    q = np.asarray(q, float)
    return sum(h * np.exp(-0.5 * ((q - c) / (w * FWHM_TO_SIGMA)) ** 2) for c, w, h in humps)


def measured_pattern(q, q_measured, intensity):
    """A measured pattern interpolated onto q (zero outside its range)."""
    return np.interp(np.asarray(q, float), np.asarray(q_measured, float), np.asarray(intensity, float),
                     left=0.0, right=0.0)


def bernstein(q, degree):
    """(nq, degree + 1) non-negative smooth basis over q's range: with non-negative weights, any
    non-negative polynomial background of that degree near enough (degree -1: none)."""
    from math import comb

    if degree < 0:
        return np.zeros((np.size(q), 0))
    t = (np.asarray(q, float) - q[0]) / (q[-1] - q[0])
    return np.column_stack([comb(degree, i) * t**i * (1 - t) ** (degree - i) for i in range(degree + 1)])


def bsplines(q, spacing):
    """(nq, m) cubic B-splines with knots `spacing` apart over q's range (non-negative)."""
    from scipy.interpolate import BSpline

    q = np.asarray(q, float)
    inner = np.linspace(q[0], q[-1], max(2, int(np.ceil((q[-1] - q[0]) / spacing)) + 1))
    step = inner[1] - inner[0]
    knots = np.r_[inner[0] - 3 * step, inner[0] - 2 * step, inner[0] - step, inner,
                  inner[-1] + step, inner[-1] + 2 * step, inner[-1] + 3 * step]
    return BSpline.design_matrix(q, knots, 3, extrapolate=True).toarray()


def smooth_component(q, summed, crystalline, profile):
    """The amorphous pattern as the smooth part of a summed pattern (nq,) once the crystalline
    references (nq, m) are fitted out: B-splines 8 peak widths apart (a peak cannot hide in
    them), fitted with the crystalline columns by NNLS. Normalised to a maximum of 1 (flat where
    the summed pattern has no smooth part)."""
    q = np.asarray(q, float)
    spacing = max(8 * float(np.median(profile.width(q))), 10 * float(np.median(np.diff(q))))
    splines = bsplines(q, spacing)
    cols = np.column_stack([crystalline, splines])
    norms = np.linalg.norm(cols, axis=0)
    norms[norms == 0] = 1.0
    x = nnls(cols / norms, np.asarray(summed, float)[None, :])[0] / norms
    smooth = splines @ x[crystalline.shape[1]:]
    if smooth.max() <= 0:  # the crystalline references explain it all: the amorphous phase reads as a flat level
        return np.ones_like(q)
    return smooth / smooth.max()
