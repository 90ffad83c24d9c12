"""Sinograms of an XRD-CT scan: monitor normalisation, assembly from frames, centre of rotation.

Frames arrive in acquisition order (snake lines reversed, batches in any order on the live
path), so each frame is placed by its recorded read-backs (omega, x, z) on the scan's grid from
scan_info["xrdct"], never by its index: x positions are the middles of n_x equal intervals of
[x_start, x_stop], omega the middles of n_omega intervals of [0, omega_range].

The sinogram data may live on the GPU (SinogramBuilder(..., device=True)): only the patterns
cross the bus, the placement is computed on the host (it is bookkeeping), and the GPU FBP and
SIRT then read the sinograms where they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bliss_lite.processing.gpu import on_device, to_host


def normalise(patterns, i0, it=None, reference=None):
    """Patterns (N, nq) / I0 (times `reference`, default the mean I0, so the units stay
    counts-like) and, with `it`, / the transmission it / i0 (absorption correction): float32
    (N, nq). Pass a fixed `reference` when normalising a scan batch by batch. CuPy patterns
    (integrated on the GPU) stay on the GPU; the monitors are host arrays either way."""
    xp = np
    if on_device(patterns):  # no import of CuPy for NumPy patterns
        import cupy as xp
    patterns = xp.asarray(patterns, np.float32)
    i0 = np.asarray(i0, float).reshape(-1)
    if patterns.ndim != 2 or patterns.shape[0] != i0.size:
        raise ValueError(f"patterns {patterns.shape} do not match {i0.size} I0 values")
    _check_monitor("I0", i0)
    scale = i0 / (i0.mean() if reference is None else float(reference))
    if it is not None:
        it = np.asarray(it, float).reshape(-1)
        if it.size != i0.size:
            raise ValueError(f"{it.size} transmission values for {i0.size} frames")
        _check_monitor("It", it)
        scale = scale * (it / i0)
    return patterns / xp.asarray(scale.astype(np.float32))[:, None]


def _check_monitor(name, values):
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        raise ValueError(f"frame {bad[0]}: monitor {name} is {float(values[bad[0]]):g} (must be a positive number)"
                         + (f"; {bad.size - 1} more frames like it" if bad.size > 1 else ""))


@dataclass(frozen=True, eq=False)
class Sinograms:
    """Sinograms of every z slice: data (nz, n_omega, n_x, nq) float32, axes omega_deg, x_mm, z,
    and `filled` (nz, n_omega, n_x): False where no frame has arrived."""

    data: np.ndarray
    omega_deg: np.ndarray
    x_mm: np.ndarray
    z: np.ndarray
    filled: np.ndarray

    @property
    def complete(self):
        return bool(self.filled.all())

    def slice(self, iz):
        """(n_omega, n_x, nq) sinogram of z slice iz."""
        return self.data[iz]


@dataclass(frozen=True)
class Grid:
    """The scan's grid, from scan_info["xrdct"]; `locate` maps read-backs to grid indices."""

    omega_deg: np.ndarray
    x_mm: np.ndarray
    z: np.ndarray

    @classmethod
    def from_info(cls, info):
        info = info.get("xrdct", info)
        n_x, n_omega = int(info["n_x"]), int(info["n_omega"])
        x_start, x_stop = float(info["x_start"]), float(info["x_stop"])
        omega_range = float(info.get("omega_range", 180.0))
        z = np.atleast_1d(np.asarray(info["z_positions"], float))
        x = x_start + (np.arange(n_x) + 0.5) * (x_stop - x_start) / n_x
        omega = (np.arange(n_omega) + 0.5) * omega_range / n_omega
        return cls(omega, x, z)

    def locate(self, omega, x, z, frames):
        """(iz, i_omega, i_x) of each frame: the nearest grid point, within half a step (for a
        single height, within half an x step of it)."""
        x_step = _step(self.x_mm)
        return (_nearest("z", z, self.z, frames, _step(self.z) if self.z.size > 1 else x_step),
                _nearest("omega", omega, self.omega_deg, frames, _step(self.omega_deg)),
                _nearest("x", x, self.x_mm, frames, x_step))


def _step(axis):
    return float(np.min(np.abs(np.diff(np.sort(axis))))) if axis.size > 1 else np.inf


def _nearest(name, values, axis, frames, step):
    values = np.asarray(values, float).reshape(-1)
    if values.size != frames.size:
        raise ValueError(f"{values.size} {name} read-backs for {frames.size} frames")
    order = np.argsort(axis)
    ordered = axis[order]
    pos = np.searchsorted(ordered, values)
    lo, hi = np.clip(pos - 1, 0, axis.size - 1), np.clip(pos, 0, axis.size - 1)
    index = order[np.where(np.abs(ordered[hi] - values) < np.abs(values - ordered[lo]), hi, lo)]
    half = step / 2
    bad = np.flatnonzero(~(np.abs(values - axis[index]) <= half * (1 + 1e-9)))  # NaN fails too
    if bad.size:
        k = bad[0]
        raise ValueError(f"frame {int(frames[k])}: {name} read-back {float(values[k]):g} is more than half a step "
                         f"({half:g}) from the nearest grid point {axis[index[k]]:g}")
    return index


def _clash(owner, indices, cells):
    """(other frame, position in the batch) of the first grid point claimed by two different
    frames, already there (owner) or within the batch (cells); None when there is none."""
    taken = np.flatnonzero((owner >= 0) & (owner != indices))
    if taken.size:
        return int(owner[taken[0]]), int(taken[0])
    order = np.argsort(cells, kind="stable")
    cells, frames = cells[order], indices[order]
    twice = np.flatnonzero((cells[1:] == cells[:-1]) & (frames[1:] != frames[:-1]))
    if twice.size:
        return int(frames[twice[0]]), int(order[twice[0] + 1])
    return None


class SinogramBuilder:
    """Fills Sinograms as frames arrive: `add(indices, patterns, omega, x, z)` in any order and
    batch size; `sinograms` is the current state (a view, not a copy). A frame index added
    again replaces its pattern; two different frames on one grid point are an error.
    `device=True`: the data is a CuPy array on the GPU (patterns NumPy or CuPy)."""

    def __init__(self, info, nq, device=False):
        self.grid = Grid.from_info(info)
        nz, n_omega, n_x = self.grid.z.size, self.grid.omega_deg.size, self.grid.x_mm.size
        if device:
            import cupy as xp
        else:
            xp = np
        self.xp = xp
        self.data = xp.zeros((nz, n_omega, n_x, int(nq)), np.float32)
        self.frame = np.full((nz, n_omega, n_x), -1, np.int64)  # which frame filled each point

    @staticmethod
    def nbytes(info, nq):
        """Bytes the sinograms of a scan take (to decide whether they fit: on the GPU, in the view)."""
        grid = Grid.from_info(info)
        return grid.z.size * grid.omega_deg.size * grid.x_mm.size * int(nq) * 4

    def add(self, indices, patterns, omega, x, z):
        indices = np.asarray(indices, np.int64).reshape(-1)
        patterns = self.xp.asarray(patterns, np.float32).reshape(indices.size, -1)
        if patterns.shape[1] != self.data.shape[-1]:
            raise ValueError(f"patterns have {patterns.shape[1]} q bins, expected {self.data.shape[-1]}")
        iz, io, ix = self.grid.locate(omega, x, z, indices)
        clash = _clash(self.frame[iz, io, ix], indices, np.ravel_multi_index((iz, io, ix), self.frame.shape))
        if clash is not None:
            other, k = clash
            raise ValueError(f"frame {int(indices[k])} lands on the grid point of frame {other} "
                             f"(z {self.grid.z[iz[k]]:g}, omega {self.grid.omega_deg[io[k]]:g}, "
                             f"x {self.grid.x_mm[ix[k]]:g})")
        if self.xp is np:
            self.data[iz, io, ix] = patterns
        else:  # CuPy scatters with its own index arrays
            cells = np.ravel_multi_index((iz, io, ix), self.frame.shape)
            self.data.reshape(-1, self.data.shape[-1])[self.xp.asarray(cells)] = patterns
        self.frame[iz, io, ix] = indices

    @property
    def sinograms(self):
        return Sinograms(self.data, self.grid.omega_deg, self.grid.x_mm, self.grid.z, self.frame >= 0)


def assemble(patterns, omega, x, z, info):
    """Sinograms from all frames of a scan (frame i = row i of patterns), placed by read-backs."""
    patterns = np.asarray(patterns)
    builder = SinogramBuilder(info, patterns.shape[-1])
    builder.add(np.arange(patterns.shape[0]), patterns, omega, x, z)
    return builder.sinograms


def estimate_centre(sino, x_mm, omega_deg):
    """Centre of rotation (motor x, mm) from one slice (n_omega, n_x[, nq]): each projection's
    centre of mass (summed over q) is c + a cos(omega) + b sin(omega) for a consistent
    sinogram (the sample's centre of mass turning about the axis); least squares for c, a, b."""
    if not on_device(sino):  # a CuPy sinogram is summed on the GPU
        sino = np.asarray(sino)
    profile = to_host(sino.reshape(sino.shape[0], sino.shape[1], -1).sum(axis=2, dtype=np.float64))
    x_mm = np.asarray(x_mm, float)
    omega = np.radians(np.asarray(omega_deg, float))
    mass = profile.sum(axis=1)
    use = np.isfinite(mass) & (np.abs(mass) > 1e-12 * max(np.abs(mass).max(), 1e-300))
    if use.sum() < 3:
        raise ValueError("estimate_centre needs at least 3 projections with signal")
    com = (profile[use] @ x_mm) / mass[use]
    design = np.stack([np.ones(use.sum()), np.cos(omega[use]), np.sin(omega[use])], axis=1)
    (c, _, _), *_ = np.linalg.lstsq(design, com, rcond=None)
    return float(c)
