"""HDF5/NeXus writer: one file per session/sample, one NXentry named "N.1" per scan.

Layout (docs/architecture.md): title, start_time, end_time, end_reason; instrument/positioners/<motor>
(the start snapshot); instrument/<axis>/value (NXpositioner) and instrument/<counter>/data
(NXdetector) filled point by point; measurement/<channel> soft links; an NXdata default plot.
Everything an entry holds is created when it opens, then the file switches to SWMR, so other
processes can read it (h5py.File(path, "r", swmr=True)) while the scan writes and flushes.
Images are stored one frame per chunk, Bitshuffle-LZ4 (hdf5plugin). Imports neither gevent
nor the shell.

A full disk: HDF5 does not survive a write that fails half-way. It has already allocated
the space, so the superblock it writes when closing records an end of file beyond the real
one, and `h5py.File(path)` then refuses the whole file ("truncated file"). So the writer
reserves the room for each batch on disk (posix_fallocate) before HDF5 sees it: if the disk,
a quota or the file-size limit says no, the batch is refused whole (DiskFullError), HDF5
never starts a write it cannot finish, and the entry still closes cleanly with every point
written before. At close the file is cut back to the end HDF5 records, dropping the unused reserve.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct
from datetime import datetime, timezone
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from bliss_lite.data.model import END_REASONS

FRAME_MARKS = ("frames_dropped", "frames_duplicated")  # per detector, set at close
ENTRY_NAME = re.compile(r"^(\d+)\.1$")
STRING = h5py.string_dtype()
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # disk full, file-size limit, quota
META_SLACK = 2**18  # bytes reserved beyond each batch for HDF5's own structures (headers, index blocks)
INDEX_BYTES = 64  # per frame, for its chunk-index entry (measured: ~25)


class DiskFullError(OSError):
    """No room for the scan's data: the disk, a quota or the file-size limit. Built as
    DiskFullError(errno, message); prints the message alone (it names the file)."""

    def __str__(self):
        return self.strerror


def _now_iso():
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def next_entry_number(path) -> int:
    """1 + the highest "N.1" entry in the file (1 for a new file)."""
    path = Path(path)
    if not path.exists():
        return 1
    with h5py.File(path, "r", locking=False, swmr=True) as h5:  # also while another process writes
        numbers = [int(m.group(1)) for name in h5 if (m := ENTRY_NAME.match(name))]
    return max(numbers, default=0) + 1


def _nx(group, nx_class):
    group.attrs["NX_class"] = nx_class
    return group


def _resizable(group, name, spec):
    shape = tuple(spec.shape)
    options = {}
    if len(shape) >= 2:  # images: one frame per chunk, compressed at the source's codec
        options = dict(chunks=(1, *shape), **hdf5plugin.Bitshuffle(cname="lz4"))
    else:
        options = dict(chunks=(max(1, 65536 // max(1, int(np.prod(shape, dtype=int))) // 8), *shape))
    dataset = group.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                                   dtype=np.dtype(spec.dtype), **options)
    if spec.unit:
        dataset.attrs["units"] = spec.unit
    return dataset


class EntryWriter:
    """One scan's NXentry, open for appending points until `close(end_reason)`."""

    def __init__(self, path, number, *, title, positioners=None, axes=(), counters=(), plot=None, scan_info=None):
        self.path = Path(path)
        self.name = f"{number}.1"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.h5 = h5py.File(self.path, "a", libver="latest", locking=False)
        except OSError as exc:
            hint = ""
            if "already open for write" in str(exc):
                hint = (" (a writer that died left it marked open: `h5clear -s FILE` clears the mark, "
                        "or set SCAN_SAVING.sample to save to a new file)")
            raise OSError(f"{self.path}: cannot open the data file for writing: {exc}{hint}") from None
        if self.name in self.h5:
            self.h5.close()
            raise FileExistsError(f"{self.path}: entry {self.name} already exists")
        self.datasets = {}
        self.counts = {}  # points per channel written and flushed
        self.encoded = set()  # channels whose points arrive as compressed chunks
        self._fd = None
        try:
            if hasattr(os, "posix_fallocate"):  # our own handle, to reserve room and trim; HDF5 keeps its own
                self._fd = os.open(self.path, os.O_RDWR)
            self._reserve(0, "the new entry")
            self._create(title, positioners or {}, list(axes), list(counters), plot)
            if scan_info is not None:  # JSON, so offline reprocessing knows the scan's parameters
                entry = self.h5[self.name]
                entry["scan_info"] = json.dumps(scan_info, default=str)
                entry["scan_info"].attrs["type"] = "application/json"
        except BaseException:
            self._close_file()
            raise
        self.h5.swmr_mode = True

    def _create(self, title, positioners, axes, counters, plot):
        entry = _nx(self.h5.create_group(self.name), "NXentry")
        entry["title"] = title
        entry["start_time"] = _now_iso()
        entry.create_dataset("end_time", data=b"", dtype="S40")  # fixed size: written in SWMR
        entry.create_dataset("end_reason", data=b"", dtype="S16")
        instrument = _nx(entry.create_group("instrument"), "NXinstrument")
        snapshot = _nx(instrument.create_group("positioners"), "NXcollection")
        for motor, (value, unit) in positioners.items():
            snapshot[motor] = value
            if unit:
                snapshot[motor].attrs["units"] = unit
        measurement = _nx(entry.create_group("measurement"), "NXcollection")
        for specs, nx_class, field in ((axes, "NXpositioner", "value"), (counters, "NXdetector", "data")):
            for spec in specs:
                group = _nx(instrument.create_group(spec.name), nx_class)
                self.datasets[spec.name] = _resizable(group, field, spec)
                if spec.encoding == "bslz4":
                    self.encoded.add(spec.name)
                    for mark in FRAME_MARKS:  # created now: SWMR cannot add datasets later
                        group.create_dataset(mark, data=np.int64(0))
                self.counts[spec.name] = 0
                measurement[spec.name] = h5py.SoftLink(f"/{self.name}/instrument/{spec.name}/{field}")
        signal = (plot or {}).get("signal") or next((s.name for s in counters if len(s.shape) == 0), None)
        if signal is not None:
            nxdata = _nx(entry.create_group("plotselect"), "NXdata")
            nxdata[signal] = h5py.SoftLink(self.datasets[signal].name)
            nxdata.attrs["signal"] = signal
            axis = (plot or {}).get("axis") or (axes[0].name if axes else None)
            if axis is not None:
                nxdata[axis] = h5py.SoftLink(self.datasets[axis].name)
                nxdata.attrs["axes"] = [axis]
            entry.attrs["default"] = "plotselect"
        self.h5.attrs["default"] = self.name

    def append(self, batches):
        """Append {channel: points} along the first axis, then flush for SWMR readers. The
        room is reserved first: on a full disk nothing of the batch is written."""
        batches = {name: self._prepared(name, values) for name, values in batches.items()}
        self._reserve(sum(self._bytes_needed(name, values) for name, values in batches.items()),
                      "the next points")
        for name, values in batches.items():
            dataset = self.datasets[name]
            start = self.counts[name]
            dataset.resize(start + len(values), axis=0)
            if name in self.encoded:  # frames already compressed by the detector: stored as they are
                for i, chunk in enumerate(values):
                    dataset.id.write_direct_chunk((start + i,) + (0,) * (dataset.ndim - 1), chunk)
            else:
                dataset[start:start + len(values)] = values
        self.h5.flush()
        for name, values in batches.items():
            self.counts[name] += len(values)

    def _prepared(self, name, values):
        if name in self.encoded:
            return list(values)
        dataset = self.datasets[name]
        return np.asarray(values, dtype=dataset.dtype).reshape((-1, *dataset.shape[1:]))

    def _bytes_needed(self, name, values):
        """Bytes the file may grow by for these points: frames as compressed (and their index
        entries), plain values by the whole chunks they start (HDF5 allocates a chunk at once)."""
        if name in self.encoded:
            return sum(len(chunk) + INDEX_BYTES for chunk in values)
        dataset = self.datasets[name]
        per_chunk = dataset.chunks[0]
        start, end = self.counts[name], self.counts[name] + len(values)
        new_chunks = -(-end // per_chunk) - (-(-start // per_chunk))
        return new_chunks * per_chunk * dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=int))

    def _reserve(self, nbytes, what):
        """Make the file own the blocks HDF5 will write next, or raise DiskFullError."""
        if self._fd is None:
            return
        end = self.h5.id.get_filesize() + nbytes + META_SLACK  # HDF5 allocates at its end of file
        size = os.fstat(self._fd).st_size
        if end <= size:
            return  # reserved by an earlier call
        try:
            os.posix_fallocate(self._fd, size, end - size)
        except OSError as exc:
            if exc.errno in NO_ROOM:
                kept = min(self.counts.values(), default=0)
                raise DiskFullError(exc.errno, f"{self.path}: disk full ({exc.strerror}): no room for {what} "
                                    f"of entry {self.name}; the file keeps its first {kept} points") from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._fd = _closed(self._fd)  # a file system that cannot reserve: write without it

    def close(self, end_reason="SUCCESS", frame_marks=None):
        """End time and reason; `frame_marks` {detector: {"frames_dropped": n, ...}}."""
        if end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {', '.join(END_REASONS)}, got {end_reason!r}")
        if not self.h5.id.valid:
            self._close_file()
            return
        try:
            entry = self.h5[self.name]
            entry["end_time"][()] = _now_iso().encode()
            entry["end_reason"][()] = end_reason.encode()
            for detector, marks in (frame_marks or {}).items():
                for mark, value in marks.items():
                    if mark in FRAME_MARKS and detector in self.encoded:
                        entry[f"instrument/{detector}/{mark}"][()] = value
            self.h5.flush()
        finally:
            self._close_file()  # whatever happened: the next scan can open the file again

    def _close_file(self):
        """Close HDF5's handle, then cut the unused reserve off the end of the file (only after
        a clean close: a failed one may have left the recorded end stale)."""
        try:
            if self.h5.id.valid:
                self.h5.close()
            end = _recorded_end(self._fd) if self._fd is not None else None
            if end is not None and os.fstat(self._fd).st_size > end:
                os.ftruncate(self._fd, end)
        finally:
            if self._fd is not None:
                self._fd = _closed(self._fd)


def _recorded_end(fd):
    """The end of file HDF5 records in a version 2/3 superblock (libver="latest"), else None."""
    head = os.pread(fd, 48, 0)
    if len(head) < 44 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] < 2 or head[9] != 8:
        return None
    base, _extension, end = struct.unpack_from("<QQQ", head, 12)
    return base + end


def _closed(fd):
    os.close(fd)
    return None


def read_entry(path, number):
    """{channel: array} of measurement/ in entry "number.1" (a quick look, as get_data gives)."""
    with h5py.File(path, "r", locking=False, swmr=True) as h5:
        measurement = h5[f"{number}.1/measurement"]
        return {name: measurement[name][()] for name in measurement}

