"""The instrument's peak width, measured once per scan from its summed pattern.

Fitting each reflection alone (a Gaussian on a sloped line, every parameter free) follows the
noise and the background's curvature: two runs of one XRD-CT scan gave FWHM 0.87 and 0.70
nm^-1, and the same scan resumed (sums differing by 0.2 %) a line in q from 0.03 to 0.09, so
the phase maps of identical volumes differed. Here one FWHM is fitted to all the isolated
reflections of the known phases at once, and it is the only non-linear parameter: for a trial
width every window is a linear least squares (the Gaussian, its derivative for a small centre
shift, a quadratic background; unit-norm columns), so the cost is a smooth function of one
variable, searched over a grid within a sanity range and refined by a bounded minimisation.
Windows are weighted by their Poisson noise (1 / sqrt(level)), so a strong peak on a weak
background counts for what it is. Where no isolated reflection shows above the noise, or the
width lands on an end of the range, the width is FALLBACK_BINS q bins and the profile's
`source` says so (give `peak_fwhm` then). Fitting the whole pattern instead was tried and
refused: over a broad amorphous hump, peaks as wide as the range allows fit best.

q in nm^-1.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.processing.references import FWHM_TO_SIGMA, PeakProfile, reflections

MIN_BINS, MAX_BINS = 1.0, 25.0  # sanity range of the FWHM in q bins (and at most a tenth of the q range)
FALLBACK_BINS = 3.0  # the width taken when the data cannot tell
MIN_SNR = 5.0  # a window's peak must stand this many standard errors above its background
GRID = 48  # trial widths over the sanity range (log spaced)


def width_range(q):
    """(lowest, highest) FWHM a pattern on q can measure: one bin, up to 25 bins or a tenth of q's range."""
    step = float(np.median(np.diff(q)))
    return MIN_BINS * step, max(min(MAX_BINS * step, (q[-1] - q[0]) / 10), 2 * MIN_BINS * step)


def measure_profile(q, pattern, phases, source="measured"):
    """The instrument's PeakProfile (one FWHM) from a pattern (nq,) of known crystalline phases
    ({name: spec} as `references.reflections` takes; None entries are left out)."""
    q, y = np.asarray(q, float), np.asarray(pattern, float)
    lo, hi = width_range(q)
    step = float(np.median(np.diff(q)))
    every = np.unique(np.concatenate([reflections(s, q[-1] + 1)[0] for s in phases.values() if s is not None]
                                     or [np.zeros(0)]))
    guess, fwhm, used = 4 * step, None, 0
    for _ in range(4):  # the width decides the windows and which reflections are isolated
        windows = peak_windows(q, y, every, guess)
        found = joint_width(windows, lo, hi)
        if found is None:
            break
        fwhm, used = found
        if abs(fwhm - guess) < 0.01 * guess:
            break
        guess = fwhm
    if fwhm is not None and _inside(fwhm, lo, hi):
        return PeakProfile((fwhm,), f"{source}: {used} isolated reflection(s)")
    return PeakProfile((FALLBACK_BINS * step,), f"fallback: {FALLBACK_BINS:g} q bins ({source} shows no "
                                                         "measurable peak)")


def _inside(fwhm, lo, hi):
    return lo * 1.03 < fwhm < hi / 1.03


def peak_windows(q, y, every, guess):
    """[(q, y) window] around each reflection with no other within the window plus 1.5 FWHM,
    the window +-3 FWHM (at least +-5 bins) wholly inside q."""
    step = float(np.median(np.diff(q)))
    half = max(3 * guess, 5 * step)
    windows = []
    for c in every:
        if c - half < q[0] or c + half > q[-1] or np.sum(np.abs(every - c) < half + 1.5 * guess) > 1:
            continue
        sel = np.abs(q - c) <= half
        if sel.sum() >= 9:
            windows.append((q[sel], y[sel], float(c), half))
    return windows


def window_fit(qs, ys, c, half, fwhm):
    """(weighted residual sum of squares, peak amplitude / its standard error) of one window
    for a trial FWHM: linear least squares on unit-norm columns."""
    sigma = fwhm * FWHM_TO_SIGMA
    u = (qs - c) / sigma
    g = np.exp(-0.5 * u**2)
    t = (qs - c) / half
    a = np.column_stack([g, u * g, np.ones_like(t), t, t**2])
    weight = 1.0 / np.sqrt(max(float(np.mean(np.abs(ys))), 1e-30))
    a, b = a * weight, ys * weight
    norms = np.linalg.norm(a, axis=0)
    a = a / norms
    x, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    rss = float(np.sum((a @ x - b) ** 2))
    if rank < a.shape[1]:
        return rss, 0.0
    dof = max(len(b) - a.shape[1], 1)
    covariance = np.linalg.inv(a.T @ a) * rss / dof
    error = np.sqrt(max(covariance[0, 0], 1e-300))
    return rss, float(x[0] / error)


def joint_width(windows, lo, hi):
    """(FWHM minimising the summed cost of the windows whose peak stands out, how many), or None."""
    from scipy.optimize import minimize_scalar

    if not windows:
        return None
    trials = np.geomspace(lo, hi, GRID)

    def cost(fwhm, chosen):
        return sum(window_fit(*w, fwhm)[0] for w in chosen)

    chosen = windows
    for _ in range(2):  # windows without a significant peak at the best width add only noise: left out
        costs = [cost(f, chosen) for f in trials]
        i = int(np.argmin(costs))
        bracket = (trials[max(i - 1, 0)], trials[min(i + 1, GRID - 1)])
        best = float(minimize_scalar(cost, args=(chosen,), bounds=bracket, method="bounded",
                                     options={"xatol": 1e-4 * bracket[0]}).x)
        keep = [w for w in chosen if window_fit(*w, best)[1] >= MIN_SNR]
        if not keep:
            return None
        if len(keep) == len(chosen):
            return best, len(chosen)
        chosen = keep
    return best, len(chosen)
