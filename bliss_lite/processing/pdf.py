"""Total scattering I(Q) -> S(Q), F(Q), G(r): the ad-hoc reduction of PDFgetX3 (Juhas, Davis,
Farrow & Billinge, J. Appl. Cryst. 46, 560, 2013), for one pattern or for every voxel at once.

The pattern comes in already integrated with the polarisation and solid-angle corrections
(integrator.py); here, on Q in 1/A:

1. I_m = I - bgscale * I_bg: the measured empty container / air, scaled and subtracted.
2. y = I_m / <f>^2, with <f>, <f^2> and Compton of the composition (data/atomic_scattering.py).
   Faber-Ziman: y = s(Q) [R(Q) + S(Q) - 1] with R = (<f^2> + Compton) / <f>^2 known and s a
   smooth unknown scale (flux, absorption, the number of atoms in the beam).
3. s(Q) is a polynomial (degree min(n, 3)) fitted to y / R over [qmin, qmax] with weights
   Q^2, as errors weigh in F (the oscillations of S - 1 average out; the strong low-Q ones of a
   crystal would pull an unweighted fit); S(Q) = 1 + y / s - R; F(Q) = Q [S(Q) - 1].
4. rpoly: a polynomial of degree n = round(rpoly * qmax / pi) fitted to F and subtracted, which
   removes from G(r) what would lie below r = rpoly, where no pair can be (PDFgetX3's idea: what
   the smooth unknowns leave in F is slow in Q).
5. G(r) = (2 / pi) sum F(Q) sin(Q r) dQ over [qmin, qmax], optionally with Lorch's window.

For many patterns (PDF-CT voxels) steps 2-5 are made linear: s(Q) is fitted once, to the
mean pattern, and each voxel keeps its own amount (a projection onto R removes its R term), so
G = A I for one matrix A (nr x nq): one GEMM for a whole slice, NumPy or CuPy (`xp`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bliss_lite.data.atomic_scattering import averages, parse_composition

UNITS_TO_A = {"q_A^-1": 1.0, "q_nm^-1": 0.1}  # integration units -> Q in 1/A


@dataclass(frozen=True)
class PdfSettings:
    """The reduction's parameters, checked once, each error naming its parameter."""

    composition: object = None  # "SiO2" or {element: count}: required
    qmin: float = 0.8  # 1/A
    qmax: float = 25.0  # 1/A
    rpoly: float = 0.9  # A
    rmin: float = 0.0  # A
    rmax: float = 30.0  # A
    rstep: float = 0.01  # A
    lorch: bool = False
    bgscale: float = 1.0

    def __post_init__(self):
        if self.composition is None or self.composition == "" or self.composition == {}:
            raise ValueError("composition: required (the sample's chemical formula, e.g. 'SiO2'): "
                             "it normalises I(Q) to S(Q)")
        parse_composition(self.composition)
        for name in ("qmin", "qmax", "rpoly", "rmin", "rmax", "rstep", "bgscale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: must be a number, got {value!r}")
        if not 0 <= self.qmin < self.qmax:
            raise ValueError(f"qmin, qmax: need 0 <= qmin < qmax (1/A), got {self.qmin}, {self.qmax}")
        if not 0 < self.rpoly < 5:
            raise ValueError(f"rpoly: must be in (0, 5) A, got {self.rpoly}")
        if not (0 <= self.rmin < self.rmax and 0 < self.rstep <= (self.rmax - self.rmin)):
            raise ValueError(f"rmin, rmax, rstep: need 0 <= rmin < rmax and 0 < rstep, got {self.rmin}, {self.rmax}, "
                             f"{self.rstep}")
        if self.r.size > 100_000:
            raise ValueError(f"rstep: {self.r.size} r points is too many (at most 100000)")
        if self.bgscale < 0:
            raise ValueError(f"bgscale: must be >= 0, got {self.bgscale}")

    @classmethod
    def from_dict(cls, options):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown PDF option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**options)

    def to_dict(self):
        return asdict(self)

    @property
    def r(self):
        return self.rmin + self.rstep * np.arange(int(round((self.rmax - self.rmin) / self.rstep)) + 1)

    @property
    def degree(self):
        """PDFgetX3's polynomial degree: what lies below rpoly in r."""
        return max(1, int(round(self.rpoly * self.qmax / math.pi)))

    def check_range(self, q):
        """Refuse a Q range the measurement does not cover (q in 1/A)."""
        q = np.asarray(q, float)
        if self.qmax > q.max() + 1e-9:
            raise ValueError(f"qmax: {self.qmax} 1/A is beyond the measured range (up to {q.max():.3f} 1/A)")
        if self.qmin < q.min() - 1e-9:
            raise ValueError(f"qmin: {self.qmin} 1/A is below the measured range (from {q.min():.3f} 1/A)")
        if int(((q >= self.qmin) & (q <= self.qmax)).sum()) < 4 * (self.degree + 1):
            raise ValueError(f"qmin, qmax: too few measured points in [{self.qmin}, {self.qmax}] 1/A")


def q_in_inverse_angstrom(radial, unit):
    """The integration's radial axis as Q in 1/A; refuses 2theta (no wavelength here)."""
    if unit not in UNITS_TO_A:
        raise ValueError(f"unit: a PDF needs patterns against q (q_A^-1 or q_nm^-1), got {unit!r}")
    return np.asarray(radial, float) * UNITS_TO_A[unit]


def check_background(q, background_q):
    """Refuse a background measured on another Q axis (another geometry or integration)."""
    bq = np.asarray(background_q, float)
    if bq.shape != np.shape(q) or not np.allclose(bq, q, rtol=1e-6, atol=1e-9):
        raise ValueError(f"background: its Q axis ({bq.size} points, {bq.min():.4g}..{bq.max():.4g} 1/A) is not the "
                         f"sample's ({np.size(q)} points, {np.min(q):.4g}..{np.max(q):.4g} 1/A): measured with another "
                         "geometry or integration")


def _basis(q, degree):
    """Legendre polynomials on [qmin, qmax] (well conditioned where powers of Q are not)."""
    x = 2 * (q - q[0]) / (q[-1] - q[0]) - 1
    return np.polynomial.legendre.legvander(x, degree)


SCALE_DEGREE = 3  # at most, for the smooth scale s(Q)


def smooth_scale(q, y_over_r, degree):
    """s(Q): the Q^2-weighted least-squares polynomial through y / R."""
    b = _basis(q, min(degree, SCALE_DEGREE))
    return b @ np.linalg.lstsq(b * q[:, None], y_over_r * q, rcond=None)[0]


def _remove_polynomial(q, degree):
    """(I - P): subtracts the least-squares polynomial of `degree` (nq x nq)."""
    b = _basis(q, degree)
    return np.eye(q.size) - b @ np.linalg.pinv(b)


def sine_matrix(q, r, lorch=False):
    """(2 / pi) sin(Q r) dQ (nr x nq), trapezoid weights, optionally Lorch's window."""
    dq = np.gradient(q)
    window = np.sinc(q / q[-1]) if lorch else 1.0  # np.sinc(x) = sin(pi x) / (pi x)
    return (2 / np.pi) * np.sin(np.outer(r, q)) * (dq * window)[None, :]


@dataclass
class Reduced:
    q: np.ndarray
    sq: np.ndarray
    fq: np.ndarray
    r: np.ndarray
    gr: np.ndarray


def reduce_pattern(q, intensity, settings, background=None):
    """S(Q), F(Q) and G(r) of one pattern (Q in 1/A). `background`: the empty container / air
    pattern on the same Q axis (subtracted times `settings.bgscale`)."""
    q = np.asarray(q, float)
    settings.check_range(q)
    intensity = np.asarray(intensity, float)
    if intensity.shape != q.shape:
        raise ValueError(f"intensity: {intensity.shape} points for {q.size} Q values")
    if background is not None:
        bq, bi = background
        check_background(q, bq)
        intensity = intensity - settings.bgscale * np.asarray(bi, float)
    sel = (q >= settings.qmin) & (q <= settings.qmax)
    qs, im = q[sel], intensity[sel]
    f_mean, f2_mean, c_mean = averages(settings.composition, qs)
    ratio = (f2_mean + c_mean) / f_mean ** 2
    y = im / f_mean ** 2
    scale = smooth_scale(qs, y / ratio, settings.degree)
    if not np.all(scale > 0):
        raise ValueError("intensity: no positive scattering to normalise in [qmin, qmax] (an empty pattern, or a "
                         "background larger than the sample's)")
    sq = 1 + y / scale - ratio
    fq = _remove_polynomial(qs, settings.degree) @ (qs * (sq - 1))
    r = settings.r
    gr = sine_matrix(qs, r, settings.lorch) @ fq
    return Reduced(qs, 1 + fq / qs, fq, r, gr)


class VoxelTransform:
    """G(r) of many patterns at once (PDF-CT): G = A @ I for each pattern I on Q (1/A).

    s(Q) comes from `mean_pattern` (the object's mean), then per pattern
    F = (I - P) Q [I / (s <f>^2) - k R] with k the pattern's amount, its projection onto R."""

    def __init__(self, q, settings, mean_pattern):
        q = np.asarray(q, float)
        settings.check_range(q)
        self.settings, self.q_all, self.r = settings, q, settings.r
        self.select = (q >= settings.qmin) & (q <= settings.qmax)
        qs = q[self.select]
        f_mean, f2_mean, c_mean = averages(settings.composition, qs)
        ratio = (f2_mean + c_mean) / f_mean ** 2
        y = np.asarray(mean_pattern, float)[self.select] / f_mean ** 2
        scale = smooth_scale(qs, y / ratio, settings.degree)
        if not np.all(scale > 0):
            raise ValueError("background: the mean pattern has no positive scattering left in [qmin, qmax]")
        to_y = 1.0 / (scale * f_mean ** 2)  # I -> y / s
        amount = ratio / (ratio @ ratio)  # k = amount . (y / s)
        inner = np.diag(to_y) - np.outer(ratio, amount * to_y)  # y/s - k R
        self.polynomial = _remove_polynomial(qs, settings.degree)
        self.sine = sine_matrix(qs, self.r, settings.lorch)
        self.matrix = (self.sine @ self.polynomial @ (qs[:, None] * inner)).astype(np.float32)  # (nr, nq selected)

    def apply(self, patterns, xp=np, background=None):
        """G (..., nr) of patterns (..., nq); `background` (..., nq) subtracted first. NumPy in,
        NumPy out; CuPy in (or xp=cupy), CuPy out."""
        patterns = xp.asarray(patterns, dtype=xp.float32)
        shape = patterns.shape[:-1]
        flat = patterns.reshape(-1, patterns.shape[-1])[:, xp.asarray(self.select)]
        if background is not None:
            flat = flat - xp.asarray(background, dtype=xp.float32).reshape(-1, self.select.size)[:, xp.asarray(self.select)]
        g = flat @ xp.asarray(self.matrix).T
        return g.reshape(*shape, self.r.size)

    def seen(self, r_ref, g_ref):
        """A reference G(r) as this reduction sees it: to F(Q) on the measured Q, then the same
        rpoly correction, Q window and (Lorch) transform."""
        qs = self.q_all[self.select]
        r_ref, g_ref = np.asarray(r_ref, float), np.asarray(g_ref, float)
        fq = (np.sin(np.outer(qs, r_ref)) * np.gradient(r_ref)[None, :]) @ g_ref
        return self.sine @ (self.polynomial @ fq)
