"""Where scans are saved: one HDF5 file per session and sample, scans numbered in it.

The data root is `scan_saving: {base_path: ...}` in the session YAML, overridden by the
environment variable BLISS_LITE_DATA_ROOT; the file is `<root>/<session>/<sample>.h5`.
Changing `SCAN_SAVING.sample` in the shell starts a new file. Scan numbers continue from the
highest entry of the file, and scans not saved (`ct`, `save=False`) take numbers of the same
count, so a number names one scan of the session's file.

Before a scan starts, the data directory must be writable and its disk must have room for
the scan's estimated size (the writer still reserves each batch: see data/writer.py).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np

from bliss_lite.data.safe_open import DamagedFile
from bliss_lite.data.writer import DiskFullError, next_entry_number

DATA_ROOT_ENV = "BLISS_LITE_DATA_ROOT"
DEFAULT_BASE_PATH = "~/bliss_lite_data"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FRAME_RATIO = 0.5  # compressed / raw frame size, assumed: Pilatus frames reach ~0.13 at low counts
MARGIN_BYTES = 16 * 2**20  # the file's own structures and the writer's reserve


def estimated_bytes(specs, npoints):
    """Bytes a scan of `npoints` points of these channels adds to its file (frames at
    FRAME_RATIO of their raw size), with a 5 % and MARGIN_BYTES margin (open-ended scans,
    `npoints` None: the margin alone)."""
    per_point = 0.0
    for spec in specs:
        raw = np.dtype(spec.dtype).itemsize * int(np.prod(spec.shape, dtype=int))
        per_point += raw * FRAME_RATIO if spec.encoding != "raw" else raw
    return int(per_point * (npoints or 0) * 1.05) + MARGIN_BYTES


def human_bytes(nbytes):
    """'16.8 MB', '97.5 TB': decimal units, one decimal (whole bytes below a kB)."""
    if abs(nbytes) < 1000:
        return f"{nbytes:.0f} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        nbytes /= 1000
        if abs(nbytes) < 1000 or unit == "PB":
            return f"{nbytes:.1f} {unit}"


class ScanSaving:
    def __init__(self, session_name, base_path=None, sample="sample"):
        self.session_name = session_name
        self._base_path = base_path
        self.sample = sample
        self._last_numbers = {}  # file -> the last number given to a scan, saved or not

    @property
    def base_path(self) -> Path:
        root = os.environ.get(DATA_ROOT_ENV) or self._base_path or DEFAULT_BASE_PATH
        return Path(root).expanduser()

    @base_path.setter
    def base_path(self, value):
        self._base_path = str(value)

    @property
    def sample(self):
        return self._sample

    @sample.setter
    def sample(self, value):
        if not isinstance(value, str) or not SAFE_NAME.match(value):
            raise ValueError(f"SCAN_SAVING.sample must be a plain file name (letters, digits, _ . -), got {value!r}")
        self._sample = value

    @property
    def filename(self) -> Path:
        return self.base_path / self.session_name / f"{self.sample}.h5"

    def next_number(self, save=True) -> int:
        """The number of the next scan, saved or not: after the file's last entry and after
        every number this session gave for that file, so no two scans of a file share one (as
        in BLISS: an unsaved `ct` takes a number, and the file has no entry of that number).
        A new file (another sample) starts at 1, as a new BLISS dataset does."""
        filename = self.filename
        last = self._last_numbers.get(filename, 0)
        try:
            in_file = next_entry_number(filename) if save or filename not in self._last_numbers else 0
        except DamagedFile as exc:  # refused before anything moves: never append to a damaged file
            raise DamagedFile(f"{exc}; this scan was not started: set SCAN_SAVING.sample to save to a "
                              f"new file") from None
        number = max(in_file, last + 1)
        self._last_numbers[filename] = number
        return number

    def check_writable(self, specs=(), npoints=None):
        """Refuse, before anything moves, a data directory that cannot be created or written,
        or whose disk has no room for a scan of `npoints` points of these channels."""
        directory = self.filename.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the data directory {directory}: {exc.strerror}") from None
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"data directory {directory} is not writable")
        if self.filename.exists() and not os.access(self.filename, os.W_OK):
            raise PermissionError(f"data file {self.filename} is not writable")
        needed, free = estimated_bytes(specs, npoints), shutil.disk_usage(directory).free
        if needed > free:
            raise DiskFullError(errno.ENOSPC, f"no space for this scan in {directory}: it needs about "
                                f"{human_bytes(needed)}, the disk has {human_bytes(free)} free")

    def __info__(self):
        return (f"SCAN_SAVING (session {self.session_name})\n  base_path: {self.base_path}\n"
                f"  sample:    {self.sample}\n  filename:  {self.filename}")

    def __repr__(self):
        return f"<ScanSaving {self.filename}>"


def session_scan_saving(session):
    """A ScanSaving made from the session's `scan_saving` configuration (its ScanContext keeps
    the one its scans use: bliss_lite.scans.context)."""
    options = dict(session.scan_saving_config or {})
    return ScanSaving(session.name, options.get("base_path"), options.get("sample", "sample"))
