"""Per-phase maps from a reconstructed XRD-CT volume (n, n, nq): one q window (ROI) per phase,
each reduced to a weight vector over q, so a map is `volume @ weights`.

A crystalline phase gets a strong peak (q = 2 pi / d from its pyFAI calibrant) farther than
`width` from every other phase's peaks: the ROI's integral minus a straight background through
its edges. Some phases have no such peak (Si's reflections all lie within 0.4 % of CeO2's, well
inside one peak width at q < 40 nm^-1); with `peak_fwhm` given, such a phase gets its best
separated peak and a linear least-squares fit in the ROI of Gaussians of that width at every
known peak position plus a straight background, its own peak's area being the map (a fixed
linear combination of q bins too). The amorphous phase (calibrant None) gets the peak-free
window nearest its main hump, integrated without background.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class Roi:
    """A q window (nm^-1) for one phase. kind: "peak" (integral minus linear background),
    "fit" (Gaussian fit of `peaks` at known positions, `peak` the phase's own), "diffuse"
    (integral, no background)."""

    phase: str
    lo: float
    hi: float
    kind: str
    peak: float | None = None
    others: tuple = field(default=())  # nearby peak positions of other phases (kind "fit")
    fwhm: float | None = None


def peak_positions(calibrant, q_min, q_max):
    """(q, relative strength) of a calibrant's reflections within [q_min, q_max], strongest
    first; strength (d / d_max)^2, the falling form factor of the simulated patterns."""
    from pyFAI.calibrant import get_calibrant

    d = np.asarray(get_calibrant(calibrant).dspacing, float)  # Angstrom
    q = 20 * np.pi / d  # nm^-1
    strength = (d / d.max()) ** 2
    keep = (q >= q_min) & (q <= q_max)
    order = np.argsort(-strength[keep], kind="stable")
    return q[keep][order], strength[keep][order]


def phase_rois(calibrants, q_min, q_max, width, peak_fwhm=None, amorphous_q=20.0):
    """{phase: Roi} for `calibrants` {phase: pyFAI calibrant name, or None for amorphous}.
    ROIs are `width` wide inside [q_min, q_max]; `amorphous_q`: where the amorphous hump peaks."""
    half = width / 2
    peaks = {p: peak_positions(c, q_min - width, q_max + width)[0] for p, c in calibrants.items() if c is not None}
    rois = {}
    for phase, calibrant in calibrants.items():
        if calibrant is None:
            rois[phase] = _diffuse_roi(phase, peaks, q_min, q_max, width, amorphous_q)
            continue
        others = np.concatenate([q for p, q in peaks.items() if p != phase] or [np.empty(0)])
        own = [q for q in peak_positions(calibrant, q_min + half, q_max - half)[0]]
        if not own:
            raise ValueError(f"{phase}: no {calibrant} reflection within [{q_min + half:g}, {q_max - half:g}] nm^-1")
        gap = [np.min(np.abs(others - q)) if others.size else np.inf for q in own]
        isolated = [q for q, g in zip(own, gap) if g > width]
        if isolated and peak_fwhm is None:
            rois[phase] = Roi(phase, isolated[0] - half, isolated[0] + half, "peak", isolated[0])
            continue
        if isolated:
            # the peak shape is known: fit it (with its neighbours and a linear background) over a
            # window of at least 3 FWHM, so the background never comes from the peak's own
            # shoulders, whatever the binning
            best, reach = isolated[0], max(half, 1.5 * peak_fwhm)
            near = tuple(float(q) for q in np.concatenate([others, own]) if q != best and abs(q - best) < reach + peak_fwhm)
            rois[phase] = Roi(phase, best - reach, best + reach, "fit", best, near, peak_fwhm)
            continue
        best = own[int(np.argmax(gap))]
        if peak_fwhm is None:
            raise ValueError(f"{phase}: every {calibrant} peak in [{q_min:g}, {q_max:g}] nm^-1 lies within {width:g} "
                             f"of another phase's peak (best: {best:.3f}, {max(gap):.3f} away); pass peak_fwhm "
                             "to fit overlapping peaks")
        reach = half + 1.5 * peak_fwhm
        near = tuple(float(q) for q in np.concatenate([others, own]) if q != best and abs(q - best) < reach)
        rois[phase] = Roi(phase, best - half, best + half, "fit", best, near, peak_fwhm)
    return rois


def _diffuse_roi(phase, peaks, q_min, q_max, width, target):
    half = width / 2
    every = np.concatenate(list(peaks.values()) or [np.empty(0)])
    centres = np.linspace(q_min + half, q_max - half, 2001)
    clear = np.array([np.all(np.abs(every - c) > width) for c in centres])
    if not clear.any():
        raise ValueError(f"{phase}: no {width:g} nm^-1 window in [{q_min:g}, {q_max:g}] free of crystalline peaks")
    c = centres[clear][np.argmin(np.abs(centres[clear] - target))]
    return Roi(phase, c - half, c + half, "diffuse")


def roi_weights(roi, q):
    """The weight vector over q (nq,) that turns a pattern into the ROI's value."""
    q = np.asarray(q, float)
    sel = np.flatnonzero((q >= roi.lo) & (q <= roi.hi))
    if sel.size < 4:
        raise ValueError(f"{roi.phase}: ROI [{roi.lo:g}, {roi.hi:g}] holds {sel.size} q bins, need at least 4")
    dq = np.gradient(q)[sel]
    weights = np.zeros(q.size)
    if roi.kind == "diffuse":
        weights[sel] = dq
    elif roi.kind == "peak":
        # integral minus the trapezoid under the straight line through the mean of 2 edge bins each side
        qs = q[sel]
        left, right = sel[:2], sel[-2:]
        ql, qr = q[left].mean(), q[right].mean()
        frac = (qs - ql) / (qr - ql)  # background at qs: (1 - frac) * edge_left + frac * edge_right
        weights[sel] = dq
        weights[left] -= np.sum(dq * (1 - frac)) / left.size
        weights[right] -= np.sum(dq * frac) / right.size
    elif roi.kind == "fit":
        qs = q[sel]
        sigma = roi.fwhm * FWHM_TO_SIGMA
        centres = (roi.peak,) + roi.others
        design = np.column_stack([np.exp(-0.5 * ((qs - c) / sigma) ** 2) for c in centres]
                                 + [np.ones_like(qs), qs - qs.mean()])
        weights[sel] = np.linalg.pinv(design)[0] * sigma * np.sqrt(2 * np.pi)  # amplitude -> area
    else:
        raise ValueError(f"{roi.phase}: unknown ROI kind {roi.kind!r}")
    return weights


def phase_maps(volume, q, rois):
    """{phase: (n, n) map} from a volume (n, n, nq) on the q axis (nm^-1)."""
    volume = np.asarray(volume)
    if volume.shape[-1] != np.size(q):
        raise ValueError(f"volume has {volume.shape[-1]} q bins, q axis {np.size(q)}")
    return {phase: volume @ roi_weights(roi, q).astype(volume.dtype) for phase, roi in rois.items()}


def ground_truth(phantom, name, z, n, supersample=8):
    """The phase's volume fraction averaged over each of n x n pixels on [-R, R]^2 (the
    reconstruction's grid for a scan across [-R, R] about the axis)."""
    fine = phantom.phase_map(name, z, n * supersample)
    return fine.reshape(n, supersample, n, supersample).mean(axis=(1, 3))


def correlation(a, b, mask=None):
    """Pearson correlation coefficient of two maps (over `mask` when given)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))
