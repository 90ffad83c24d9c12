"""PDF-CT results of a scan for the live view: G(r) of one voxel, and maps over an r window.

G(r) of every voxel is far too large for Redis (a 400 x 400 slice of 2001 r points is 1.3 GB),
so the pdf hook and the `pdf_scan` job write it only to the scan's folder (`pdf.h5`: gr (nz,
n, n, nr), r; processing/pdf_scan.py). The view reads it from there where it can reach the
scan's file (the same file system); elsewhere the scan simply shows no PDF-CT panel. Results
count as there once the entry's NXprocess `pdf` is written, which happens after `pdf.h5` is
complete. Each request opens the file, reads what it needs (one voxel's G(r), or one height's
r window) and closes it; nothing is held open between requests.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.data.scan_files import reduction_file
from bliss_lite.processing.pdf_ct import window_indices

UNITS = {"r": "A", "G": "A^-2"}


class PdfResults:
    """Where a scan's PDF-CT results are and what they hold (read once they exist)."""

    def __init__(self, path, shape, r, windows, maps, axes):
        self.path, self.shape, self.r = path, shape, r
        self.windows, self.maps, self.axes = windows, maps, axes

    @classmethod
    def find(cls, filename, entry):
        """The results of `entry` in master file `filename`, or None while there are none."""
        path = reduction_file(filename, entry, "pdf")
        if not path.is_file():
            return None
        try:
            with open_hdf5(filename, wait=0) as h5:
                process = h5.get(f"{entry}/pdf")
                if process is None or "gr" not in process or "configuration" not in process:
                    return None  # pdf.h5 is there, the NXprocess not yet
                config = json.loads(process["configuration"][()])
                axes = {k: np.asarray(process[f"gr/{k}"][()], float) for k in ("z", "y", "x")}
            with open_hdf5(path, wait=0) as h5:
                shape, r = tuple(h5["gr"].shape), np.asarray(h5["r"][()], float)
                maps = sorted(h5.get("maps", {}))
        except (OSError, KeyError, ValueError):
            return None  # being written, or not what pdf_scan writes: no PDF panel
        windows = {str(k): [float(v[0]), float(v[1])] for k, v in (config.get("windows") or {}).items()}
        return cls(path, shape, r, windows, maps, axes)

    @property
    def version(self):
        """Changes when a job writes the results again (images are cached by it)."""
        return os.stat(self.path).st_mtime_ns

    def describe(self):
        nz, ny, nx, nr = self.shape
        step = float(self.r[1] - self.r[0]) if nr > 1 else 0.0
        return {"nz": nz, "ny": ny, "nx": nx, "nr": nr, "r_min": float(self.r[0]), "r_max": float(self.r[-1]),
                "r_step": step, "units": UNITS, "windows": self.windows, "maps": self.maps}

    def voxel(self, z, row, col):
        """G(r) of voxel (z, row, col), with where it is (mm) and the units."""
        with open_hdf5(self.path, wait=0) as h5:
            g = np.asarray(h5["gr"][z, row, col, :], float)
        return {"z": z, "row": row, "col": col, "z_mm": float(self.axes["z"][z]), "y_mm": float(self.axes["y"][row]),
                "x_mm": float(self.axes["x"][col]), "r": self.r.tolist(),
                "G": [v if math.isfinite(v) else None for v in g.tolist()], "units": UNITS}

    def window(self, r_min, r_max):
        """(start, stop) of the r points a window [r_min, r_max] (A) averages; refuses a window
        outside the r grid or upside down, naming the argument."""
        lo, hi = float(self.r[0]), float(self.r[-1])
        for name, value in (("r_min", r_min), ("r_max", r_max)):
            if not lo <= value <= hi:
                raise ValueError(f"{name}={value:g}: outside the r grid, which runs from {lo:g} to {hi:g} A")
        if not r_min < r_max:
            raise ValueError(f"r_max={r_max:g}: must be greater than r_min={r_min:g} (A)")
        return window_indices(self.r, r_min, r_max)

    def window_map(self, z, r_min, r_max):
        """(map (ny, nx) float32: the mean of G(r) over the window, in A^-2, and the r values
        of its first and last point)."""
        start, stop = self.window(r_min, r_max)
        with open_hdf5(self.path, wait=0) as h5:
            g = h5["gr"][z, :, :, start:stop]
        return g.mean(axis=-1, dtype=np.float32), (float(self.r[start]), float(self.r[stop - 1]))


def number(raw, name):
    """A query argument that must be a finite number (in A)."""
    if raw is None or raw == "":
        raise ValueError(f"{name}: missing; give the r window's bound in A")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: give a number (A)") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={raw!r}: give a finite number (A)")
    return value
