"""What a phase of known atom positions scatters (the Debye scattering equation) and its
reference pair distribution function G(r), both from one histogram of pair distances.

    I_coh(Q) / N = <f^2> + (1/N) sum_{i != j} f_i f_j sin(Q r_ij) / (Q r_ij) exp(-sigma_ij^2 Q^2 / 2)

Pairs are binned by element pair and distance (BIN), then the sinc sum runs over the occupied
bins only, vectorised over Q. A cluster (`Structure.cell is None`) sums all its pairs: its
small-angle scattering and shape function come with it. A periodic structure (bulk) counts
the neighbours of its cell's atoms out to r_max and subtracts the mean density (the continuum
4 pi r^2 rho0 c_a c_b), so only S(Q) - 1 of the bulk remains, times the shape function of a
sphere of diameter r_max (a coherent domain: Bragg peaks ~2 pi / r_max wide, each convolved
with the sphere's |form factor|^2, so the intensity stays positive, without truncation ripples).

G(r) = 4 pi r (rho(r) - rho0), X-ray weighted (f_a f_b / <f>^2, averaged over 0 < Q < q_weight):
the same pairs, each a Gaussian of its sigma, minus the density term, times the domain's
(bulk) or the particle's shape function. Q in 1/A, r in A.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.data.atomic_scattering import averages, compton, form_factor

BIN = 0.005  # A: pair distances are binned this finely (finer for sharp pairs, see _bin)


def _taper(r, diameter):
    """gamma0(r): the shape function of a sphere of `diameter` (1 at r = 0, 0 from r = diameter)."""
    x = np.clip(np.asarray(r, float) / diameter, 0.0, 1.0)
    return 1 - 1.5 * x + 0.5 * x ** 3


def _bin(structure):
    """A tenth of the narrowest pair width, at most BIN: binning never shifts a peak visibly."""
    return float(min(BIN, max(structure.sigma / 10, 1e-4)))


def pair_histograms(structure, dr=None):
    """(r (bin centres, A), {(a, b): pairs per atom in each bin}) of ordered pairs i != j."""
    dr = _bin(structure) if dr is None else dr
    elements = np.asarray(structure.elements)
    kinds = sorted(set(elements.tolist()))
    code = np.array([kinds.index(e) for e in elements])
    pos = np.asarray(structure.positions, float)
    if structure.cell is None:
        centres, neighbours, ncode = pos, pos, code
        r_max = float(np.ptp(pos, axis=0).max() * np.sqrt(3)) + 2 * dr if len(pos) > 1 else dr
    else:
        r_max = structure.r_max
        cell = np.asarray(structure.cell, float)
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        n = np.ceil(r_max / heights).astype(int) + 1
        shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1).reshape(-1, 3) @ cell
        centres = pos
        neighbours = (pos[None] + shifts[:, None]).reshape(-1, 3)
        ncode = np.tile(code, len(shifts))
    nbins = int(np.ceil(r_max / dr)) + 1
    nk = len(kinds)
    counts = np.zeros(nk * nk * nbins)
    chunk = max(1, 2_000_000 // max(len(neighbours), 1))
    for start in range(0, len(centres), chunk):
        d = np.linalg.norm(centres[start:start + chunk, None, :] - neighbours[None], axis=-1)
        keep = (d > 1e-6) & (d < r_max)
        types = code[start:start + chunk, None] * nk + ncode[None, :]
        index = np.broadcast_to(types, d.shape)[keep] * nbins + np.rint(d[keep] / dr).astype(np.int64)
        counts += np.bincount(index, minlength=counts.size)
    counts = counts.reshape(nk, nk, nbins) / len(centres)
    r = np.arange(nbins) * dr
    return r, {(a, b): counts[i, j] for i, a in enumerate(kinds) for j, b in enumerate(kinds) if counts[i, j].any()}


def _fractions(structure):
    comp = structure.composition
    total = sum(comp.values())
    return {e: c / total for e, c in comp.items()}


def coherent_intensity(structure, q, histograms=None):
    """I_coh(Q) per atom (electron units); for a bulk structure without the forward (Q = 0)
    scattering of its mean density."""
    q = np.asarray(q, float)
    r, hist = histograms if histograms is not None else pair_histograms(structure)
    c = _fractions(structure)
    f = {e: form_factor(e, q) for e in c}
    total = sum(c[e] * f[e] ** 2 for e in c)
    bulk = structure.cell is not None
    taper = _taper(r, structure.r_max) if bulk else np.ones_like(r)
    for (a, b), h in hist.items():
        nz = np.flatnonzero(h)
        rk, wk = r[nz], h[nz] * taper[nz]
        sk = structure.pair_sigma(rk)
        total = total + f[a] * f[b] * _sinc_sum(q, rk, wk, sk)
    if bulk:  # minus the tapered continuum: sum_ab c_a c_b f_a f_b = <f>^2
        step = 0.01  # a smooth integrand: a coarse grid is exact enough (Q r step < 0.35 rad)
        rc = np.arange(step / 2, structure.r_max, step)
        shell = 4 * np.pi * rc ** 2 * structure.number_density * _taper(rc, structure.r_max) * step
        total = total - sum(c[e] * f[e] for e in c) ** 2 * _sinc_sum(q, rc, shell, np.zeros_like(rc))
    return total


def _sinc_sum(q, r, weights, sigma, block=2048):
    out = np.zeros_like(q)
    for s in range(0, r.size, block):
        rr, ww, ss = r[s:s + block], weights[s:s + block], sigma[s:s + block]
        qr = np.maximum(q[:, None] * rr[None], 1e-12)
        out += (np.sin(qr) / qr * np.exp(-0.5 * (q[:, None] * ss[None]) ** 2)) @ ww
    return out


def total_intensity(structure, q, histograms=None):
    """What the detector sees of the phase per atom: coherent plus Compton (electron units)."""
    c = _fractions(structure)
    return coherent_intensity(structure, q, histograms) + sum(c[e] * compton(e, q) for e in c)


def weights(structure, q_weight=25.0):
    """X-ray weights f_a f_b / <f>^2 of each element pair, averaged over 0 < Q < q_weight."""
    q = np.linspace(0.0, q_weight, 200)
    c = _fractions(structure)
    f_mean, _, _ = averages(structure.composition, q)
    return {(a, b): float(np.mean(form_factor(a, q) * form_factor(b, q) / f_mean ** 2)) for a in c for b in c}


def reference_gr(structure, r, histograms=None, q_weight=25.0):
    """G(r) (1/A^2) from the atom positions: pairs as Gaussians minus the density term."""
    r = np.asarray(r, float)
    rk_all, hist = histograms if histograms is not None else pair_histograms(structure)
    bulk = structure.cell is not None
    taper = _taper(rk_all, structure.r_max) if bulk else np.ones_like(rk_all)
    w = weights(structure, q_weight)
    g = np.zeros_like(r)
    for pair, h in hist.items():
        nz = np.flatnonzero(h)
        rk, hk = rk_all[nz], h[nz] * taper[nz] * w[pair]
        sk = np.maximum(structure.pair_sigma(rk), 0.005)
        for s in range(0, rk.size, 2048):
            a, b, c = rk[s:s + 2048], hk[s:s + 2048], sk[s:s + 2048]
            g += (np.exp(-0.5 * ((r[:, None] - a[None]) / c[None]) ** 2) / (np.sqrt(2 * np.pi) * c[None] * a[None])) @ b
    rho = structure.number_density or 0.0
    if bulk:
        shape = _taper(r, structure.r_max)
    else:
        d = float(structure.notes.get("diameter_A", 0.0))
        shape = _taper(r, d) if d else np.ones_like(r)
    return g - 4 * np.pi * rho * r * shape
