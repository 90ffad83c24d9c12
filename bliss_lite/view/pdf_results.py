"""PDF-CT results of a scan for the live view: G(r) of one voxel, and maps over an r window.

G(r) of every voxel is far too large for Redis (a 400 x 400 slice of 2001 r points is 1.3 GB),
so the pdf hook and the `pdf_scan` job write it only to the scan's folder (`pdf.h5`: gr (nz,
n, n, nr), r; processing/pdf_scan.py). The view reads it from there where it can reach the
scan's file (the same file system); elsewhere the scan simply shows no PDF-CT panel. Results
count as there once the entry's NXprocess `pdf` is written, which happens after `pdf.h5` is
complete. Each request opens the file, reads what it needs (one voxel's G(r), or one height's
r window) and closes it; nothing is held open between requests. A job run again replaces
`pdf.h5` (perhaps on another r grid): the live scan then finds the results anew (`stale`), and
a request that meets the file while it changes is Unavailable (503, try again), never a crash.
A pdf.h5 or master file that is there but damaged (truncated, not HDF5) is DamagedFile, naming
the file and what is wrong: the view says so (409), where a file not there yet stays silent.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from bliss_lite.data.safe_open import DamagedFile, open_hdf5
from bliss_lite.data.scan_files import reduction_file
from bliss_lite.processing.pdf_ct import window_indices

UNITS = {"r": "A", "G": "A^-2"}


class Unavailable(Exception):
    """The results are being written again: the request may succeed in a moment (HTTP 503)."""


class PdfResults:
    """Where a scan's PDF-CT results are and what they hold (read once they exist)."""

    def __init__(self, path, shape, r, windows, maps, axes, read_version=None):
        self.path, self.shape, self.r = path, shape, r
        self.windows, self.maps, self.axes = windows, maps, axes
        self.read_version = read_version  # the version of pdf.h5 these figures were read from

    @classmethod
    def find(cls, filename, entry):
        """The results of `entry` in master file `filename`, or None while there are none.
        DamagedFile (naming the file) when pdf.h5 or the master file is there but damaged."""
        path = reduction_file(filename, entry, "pdf")
        if not path.is_file():
            return None
        try:
            read_version = os.stat(path).st_mtime_ns
            with open_hdf5(filename, wait=0) as h5:
                process = h5.get(f"{entry}/pdf")
                if process is None or "gr" not in process or "configuration" not in process:
                    return None  # pdf.h5 is there, the NXprocess not yet
                config = json.loads(process["configuration"][()])
                axes = {k: np.asarray(process[f"gr/{k}"][()], float) for k in ("z", "y", "x")}
            with open_hdf5(path, wait=0) as h5:
                shape, r = tuple(h5["gr"].shape), np.asarray(h5["r"][()], float)
                maps = sorted(h5.get("maps", {}))
        except DamagedFile:
            raise  # there, but truncated or no HDF5 file: said, not hidden
        except (OSError, KeyError, ValueError):
            return None  # gone, being written, or not what pdf_scan writes: no PDF panel
        windows = {str(k): [float(v[0]), float(v[1])] for k, v in (config.get("windows") or {}).items()}
        return cls(path, shape, r, windows, maps, axes, read_version)

    @property
    def version(self):
        """Changes when a job writes the results again (images are cached by it)."""
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError as exc:
            raise self._unavailable(exc) from None

    def stale(self):
        """True once pdf.h5 is not the file these figures were read from (a job wrote it again,
        or it is gone)."""
        try:
            return os.stat(self.path).st_mtime_ns != self.read_version
        except OSError:
            return True

    def _unavailable(self, exc):
        return Unavailable(f"{self.path}: PDF-CT results being written again ({exc}); try again in a moment")

    def _read(self, what):
        """what(gr dataset), refused as Unavailable while the file is not the one described."""
        if self.stale():
            raise Unavailable(f"{self.path}: PDF-CT results written again since they were read; try again in "
                              "a moment")
        try:
            with open_hdf5(self.path, wait=0) as h5:
                if tuple(h5["gr"].shape) != tuple(self.shape):
                    raise Unavailable(f"{self.path}: PDF-CT results written again with another shape "
                                      f"{tuple(h5['gr'].shape)}; try again in a moment")
                return what(h5["gr"])
        except DamagedFile:
            raise  # the file these figures were read from, damaged since (it is replaced whole)
        except (OSError, KeyError) as exc:
            raise self._unavailable(exc) from None

    def describe(self):
        nz, ny, nx, nr = self.shape
        step = float(self.r[1] - self.r[0]) if nr > 1 else 0.0
        return {"nz": nz, "ny": ny, "nx": nx, "nr": nr, "r_min": float(self.r[0]), "r_max": float(self.r[-1]),
                "r_step": step, "units": UNITS, "windows": self.windows, "maps": self.maps}

    def voxel(self, z, row, col):
        """G(r) of voxel (z, row, col), with where it is (mm) and the units."""
        g = np.asarray(self._read(lambda gr: gr[z, row, col, :]), float)
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
        g = self._read(lambda gr: gr[z, :, :, start:stop])
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
