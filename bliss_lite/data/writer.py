"""HDF5/NeXus writer: one file per session/sample, one NXentry named "N.1" per scan.

Layout (docs/architecture.md): title, start_time, end_time, end_reason; instrument/positioners/<motor>
(the start snapshot); instrument/<axis>/value (NXpositioner) and instrument/<counter>/data
(NXdetector, NXmonitor for i0 and it) filled point by point, every dataset with units;
sample (NXsample); measurement/<channel> soft links; an NXdata default plot (a mesh's an
image, made at close: nexus_parts.py); where the scan's sample names a PONI, the detector's
geometry (NXtransformations) and instrument/monochromator (nexus_parts.py).
Everything an entry holds is created when it opens, then the file switches to SWMR, so other
processes can read it (h5py.File(path, "r", swmr=True)) while the scan writes and flushes.
Detector frames (channels of encoding "bslz4") go, as the detector compressed them, into data
files of `frames_per_file` frames beside the master file, and `instrument/<detector>/data` is
a Virtual Dataset over them (`frame_files`: how the VDS and SWMR get along). Other images are
stored in the entry, one frame per chunk, Bitshuffle-LZ4 (hdf5plugin). Imports neither gevent
nor the shell.

A full disk: HDF5 does not survive a write that fails half-way (`disk_room`). So the writer
reserves the room for each batch on disk (posix_fallocate), in the master file and in the
data file(s) the batch's frames go to, before HDF5 sees it: if the disk, a quota or the
file-size limit says no, the batch is refused whole (DiskFullError), HDF5 never starts a write
it cannot finish, and the entry still closes cleanly with every point written before; every
data file already closed is whole. At close each file is cut back to the end HDF5 records,
dropping the unused reserve.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from bliss_lite.data.disk_room import INDEX_BYTES as INDEX_BYTES  # re-exported: the writer's figures
from bliss_lite.data.disk_room import META_SLACK as META_SLACK
from bliss_lite.data.disk_room import NO_ROOM as NO_ROOM
from bliss_lite.data.disk_room import DiskFullError, FileRoom, NoRoom
from bliss_lite.data.frame_files import (
    VDS_BYTES,
    VDS_BYTES_PER_FILE,
    FrameFiles,
    make_virtual_frames,
)
from bliss_lite.data.model import END_REASONS
from bliss_lite.data.nexus_parts import (
    create_sample,
    frames_geometry,
    mesh_bytes,
    unit_of,
    write_detector_geometry,
    write_mesh_image,
)
from bliss_lite.data.safe_open import open_hdf5

FRAME_MARKS = ("frames_dropped", "frames_duplicated")  # per detector, set at close
ENTRY_NAME = re.compile(r"^(\d+)\.1$")
log = logging.getLogger(__name__)
STRING = h5py.string_dtype()


def _now_iso():
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def next_entry_number(path) -> int:
    """1 + the highest "N.1" entry in the file (1 for a new file)."""
    path = Path(path)
    if not path.exists():
        return 1
    with open_hdf5(path) as h5:  # also while another process writes
        numbers = [int(m.group(1)) for name in h5 if (m := ENTRY_NAME.match(name))]
    return max(numbers, default=0) + 1


def _nx(group, nx_class):
    group.attrs["NX_class"] = nx_class
    return group



# The master file is opened without HDF5's chunk cache (rdcc_nbytes=0). With the cache,
# HDF5 1.14 kept ~64 KB for every chunk of an appended scalar dataset ever written: the scan
# process grew ~5.5 MB per 100,000 points of 7 channels, without end (a million-frame
# XRD-CT: +6 MB per 100,000 frames). Its frames go to data files by write_direct_chunk, which
# never used the cache, and appends of points write through to the file just as well.
CHUNK_CACHE_BYTES = 0

def _resizable(group, name, spec):
    shape = tuple(spec.shape)
    options = {}
    if len(shape) >= 2:  # images: one frame per chunk, compressed at the source's codec
        options = dict(chunks=(1, *shape), **hdf5plugin.Bitshuffle(cname="lz4"))
    else:
        options = dict(chunks=(max(1, 65536 // max(1, int(np.prod(shape, dtype=int))) // 8), *shape))
    dataset = group.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                                   dtype=np.dtype(spec.dtype), **options)
    dataset.attrs["units"] = unit_of(spec)
    return dataset


class EntryWriter:
    """One scan's NXentry, open for appending points until `close(end_reason)`.

    `npoints`: the scan's number of points when known; its frames' Virtual Datasets are then
    made with the entry, over the planned data files (`frame_files`)."""

    def __init__(self, path, number, *, title, positioners=None, axes=(), counters=(), plot=None, scan_info=None,
                 npoints=None, sub=1):
        self.path = Path(path)
        self.number = int(number)
        self.name = f"{number}.{int(sub)}"  # sub > 1: a continuation of scan `number` (a resumed scan)
        self.npoints = npoints
        self.scan_info = scan_info or {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.folder = self.number if int(sub) == 1 else self.name  # scan_files.scan_folder's key
        self.frames = {spec.name: FrameFiles(self.path, self.folder, spec, npoints)
                       for spec in counters if spec.encoding == "bslz4"}  # detector frames, in data files
        for files in self.frames.values():
            if files.path(0).exists():
                raise FileExistsError(f"{files.path(0)}: a data file of an earlier scan {self.number} is there: "
                                      f"move it away, or set SCAN_SAVING.sample to save to a new file")
        try:
            self.h5 = open_hdf5(self.path, "a", libver="latest", rdcc_nbytes=CHUNK_CACHE_BYTES)
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
        self.room = None
        self._entry_made = False  # until then, closing maps no frames
        try:
            self.room = FileRoom(self.path)  # our own handle, to reserve room and trim; HDF5 keeps its own
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
        self._entry_made = True

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
            snapshot[motor].attrs["units"] = unit or "a.u."
        measurement = _nx(entry.create_group("measurement"), "NXcollection")
        self._create_suspensions(entry)
        recorded = {}
        for specs, nx_class, field in ((axes, "NXpositioner", "value"), (counters, "NXdetector", "data")):
            for spec in specs:
                part_of = spec.extra.get("part_of")  # a per-frame field of a detector: its `valid`
                if part_of is not None:
                    group, field = instrument.require_group(part_of), spec.extra.get("field", spec.name)
                    self.datasets[spec.name] = _resizable(group, field, spec)
                    self.counts[spec.name] = 0
                    measurement[spec.name] = h5py.SoftLink(f"/{self.name}/instrument/{part_of}/{field}")
                    continue
                group = _nx(instrument.create_group(spec.name), spec.extra.get("nexus_class", nx_class))  # NXmonitor
                if nx_class == "NXpositioner":
                    recorded[spec.name] = group
                if spec.name in self.frames:
                    self._create_frames(group, spec)
                else:
                    self.datasets[spec.name] = _resizable(group, field, spec)
                self.counts[spec.name] = 0
                measurement[spec.name] = h5py.SoftLink(f"/{self.name}/instrument/{spec.name}/{field}")
        create_sample(entry, self.path.stem, self.scan_info.get("sample"), recorded)
        self._create_geometry(instrument, [spec for spec in counters if spec.name in self.frames])
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

    def _create_geometry(self, instrument, detectors):
        """The detector geometry and the wavelength (nexus_parts.write_detector_geometry) of the
        PONI the scan's sample description names, for the frames as stored: the whole detector,
        or the ROI the frame channel (`spec.extra["roi"]`) or the scan (scan_info["xrdct"]["roi"])
        recorded. Frames of another shape (a ROI not recorded): the wavelength alone. A PONI that
        cannot be read: said, and the scan runs."""
        poni = (self.scan_info.get("sample") or {}).get("poni")
        if not poni or not detectors:
            return
        recorded = self.scan_info.get("xrdct") or {}
        for spec in detectors:
            roi = spec.extra.get("roi") or (recorded.get("roi") if recorded.get("detector") == spec.name else None)
            try:
                ai, full = frames_geometry(poni, roi, spec.shape)
            except Exception as exc:  # noqa: BLE001 - the geometry is metadata: the scan still runs
                log.warning("%s entry %s: no detector geometry for %s: %s", self.path, self.name, spec.name, exc)
                continue
            write_detector_geometry(instrument, instrument[spec.name] if ai is not None else None, ai or full,
                                    model=full.detector.name)

    def _create_suspensions(self, entry):
        """`suspensions/{start_time, end_time, reason}`: one row per time the scan waited for
        its suspenders or a pause (made now, empty: SWMR allows no new dataset later)."""
        group = _nx(entry.create_group("suspensions"), "NXcollection")
        for name, dtype in (("start_time", "float64"), ("end_time", "float64"), ("reason", STRING)):
            dataset = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(64,))
            if name != "reason":
                dataset.attrs["units"] = "s"  # since the epoch

    def add_suspension(self, start, end, reason):
        """One row of `suspensions` (start and end in seconds since the epoch), flushed."""
        group = self.h5[f"{self.name}/suspensions"]
        self._reserve(3 * 64 * 8 + len(str(reason).encode()), "a suspension")
        row = len(group["start_time"])
        for name, value in (("start_time", float(start)), ("end_time", float(end)), ("reason", str(reason))):
            group[name].resize(row + 1, axis=0)
            group[name][row] = value
        self.h5.flush()

    def _create_frames(self, group, spec):
        """A detector's group: what SWMR will not let us add later is made now (its frame marks,
        and, when the number of frames is known, the VDS over the planned data files)."""
        files = self.frames[spec.name]
        group.create_dataset("frames_per_file", data=np.int64(files.per_file)).attrs["units"] = "1"
        for mark in FRAME_MARKS:
            group.create_dataset(mark, data=np.int64(0)).attrs["units"] = "1"
        if files.planned is not None:
            make_virtual_frames(group, spec, self.path, self.folder, files.planned)

    def append(self, batches):
        """Append {channel: points} along the first axis, then flush for SWMR readers. The
        room is reserved first, in every file the batch goes to: on a full disk nothing of the
        batch is written."""
        batches = {name: self._prepared(name, values) for name, values in batches.items()}
        plain = {name: values for name, values in batches.items() if name not in self.frames}
        frames = {name: values for name, values in batches.items() if name in self.frames}
        try:
            self.room.reserve(self.h5, sum(self._bytes_needed(name, values) for name, values in plain.items()))
            for name, chunks in frames.items():
                self.frames[name].prepare(chunks)
        except NoRoom as exc:
            for files in self.frames.values():
                files.cancel()
            raise self._disk_full(exc, "the next points") from None
        for name, values in plain.items():
            dataset = self.datasets[name]
            start = self.counts[name]
            dataset.resize(start + len(values), axis=0)
            dataset[start:start + len(values)] = values
        try:
            for name in frames:  # frames already compressed by the detector: stored as they are
                self.frames[name].write()  # flushed (a full data file closed) before the entry is
        finally:
            for name in frames:
                self.counts[name] = self.frames[name].count
        self.h5.flush()
        for name, values in plain.items():
            self.counts[name] += len(values)

    def _prepared(self, name, values):
        if name in self.frames:
            return list(values)
        dataset = self.datasets[name]
        return np.asarray(values, dtype=dataset.dtype).reshape((-1, *dataset.shape[1:]))

    def _bytes_needed(self, name, values):
        """Bytes the file may grow by for these points: plain values by the whole chunks they
        start (HDF5 allocates a chunk at once)."""
        dataset = self.datasets[name]
        per_chunk = dataset.chunks[0]
        start, end = self.counts[name], self.counts[name] + len(values)
        new_chunks = -(-end // per_chunk) - (-(-start // per_chunk))
        return new_chunks * per_chunk * dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=int))

    def _reserve(self, nbytes, what):
        """Make the master file own the blocks HDF5 will write next, or raise DiskFullError."""
        try:
            self.room.reserve(self.h5, nbytes)
        except NoRoom as exc:
            raise self._disk_full(exc, what) from None

    def _disk_full(self, exc, what):
        kept = min(self.counts.values(), default=0)
        where = "" if exc.filename == str(self.path) else f" in its data file {exc.filename}"
        return DiskFullError(exc.errno, f"{self.path}: disk full ({exc.strerror}): no room for {what} of entry "
                                        f"{self.name}{where}; the file keeps its first {kept} points")

    def close(self, end_reason="SUCCESS", frame_marks=None):
        """End time and reason; `frame_marks` {detector: {"frames_dropped": n, ...}}. Then the
        data files are closed and, where the frames are not the planned ones, the VDS of each
        detector is made again, over exactly the frames written (the master reopened, no SWMR)."""
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
                    if mark in FRAME_MARKS and detector in self.frames:
                        entry[f"instrument/{detector}/{mark}"][()] = value
            self.h5.flush()
        finally:
            self._close_file()  # whatever happened: the next scan can open the file again

    def _close_file(self):
        """Close HDF5's handle and the data files (each cut to its frames), map the frames
        written, then cut the unused reserve off the end of the file (only after a clean close:
        a failed one may have left the recorded end stale)."""
        try:
            try:
                if self.h5.id.valid:
                    self.h5.close()
            finally:
                written = self._close_frame_files()
            if self.room is not None:
                self.room.trim()
            if self._entry_made:
                self._map_written({name: counts for name, counts in written.items()
                                   if not self.frames[name].as_planned})
                self._write_mesh()
                self.room.trim()
        finally:
            self._entry_made = False
            if self.room is not None:
                self.room.close()

    def _close_frame_files(self):
        """{detector: [frames in each data file]}, every data file closed whatever fails."""
        written, errors = {}, []
        for name, files in self.frames.items():
            try:
                written[name] = files.close()
            except Exception as exc:  # noqa: BLE001 - the other files still close
                errors.append(exc)
        if errors:
            raise errors[0]
        return written

    def _map_written(self, written):
        """Make each detector's VDS again over the data files written: {detector: [frames per file]}."""
        if not written:
            return
        self.h5 = open_hdf5(self.path, "r+", libver="latest")
        try:
            try:
                self.room.reserve(self.h5, sum(VDS_BYTES + VDS_BYTES_PER_FILE * len(c) for c in written.values()))
            except NoRoom as exc:  # the planned VDS stays: frames not written read as its fill value
                raise self._disk_full(exc, "the map of its frames") from None
            for name, counts in written.items():
                group = self.h5[f"{self.name}/instrument/{name}"]
                if "data" in group:
                    del group["data"]
                make_virtual_frames(group, self.frames[name].spec, self.path, self.folder, counts)
        finally:
            self.h5.close()


    def _write_mesh(self):
        """A mesh's image plot (nexus_parts.write_mesh_image), now that its points are all written
        (the master reopened, no SWMR); left out, the entry opening on its 1-D plotselect, where
        the disk has no room for it."""
        nbytes, signal = mesh_bytes(self.scan_info), (self.scan_info.get("plot") or {}).get("signal")
        if not nbytes or not signal:
            return
        self.h5 = open_hdf5(self.path, "r+", libver="latest")
        try:
            try:
                self.room.reserve(self.h5, nbytes)
            except NoRoom:
                return
            write_mesh_image(self.h5[self.name], self.scan_info, signal)
        finally:
            self.h5.close()


def read_entry(path, number):
    """{channel: array} of measurement/ in entry "number.1" (a quick look, as get_data gives)."""
    with open_hdf5(path) as h5:
        measurement = h5[f"{number}.1/measurement"]
        return {name: measurement[name][()] for name in measurement}

