"""PDF-CT: the reconstructed I(Q) of every voxel -> G(r) of every voxel, and maps from it.

One height at a time (a slice (n, n, nq) of the XRD-CT volume, q in 1/A):

- air: a pattern b(Q) that is in every frame (the air the beam crosses, measured without the
  sample and normalised as the sinograms are: `background: {"q": [...], "intensity": [...]}`)
  is a constant sinogram, which FBP turns into b(Q) times `footprint` (the FBP of ones, a bowl
  over the field of view): bgscale * b(Q) * footprint is subtracted from every voxel. (Fitting
  b(Q) on the voxels outside the object was tried and left out: FBP's streaks of the object
  reach them, and the fit took the object's own signal away);
- G(r) of every voxel by one matrix product (pdf.VoxelTransform, NumPy or CuPy);
- phase maps: each voxel's G(r) over [fit_rmin, fit_rmax] fitted, non-negatively, by the phases'
  reference G(r) as this reduction sees them (same Q window, rpoly, Lorch; nnls.py);
- r-window maps: the mean of G(r) over each window (e.g. a phase's first peak).

The references are G(r) on an r grid ({phase: {"r_A": [...], "G": [...]}}): from the scan's
recorded sample description, or given in the options; never from the simulator's code.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.processing.nnls import nnls_normal
from bliss_lite.processing.pdf import PdfSettings, VoxelTransform, check_background

OBJECT_THRESHOLD = 0.15  # a voxel belongs to the object above this fraction of the 99th percentile of total intensity


def object_mask(totals):
    """Voxels of the object: their summed intensity is well above the air's."""
    level = float(np.percentile(totals, 99))
    return totals > OBJECT_THRESHOLD * level if level > 0 else np.zeros(totals.shape, bool)


class PdfCt:
    """Everything made once per scan (at its first height), then applied to every height."""

    def __init__(self, settings: PdfSettings, references=None, windows=None, fit_range=(1.0, 20.0),
                 background=None, xp=np):
        self.settings = settings
        self.references = dict(references or {})
        for name, ref in self.references.items():
            if not isinstance(ref, dict) or "r_A" not in ref or "G" not in ref or len(ref["r_A"]) != len(ref["G"]):
                raise ValueError(f"references: {name!r} needs r_A and G of the same length")
        self.windows = dict(windows or {})
        for name, window in self.windows.items():
            if len(window) != 2 or not float(window[0]) < float(window[1]):
                raise ValueError(f"windows: {name!r} must be [r_min, r_max] in A with r_min < r_max, got {window!r}")
        lo, hi = (float(v) for v in fit_range)
        if not settings.rmin <= lo < hi <= settings.rmax:
            raise ValueError(f"fit_range: must lie in [rmin, rmax] = [{settings.rmin}, {settings.rmax}] A, got {fit_range!r}")
        self.fit_range = (lo, hi)
        if not (background is None or isinstance(background, dict)):
            raise ValueError(f"background: None or {{q, intensity}} (or {{filename, entry}}), got {background!r}")
        self.background, self.xp = background, xp
        self.transform = self.design = self.air = None

    @property
    def r(self):
        return self.settings.r

    def prepare(self, q, volume_slice, footprint):
        """Build the transform from the first slice: the air pattern, then the object's mean
        pattern (what s(Q) is fitted to), the references as the reduction sees them."""
        q = np.asarray(q, float)
        self.settings.check_range(q)
        image = np.asarray(volume_slice, float)
        mask = object_mask(image.sum(axis=-1))
        if not mask.any():
            raise ValueError("pdf: the slice holds no object to normalise on (every voxel is empty)")
        self.air = self._air(q)
        net = image[mask] - self.settings.bgscale * footprint[mask][:, None] * self.air[None]
        self.transform = VoxelTransform(q, self.settings, net.mean(axis=0))
        if self.references:
            window = (self.r >= self.fit_range[0]) & (self.r <= self.fit_range[1])
            columns = [self.transform.seen(ref["r_A"], ref["G"]) for ref in self.references.values()]
            self.design = np.column_stack(columns)[window]
            self._window = window

    def _air(self, q):
        if self.background is None:
            return np.zeros(q.size)
        check_background(q, self.background["q"])
        return np.asarray(self.background["intensity"], float)

    def slice(self, volume_slice, footprint):
        """(G (n, n, nr) float32, {phase: map}, {window: map}) of one slice, where the slice is
        (NumPy or CuPy with xp=cupy)."""
        xp = self.xp
        image = xp.asarray(volume_slice, dtype=xp.float32)
        shape = image.shape[:-1]
        background = None
        if self.air is not None and self.settings.bgscale:
            background = (self.settings.bgscale * xp.asarray(footprint, dtype=xp.float32)[..., None]
                          * xp.asarray(self.air, dtype=xp.float32)[None, None])
        g = self.transform.apply(image, xp=xp, background=background)
        return g, self.phase_maps(g.reshape(-1, self.r.size), shape), self.window_maps(g, shape)

    def phase_maps(self, g, shape):
        if self.design is None:
            return {}
        xp = self.xp
        a = xp.asarray(self.design, dtype=xp.float64)
        y = xp.asarray(g[:, xp.asarray(self._window)], dtype=xp.float64)
        x = nnls_normal(a.T @ a, a.T @ y.T, xp)
        return {name: x[k].reshape(shape).astype(xp.float32) for k, name in enumerate(self.references)}

    def window_maps(self, g, shape):
        out = {}
        for name, (lo, hi) in self.windows.items():
            start, stop = window_indices(self.r, lo, hi)
            out[name] = g[..., start:stop].mean(axis=-1).reshape(shape)
        return out

    def configuration(self):
        return {**self.settings.to_dict(), "fit_range": list(self.fit_range), "windows": self.windows,
                "references": sorted(self.references), "object_threshold": OBJECT_THRESHOLD,
                "background": None if self.background is None else "pattern"}


def window_indices(r, lo, hi):
    """(start, stop) of the r points in [lo, hi] (r ascending); the one nearest the window's
    middle when none is. A window map is the mean of G(r) over them (the live view's too)."""
    sel = np.flatnonzero((r >= float(lo)) & (r <= float(hi)))
    if sel.size == 0:
        near = int(np.argmin(abs(r - 0.5 * (float(lo) + float(hi)))))
        return near, near + 1
    return int(sel[0]), int(sel[-1]) + 1


def footprint(x_mm, omega_deg, centre, n, backend="cpu"):
    """What a pattern present in every frame becomes in each voxel after FBP (n, n)."""
    from bliss_lite.processing.fbp import fbp
    from bliss_lite.processing.gpu import to_host

    ones = np.ones((len(omega_deg), len(x_mm), 1), np.float32)
    return to_host(fbp(ones, np.asarray(x_mm), np.asarray(omega_deg), centre, n=n, backend=backend))[..., 0]


def default_windows(references):
    """A window of +-0.1 A around each reference's first peak (when it says where that is)."""
    return {f"{name}_first_peak": [round(ref["first_peak_A"] - 0.1, 4), round(ref["first_peak_A"] + 0.1, 4)]
            for name, ref in (references or {}).items() if ref.get("first_peak_A")}
