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

    @property
    def z_step(self):
        """The tolerance step of z read-backs: the z step, for a single height the x step."""
        return _step(self.z) if self.z.size > 1 else _step(self.x_mm)

    def locate(self, omega, x, z, frames):
        """(iz, i_omega, i_x) of each frame: the nearest grid point, within half a step (for a
        single height, within half an x step of it)."""
        return (_nearest("z", z, self.z, frames, self.z_step),
                _nearest("omega", omega, self.omega_deg, frames, _step(self.omega_deg)),
                _nearest("x", x, self.x_mm, frames, _step(self.x_mm)))


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


class HeightLimitError(RuntimeError):
    """A frame of one more height than the builder may hold: release a height first."""


class SinogramBuilder:
    """Fills sinograms as frames arrive: `add(indices, patterns, omega, x, z)` in any order and
    batch size. A frame index added again replaces its pattern; two different frames on one
    grid point are an error. `device=True`: the data are CuPy arrays on the GPU (patterns NumPy
    or CuPy).

    `max_heights=None` (the live view, `assemble`, small scans): every height is allocated at
    once as one array, and `sinograms` is the current state of the whole grid (a view, not a
    copy). `max_heights=k` (the reconstruction of a scan of any size): a height's sinogram
    (n_omega, n_x, nq) is allocated when its first frame arrives and freed by `release(iz)`;
    adding a frame of a (k+1)-th height raises HeightLimitError before anything is allocated.
    A released height's arrays are cleared and reused by the next height, so through a scan of
    any number of heights the builder allocates at most k heights once (flat memory, no page
    faults per height).
    `sinogram(iz)`, `filled(iz)` and `complete(iz)` read one held height. `held` (the heights
    held, oldest first), `allocated_bytes`, and their maxima so far `peak_heights` and
    `peak_bytes`, say what the builder holds."""

    def __init__(self, info, nq, device=False, max_heights=None):
        self.grid = Grid.from_info(info)
        self.nq = int(nq)
        if max_heights is not None and int(max_heights) < 1:
            raise ValueError(f"max_heights must be >= 1 or None, got {max_heights!r}")
        self.max_heights = None if max_heights is None else int(max_heights)
        if device:
            import cupy as xp
        else:
            xp = np
        self.xp = xp
        self.shape = (self.grid.omega_deg.size, self.grid.x_mm.size, self.nq)  # of one height
        self._data, self._frame = {}, {}  # z index -> (n_omega, n_x, nq) data, (n_omega, n_x) frame indices
        self._spare = []  # (data, frame) of released heights, for the next heights
        self.data = self.frame = None  # the whole grid, max_heights=None only
        self.peak_heights = self.peak_bytes = 0
        if self.max_heights is None:
            nz = self.grid.z.size
            self.data = xp.zeros((nz, *self.shape), np.float32)
            self.frame = np.full((nz, *self.shape[:2]), -1, np.int64)  # which frame filled each point
            for iz in range(nz):
                self._data[iz], self._frame[iz] = self.data[iz], self.frame[iz]
            self._note_allocation()

    @staticmethod
    def nbytes(info, nq):
        """Bytes the sinograms of a whole scan take (to decide whether they fit: in the view)."""
        return Grid.from_info(info).z.size * SinogramBuilder.height_nbytes(info, nq)

    @staticmethod
    def height_nbytes(info, nq):
        """Bytes the sinogram of one height takes (n_omega x n_x x nq float32)."""
        grid = Grid.from_info(info)
        return grid.omega_deg.size * grid.x_mm.size * int(nq) * 4

    @property
    def held(self):
        """The z indices of the heights held, oldest first."""
        return tuple(self._data)

    @property
    def allocated_bytes(self):
        """Bytes of the sinograms and frame indices allocated now: held, or spare for the next."""
        pairs = [*zip(self._data.values(), self._frame.values()), *self._spare]
        return sum(int(d.nbytes) + int(f.nbytes) for d, f in pairs)

    def _note_allocation(self):
        self.peak_heights = max(self.peak_heights, len(self._data))
        self.peak_bytes = max(self.peak_bytes, self.allocated_bytes)

    def heights(self, z, indices):
        """The z index of each frame, from its z read-back."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        return _nearest("z", z, self.grid.z, indices, self.grid.z_step)

    def add(self, indices, patterns, omega, x, z):
        indices = np.asarray(indices, np.int64).reshape(-1)
        patterns = self.xp.asarray(patterns, np.float32).reshape(indices.size, -1)
        if patterns.shape[1] != self.nq:
            raise ValueError(f"patterns have {patterns.shape[1]} q bins, expected {self.nq}")
        iz, io, ix = self.grid.locate(omega, x, z, indices)
        new = [int(h) for h in np.unique(iz) if int(h) not in self._data]
        if new and self.max_heights is not None and len(self._data) + len(new) > self.max_heights:
            raise HeightLimitError(f"frames of height(s) {new} with {len(self._data)} of at most {self.max_heights} "
                                   f"heights held ({list(self._data)}): release one first")
        for h in new:
            if self._spare:
                self._data[h], self._frame[h] = self._spare.pop()
                self._data[h].fill(0)
                self._frame[h].fill(-1)
            else:
                self._data[h] = self.xp.zeros(self.shape, np.float32)
                self._frame[h] = np.full(self.shape[:2], -1, np.int64)
        if new:
            self._note_allocation()
        owner = np.empty(indices.size, np.int64)
        for h in np.unique(iz):
            sel = iz == h
            owner[sel] = self._frame[int(h)][io[sel], ix[sel]]
        cells = np.ravel_multi_index((iz, io, ix), (self.grid.z.size, *self.shape[:2]))
        clash = _clash(owner, indices, cells)
        if clash is not None:
            other, k = clash
            raise ValueError(f"frame {int(indices[k])} lands on the grid point of frame {other} "
                             f"(z {self.grid.z[iz[k]]:g}, omega {self.grid.omega_deg[io[k]]:g}, "
                             f"x {self.grid.x_mm[ix[k]]:g})")
        for h in np.unique(iz):
            sel = iz == h
            data, rows, cols = self._data[int(h)], io[sel], ix[sel]
            if self.xp is np:
                data[rows, cols] = patterns[sel]
            else:  # CuPy scatters with its own index arrays
                flat = np.ravel_multi_index((rows, cols), self.shape[:2])
                data.reshape(-1, self.nq)[self.xp.asarray(flat)] = patterns[self.xp.asarray(np.flatnonzero(sel))]
            self._frame[int(h)][rows, cols] = indices[sel]

    def sinogram(self, iz):
        """(n_omega, n_x, nq) sinogram of held height iz (NumPy or CuPy: where the builder keeps it)."""
        return self._data[int(iz)]

    def filled(self, iz):
        """(n_omega, n_x) bool: where a frame of held height iz has arrived (all False if not held)."""
        frame = self._frame.get(int(iz))
        return np.zeros(self.shape[:2], bool) if frame is None else frame >= 0

    def complete(self, iz):
        return bool(self.filled(iz).all())

    def release(self, iz):
        """Let height iz's sinogram go (max_heights set): its arrays serve the next height, and
        later frames of iz start it afresh. A caller still reading `sinogram(iz)` must be done
        with it (or copy it) before the next height's first frame."""
        if self.max_heights is None:
            raise ValueError("a builder of the whole grid (max_heights=None) holds every height")
        data, frame = self._data.pop(int(iz), None), self._frame.pop(int(iz), None)
        if data is not None:
            self._spare.append((data, frame))

    def reserve(self):
        """Allocate now, pages touched, the arrays of the heights this builder will hold (at
        most max_heights, at most the scan's heights), as spares for the first heights: a scan
        that cannot have them fails at its start, not days in, and its memory is flat from the
        first frame instead of growing while the first heights fill them page by page."""
        if self.max_heights is None:
            return
        for _ in range(min(self.max_heights, self.grid.z.size) - len(self._spare) - len(self._data)):
            data = self.xp.empty(self.shape, np.float32)
            data.fill(0)
            frame = np.empty(self.shape[:2], np.int64)
            frame.fill(-1)
            self._spare.append((data, frame))
        self._note_allocation()

    def drop_spares(self):
        """Free the released heights' arrays kept for reuse (the scan is over)."""
        self._spare.clear()

    @property
    def sinograms(self):
        """The whole grid's Sinograms (a view, not a copy): max_heights=None only."""
        if self.data is None:
            raise ValueError(f"this builder holds at most {self.max_heights} heights: read them with sinogram(iz)")
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
