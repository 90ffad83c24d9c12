"""A scan's detector frames in data files of `frames_per_file` frames each, as LImA saves them.

Each data file (`scan_files.data_file(master, number, detector, k)`, in the scan's folder
beside the master file) holds one dataset, `/data` (frames, rows, columns): one frame per
chunk, Bitshuffle-LZ4 (hdf5plugin), the detector's compressed chunks stored as they are
(`write_direct_chunk`, no second compression), `units` as the channel says. A file is opened
(created) for the first frame that goes into it, written in SWMR mode (flushed after every
batch, so other processes read it while it fills) and closed, whole and valid, as soon as it
holds `frames_per_file` frames. Its room on disk is reserved before each batch
(`disk_room.FileRoom`), as the master file's is.

The entry's `instrument/<detector>/data` is an HDF5 Virtual Dataset over those files, with
paths relative to the master file's folder (HDF5 looks for relative sources in the folder of
the file holding the VDS first), so the master and its scan folder can be moved together.
The master is in SWMR mode while the scan runs, and SWMR allows no new dataset; so:

- when the scan's number of frames is known (continuous scans), the VDS is made with the
  entry, over every planned file. Each file's dataset is created with the extent the plan
  gives it (its frames not yet written read as FILL_VALUE, through the VDS or in the file),
  and a file not yet made reads as FILL_VALUE too. A scan that ends with exactly the planned
  frames keeps that VDS;
- otherwise (an aborted scan, frames delivered twice, a scan of unknown length, or one of more
  than MAX_PLANNED_FILES files) the writer replaces or makes it, once the SWMR file is closed,
  as a VDS of exactly the frames written; the last data file is cut to the frames it holds.
  Until then readers find the frames by the files' names (`frame_reader`).

FILL_VALUE, -1, is the Pilatus's own mark of a pixel without a value (its gaps): a frame not
yet written reads as a frame with no valid pixel. Readers that must tell a frame from a
missing one read the data files (`frame_reader.EntryFrames`).
"""
from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np

from bliss_lite.data.disk_room import INDEX_BYTES, FileRoom
from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE, data_file, relative_to_master

DATASET = "data"  # the one dataset of a data file
FILL_VALUE = -1  # what a frame not (yet) written reads as
MAX_PLANNED_FILES = 10_000  # beyond, no VDS at entry creation (~0.1 ms and ~110 bytes per file): made at close
VDS_BYTES = 4096  # room for a VDS's header when it is made again at close...
VDS_BYTES_PER_FILE = 512  # ...and per data file it maps


def frames_per_file(spec) -> int:
    """The channel's frames per data file (`spec.extra["frames_per_file"]`, else the default)."""
    value = spec.extra.get("frames_per_file", DEFAULT_FRAMES_PER_FILE)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{spec.name}: frames_per_file must be a whole number >= 1, got {value!r}")
    return int(value)


def fill_value(dtype):
    dtype = np.dtype(dtype)
    return np.iinfo(dtype).max if dtype.kind == "u" else FILL_VALUE


def planned_counts(npoints, per_file):
    """Frames in each data file of a scan of `npoints` frames."""
    return [min(per_file, npoints - start) for start in range(0, npoints, per_file)]


def make_virtual_frames(group, spec, master, number, counts, name=DATASET):
    """`group[name]`: a VDS of the frames of data files 0, 1, ... holding `counts` frames each,
    by paths relative to the master file's folder."""
    shape = tuple(spec.shape)
    layout = h5py.VirtualLayout((sum(counts), *shape), dtype=np.dtype(spec.dtype))
    start = 0
    for index, count in enumerate(counts):
        source = relative_to_master(master, data_file(master, number, spec.name, index))
        layout[start:start + count] = h5py.VirtualSource(source, DATASET, shape=(count, *shape))
        start += count
    dataset = group.create_virtual_dataset(name, layout, fillvalue=fill_value(spec.dtype))
    if spec.unit:
        dataset.attrs["units"] = spec.unit
    return dataset


class DataFile:
    """One open data file: created with `extent` frames (at most `capacity`), SWMR."""

    def __init__(self, path, spec, capacity, extent):
        self.path = path
        self.capacity = capacity
        self.count = 0  # frames written and flushed
        path.parent.mkdir(parents=True, exist_ok=True)
        self.h5 = open_hdf5(path, "w-", libver="latest")  # never over an earlier file
        self.room = None
        try:
            self.room = FileRoom(path)
            self.room.reserve(self.h5, 0)
            shape = tuple(spec.shape)
            self.dataset = self.h5.create_dataset(
                DATASET, shape=(extent, *shape), maxshape=(capacity, *shape), chunks=(1, *shape),
                dtype=np.dtype(spec.dtype), fillvalue=fill_value(spec.dtype), **hdf5plugin.Bitshuffle(cname="lz4"))
            if spec.unit:
                self.dataset.attrs["units"] = spec.unit
            self.h5.swmr_mode = True
        except BaseException:
            self.discard()
            raise

    def reserve(self, chunks):
        self.room.reserve(self.h5, sum(len(chunk) + INDEX_BYTES for chunk in chunks))

    def write(self, chunks):
        end = self.count + len(chunks)
        if end > self.dataset.shape[0]:
            self.dataset.resize(end, axis=0)
        zeros = (0,) * (self.dataset.ndim - 1)
        for i, chunk in enumerate(chunks):
            self.dataset.id.write_direct_chunk((self.count + i, *zeros), chunk)
        self.h5.flush()
        self.count = end

    @property
    def full(self):
        return self.count >= self.capacity

    def close(self):
        """Cut the dataset to the frames written, close, then drop the unused reserve."""
        try:
            if self.h5.id.valid:
                if self.dataset.shape[0] > self.count:
                    self.dataset.resize(self.count, axis=0)
                self.h5.close()
                self.room.trim()
        finally:
            self.room.close()

    def discard(self):
        """Close and remove a file that holds no frame."""
        try:
            if self.h5.id.valid:
                self.h5.close()
        finally:
            if self.room is not None:
                self.room.close()
            self.path.unlink(missing_ok=True)


class FrameFiles:
    """One detector's frames of scan `number` of the master file, in its data files.

    Two steps per batch, so that a full disk refuses a batch whole: `prepare(chunks)` opens
    the files the batch goes to and reserves their room (`disk_room.NoRoom` otherwise; `cancel`
    then removes the files it opened), `write()` writes and flushes them, closing each file
    that is full."""

    def __init__(self, master, number, spec, npoints=None):
        self.master, self.number, self.spec = master, number, spec
        self.per_file = frames_per_file(spec)
        self.planned = None  # frames in each planned data file, when the VDS is made with the entry
        if npoints is not None and -(-npoints // self.per_file) <= MAX_PLANNED_FILES:
            self.planned = planned_counts(npoints, self.per_file)
        self.count = 0  # frames written and flushed
        self.closed = []  # frames in each closed data file, in order
        self.current = None  # the DataFile being filled
        self._batch = None  # [(DataFile, chunks)] prepared

    def path(self, index):
        return data_file(self.master, self.number, self.spec.name, index)

    def _open(self, index):
        planned = self.planned[index] if self.planned is not None and index < len(self.planned) else 0
        return DataFile(self.path(index), self.spec, self.per_file, planned)

    def prepare(self, chunks):
        chunks = list(chunks)
        batch, made = [], []
        target = self.current  # never full: a full file is closed at once
        free = self.per_file - target.count if target is not None else 0
        done = 0
        try:
            while done < len(chunks):
                if free == 0:  # the next file, opened for the first frame that goes into it
                    target = self._open(len(self.closed) + (self.current is not None) + len(made))
                    made.append(target)
                    free = self.per_file
                part = chunks[done:done + free]
                target.reserve(part)
                batch.append((target, part))
                done += len(part)
                free -= len(part)
        except BaseException:
            for data in made:
                data.discard()
            raise
        self._batch = batch

    def cancel(self):
        """Forget a prepared batch, removing the files opened for it."""
        for target, _ in self._batch or ():
            if target is not self.current:
                target.discard()
        self._batch = None

    def write(self):
        batch, self._batch = self._batch or [], None
        for target, chunks in batch:
            self.current = target
            target.write(chunks)
            self.count += len(chunks)
            if target.full:
                self._close_current()

    def _close_current(self):
        target, self.current = self.current, None
        target.close()
        self.closed.append(target.count)

    def close(self):
        """Close the file being filled (cut to its frames; removed if it holds none); returns
        the frames in each data file."""
        if self._batch:
            self.cancel()
        if self.current is not None:
            if self.current.count == 0:
                self.current, empty = None, self.current
                empty.discard()
            else:
                self._close_current()
        return list(self.closed)

    @property
    def as_planned(self):
        """True when the files hold exactly the planned frames (the VDS made with the entry fits)."""
        return self.planned is not None and self.closed == self.planned and self.current is None

