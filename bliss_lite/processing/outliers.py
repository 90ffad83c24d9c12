"""Zinger-proof integration: sigma clipping and trimmed mean, as pyFAI defines them.

`sigma_clip` follows pyFAI's `sigma_clip_ng` (CSR engine, "azimuthal" error model): the mean
and standard deviation of the normalised pixel values in each bin, then up to `max_iter`
cycles discarding pixels farther than max(thres, Chauvenet's criterion) standard deviations.
`trimmed_mean` follows `medfilt1d_ng`: the pixels of each bin sorted by value, only those
wholly between two quantiles of the cumulated normalisation kept. Both are vectorised over the whole
frame (no Python loop over bins) and use the lean engine's matrix, mask and normalisation.
"""
from __future__ import annotations

import math

import numpy as np


def integrate(integrator, frame) -> np.ndarray:
    method = integrator.settings.outliers
    if method == "sigma_clip":
        return sigma_clip(integrator, frame)
    if method == "trimmed_mean":
        return trimmed_mean(integrator, frame)
    raise ValueError(f"integration: no outlier method {method!r}")


def _pixels(integrator, frame):
    """(signal, normalisation) per pixel of a frame already checked by the integrator."""
    signal = np.asarray(frame, dtype=np.float64).reshape(-1)
    if integrator.dark is not None:
        signal = signal - integrator.dark.reshape(-1)
    return signal, integrator.norm.reshape(-1).copy()


def _fill_empty(values):
    """pyFAI's interp_filter: empty (NaN) bins get the linear interpolation of their neighbours."""
    good = np.isfinite(values)
    if good.any() and not good.all():
        index = np.arange(values.size)
        values[~good] = np.interp(index[~good], index[good], values[good])
    return values


def sigma_clip(integrator, frame):
    s = integrator.settings
    A, A2 = integrator.matrix, integrator.matrix_squared
    signal, norm = _pixels(integrator, frame)
    count = np.ones_like(norm)
    valid = norm > 0
    value = np.where(valid, signal / np.where(valid, norm, 1.0), 0.0)

    def statistics():
        with np.errstate(divide="ignore", invalid="ignore"):
            avg = _fill_empty((A @ signal) / (A @ norm))
            delta = np.where(norm > 0, value - A.T @ avg, 0.0)
            std = _fill_empty(np.sqrt((A2 @ ((delta * norm) ** 2)) / (A2 @ (norm ** 2))))
        return avg, std

    avg, std = statistics()
    for _ in range(s.max_iter):
        cnt2d = np.maximum(A.T @ (A @ count), 3)
        chauvenet = np.maximum(s.thres, np.sqrt(2.0 * np.log(cnt2d / math.sqrt(2.0 * math.pi))))
        outlier = ~(np.abs(value - A.T @ avg) <= chauvenet * (A.T @ std))
        signal[outlier] = norm[outlier] = count[outlier] = 0.0
        avg, std = statistics()
    empty = (A @ norm) <= 0
    avg[empty] = 0.0
    return avg


def trimmed_mean(integrator, frame):
    lo, hi = (p / 100.0 for p in integrator.settings.percentile)
    bins, pixels, coef = integrator.entries
    signal, norm = _pixels(integrator, frame)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (signal / norm)[pixels]
    order = np.lexsort((value, bins))
    bins, pixels, coef = bins[order], pixels[order], coef[order]
    weight = norm[pixels] * coef
    upper = np.cumsum(weight)
    nbins = integrator.npt
    total = np.bincount(bins, weights=weight, minlength=nbins)
    before = np.concatenate(([0.0], np.cumsum(total)[:-1]))  # cumulated weight of earlier bins
    upper -= before[bins]
    lower = upper - weight
    last = total[bins]
    kept = (lower >= lo * last) & (upper <= hi * last)  # wholly inside, as pyFAI's cython engine
    sums = np.bincount(bins[kept], weights=(signal[pixels] * coef)[kept], minlength=nbins)
    norms = np.bincount(bins[kept], weights=weight[kept], minlength=nbins)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = sums / norms
    avg[norms <= 0] = 0.0
    return avg
