"""Reduction outputs too big for memory, written to files of the scan's folder as they are made.

An XRD-CT scan of 400 heights x 600 angles x 400 positions x 1000 q bins integrates to 384 GB
of patterns and reconstructs to a 256 GB volume: neither is ever held whole. While the scan
runs its master file is in SWMR mode (every dataset of the entry created when it opened), so
the outputs go into their own files beside it (`data/scan_files.reduction_file`):

    <sample>_scan0003/integrated.h5     intensity (frames, npt) float32, one line per chunk
                                        (gzip 1); integrated (frames,) bool
    <sample>_scan0003/reconstructed.h5  volume (nz, n, n, nq) float32, chunks within one height;
                                        maps/<phase> (nz, n, n) float32, a height per chunk;
                                        reconstructed (nz,) bool

Each is created whole (datasets sized, nothing written) when the scan starts and switched to
SWMR, so other processes can read it while it fills. Once the scan has closed its entry, the
NXprocess groups (`nexus_output.py`) refer to these datasets by Virtual Datasets whose source
path is relative to the master's folder: readers see `integrate/results/intensity` and
`reconstruct/volume/data` as before, and the master and its folder move together.

`PatternStore` holds only the lines (sweeps of the fast axis) whose patterns have not all
arrived, at most OPEN_BYTES of them; `VolumeStore` writes one height at a time; `StoredArray`
reads a dataset back when indexed. `scan_blocks` and `height_range` read a saved entry's
patterns and recorded channels back in bounded blocks (offline reconstruction, and a height
redone at the end of a scan). h5py and numpy only.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from bliss_lite.data.safe_open import open_hdf5

CHUNK_BYTES = 16 * 2**20  # at most this much of a line (patterns) or of a height (volume) per chunk
OPEN_BYTES = 64 * 2**20  # patterns of lines not yet complete kept in memory, at most
MASK_CHUNK = 65536  # frames per chunk of the `integrated` mask
READ_BYTES = 16 * 2**20  # patterns read back per block
CHANNELS = ("omega", "x", "z", "i0", "it")  # what placing and normalising a pattern needs


@dataclass(frozen=True)
class Stored:
    """A dataset of a reduction file, as the master's Virtual Dataset refers to it."""

    path: Path
    name: str
    shape: tuple
    dtype: str = "float32"


class StoredArray:
    """A dataset of a reduction file read when indexed, for arrays too large to keep in memory
    (the reconstruction's phase maps of a large scan, `result["maps"]`): `.shape`, `.dtype`,
    `a[key]` reads that part of the file (`a[h]`: one height), `np.asarray(a)` the whole. It
    reads the file as it is then (a reprocessing that replaced it gives the new values)."""

    def __init__(self, stored):
        self.path, self.name = Path(stored.path), stored.name
        self.shape, self.dtype = tuple(int(n) for n in stored.shape), np.dtype(stored.dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        with open_hdf5(self.path) as h5:
            dataset = h5[self.name]
            try:
                return dataset[key]
            except (TypeError, ValueError):  # an index h5py does not take (a negative step, unsorted lists)
                return _by_first_axis(dataset, key)

    def __array__(self, dtype=None, copy=None):
        whole = self[()]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __repr__(self):
        return f"StoredArray({str(self.path)!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"


def scratch_arrays(names, shape, dtype=np.float32, folder=None):
    """{name: zeroed array} backed by files of the temp folder (np.memmap), deleted as soon as
    they are mapped: the maps of an unsaved scan too large for memory (the seed scan's are 1.8
    GB) live in the page cache, which the system can write out, and nothing is left behind,
    even by a crash. None when the folder has not room for them."""
    folder = Path(folder or tempfile.gettempdir())
    one = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if shutil.disk_usage(folder).free < 1.1 * one * len(names):
        return None
    arrays = {}
    for name in names:
        with tempfile.NamedTemporaryFile(dir=folder, prefix="bliss_lite_maps_") as backing:
            backing.truncate(one)  # sparse: zeros until written
            arrays[name] = np.memmap(backing.name, dtype, "r+", shape=tuple(shape))
    return arrays


def _by_first_axis(dataset, key):
    """dataset[key] with NumPy's meaning for any key, reading only the first-axis entries
    (heights) it selects, not the whole dataset: those are read with an index h5py takes (an
    increasing slice or list) and the key, recast onto them, is applied by NumPy."""
    key = key if isinstance(key, tuple) else (key,)
    first, rest = (key[0], key[1:]) if key else (slice(None), ())
    n = dataset.shape[0]
    if first is Ellipsis or first is None or not dataset.ndim:
        return dataset[()][key]  # the first axis not addressed by the key's first item: rare, read whole
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        if step > 0:
            return dataset[start:stop:step][(slice(None), *rest)]
        picked = range(start, stop, step)
        if not len(picked):
            return np.empty((0, *dataset.shape[1:]), dataset.dtype)[(slice(None), *rest)]
        ascending = dataset[picked[-1]:picked[0] + 1:-step]
        return ascending[::-1][(slice(None), *rest)]
    index = np.asarray(first)
    if not index.size and index.dtype != bool:
        index = index.astype(np.intp)  # [] selects nothing, as in NumPy
    if index.dtype == bool:
        if index.shape != (n,):
            raise IndexError(f"boolean index of shape {index.shape} for a first axis of {n}")
        index = np.flatnonzero(index)
    if not np.issubdtype(index.dtype, np.integer):
        raise IndexError(f"only integers, slices, Ellipsis, None and integer or boolean arrays are valid "
                         f"indices, not {first!r}")
    if ((index < -n) | (index >= n)).any():
        raise IndexError(f"index {index[(index < -n) | (index >= n)].flat[0]} is out of bounds for a first axis "
                         f"of {n}")
    heights, where = np.unique(index % n if n else index, return_inverse=True)
    if not heights.size:
        return np.empty((0, *dataset.shape[1:]), dataset.dtype)[(where.reshape(index.shape), *rest)]
    held = dataset[heights.tolist()] if heights.size > 1 else dataset[int(heights[0]):int(heights[0]) + 1]
    return held[(where.reshape(index.shape), *rest)]


def _open_new(path, staging):
    """A new file at `path` (or beside it, renamed over it at close when `staging`: a
    reprocessing replaces the file the entry refers to only once the new one is whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".part") if staging else path
    return open_hdf5(target, "w", libver="latest"), target


def _rename(target, path):
    if Path(target) != Path(path):
        os.replace(target, path)


class PatternStore:
    """Integrated patterns (frames, npt) float32 written to `path` as they arrive.

    `line` frames make one block (a sweep of the fast axis; fewer where a line's patterns
    pass CHUNK_BYTES), the dataset's chunk. `put(indices, patterns)` in any order: a block is
    written once complete; at most OPEN_BYTES of incomplete blocks stay in memory, the oldest
    written as it is beyond that (its missing patterns go straight to the file when they
    come). `frames` sizes the datasets (they grow when a frame index passes it); `close(count)`
    writes what is still open, cuts the datasets to `count` frames and returns
    {"intensity": Stored, "integrated": Stored}."""

    def __init__(self, path, npt, line, frames=0, staging=False):
        self.path, self.npt = Path(path), int(npt)
        row_bytes = 4 * self.npt
        self.block = max(1, min(int(line or 1), CHUNK_BYTES // row_bytes))
        self.max_open = max(2, OPEN_BYTES // (self.block * row_bytes))
        frames = max(int(frames or 0), 0)
        self._h5, self._target = _open_new(self.path, staging)
        # chunks of whole blocks, a few cached: a late pattern rewrites its chunk in memory
        self._data = self._h5.create_dataset(
            "intensity", shape=(frames, self.npt), maxshape=(None, self.npt), dtype=np.float32,
            chunks=(self.block, self.npt), compression="gzip", compression_opts=1, fillvalue=0.0,
            rdcc_nbytes=4 * self.block * row_bytes + 2**20)
        self._mask = self._h5.create_dataset("integrated", shape=(frames,), maxshape=(None,), dtype=bool,
                                             chunks=(MASK_CHUNK,), fillvalue=False)
        self._data.attrs["block_frames"] = self.block
        self._h5.swmr_mode = True
        self._open = {}  # block -> (patterns (block, npt), arrived (block,) bool)
        self._written = np.zeros(0, bool)  # per block: written (whole or partly) already
        self.frames = frames
        self.peak_open_bytes = 0  # the most bytes of patterns held at once
        self.closed = False

    @property
    def open_bytes(self):
        """Bytes of patterns held in memory (incomplete blocks)."""
        return len(self._open) * self.block * self.npt * 4

    def _room(self, n):
        if n > self.frames:
            self.frames = max(n, 2 * self.frames)
            self._data.resize(self.frames, axis=0)
            self._mask.resize(self.frames, axis=0)
        blocks = -(-self.frames // self.block)
        if blocks > self._written.size:
            self._written = np.concatenate([self._written, np.zeros(blocks - self._written.size, bool)])

    def put(self, indices, patterns):
        """Patterns (N, npt) of frames `indices` (host arrays)."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        if not indices.size:
            return
        patterns = np.asarray(patterns, np.float32).reshape(indices.size, self.npt)
        self._room(int(indices.max()) + 1)
        blocks = indices // self.block
        wrote = False
        for b in np.unique(blocks):
            sel = blocks == b
            b = int(b)
            if self._written[b]:  # a late pattern of a block already written
                self._write_rows(indices[sel], patterns[sel])
                wrote = True
                continue
            if b not in self._open:
                if len(self._open) >= self.max_open:  # the oldest incomplete block goes to the file as it is
                    self._write_block(min(self._open))
                    wrote = True
                self._open[b] = (np.zeros((self.block, self.npt), np.float32), np.zeros(self.block, bool))
                self.peak_open_bytes = max(self.peak_open_bytes, self.open_bytes)
            rows, arrived = self._open[b]
            rows[indices[sel] - b * self.block] = patterns[sel]
            arrived[indices[sel] - b * self.block] = True
            if arrived[:self._block_size(b)].all():
                self._write_block(b)
                wrote = True
        if wrote:  # SWMR readers see whole lines
            self._h5.flush()

    def _block_size(self, b):
        return min(self.block, self.frames - b * self.block)

    def _write_block(self, b):
        rows, arrived = self._open.pop(b)
        first = b * self.block
        size = self._block_size(b)
        if arrived[:size].all():
            self._data[first:first + size] = rows[:size]
            self._mask[first:first + size] = True
        else:  # runs of arrived patterns only: never overwrite what a late pattern may have written
            self._write_rows(first + np.flatnonzero(arrived[:size]), rows[:size][arrived[:size]])
        self._written[b] = True

    def _write_rows(self, indices, patterns):
        order = np.argsort(indices, kind="stable")
        indices, patterns = indices[order], patterns[order]
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, indices.size]):
            first, last = int(indices[start]), int(indices[stop - 1]) + 1
            self._data[first:last] = patterns[start:stop]
            self._mask[first:last] = True

    def close(self, count=None, discard=False):
        """Write the blocks still open, cut to `count` frames, close; {"intensity", "integrated"}.
        `discard`: close and remove what was written instead (None)."""
        if self.closed:
            raise ValueError(f"{self.path}: already closed")
        if discard:
            self._h5.close()
            self.closed = True
            Path(self._target).unlink(missing_ok=True)
            return None
        for b in sorted(self._open):
            self._write_block(b)
        count = self.frames if count is None else int(count)
        self._room(count)
        self._h5.close()  # SWMR writers may only grow datasets: cut them outside SWMR
        with open_hdf5(self._target, "a", libver="latest") as h5:
            h5["intensity"].resize(count, axis=0)
            h5["integrated"].resize(count, axis=0)
        _rename(self._target, self.path)
        self.closed = True
        return {"intensity": Stored(self.path, "intensity", (count, self.npt)),
                "integrated": Stored(self.path, "integrated", (count,), "bool")}


class VolumeStore:
    """The reconstruction of an XRD-CT scan, one height at a time: `write(iz, image, maps)`
    writes height iz's image (n, n, nq) and phase maps {phase: (n, n)} and frees nothing of
    the caller's; `close()` returns {"volume": Stored, "maps": {phase: Stored},
    "reconstructed": Stored}. Chunks never span two heights."""

    def __init__(self, path, nz, n, nq, phases, staging=False):
        self.path = Path(path)
        self.shape = (int(nz), int(n), int(n), int(nq))
        self.phases = list(phases)
        self._h5, self._target = _open_new(self.path, staging)
        rows = max(1, min(self.shape[1], CHUNK_BYTES // (4 * self.shape[2] * self.shape[3])))
        self._volume = self._h5.create_dataset("volume", shape=self.shape, dtype=np.float32,
                                               chunks=(1, rows, *self.shape[2:]), fillvalue=0.0)
        maps = self._h5.create_group("maps")
        self._maps = {p: maps.create_dataset(p, shape=self.shape[:3], dtype=np.float32,
                                             chunks=(1, *self.shape[1:3]), fillvalue=0.0) for p in self.phases}
        self._done = self._h5.create_dataset("reconstructed", shape=(self.shape[0],), dtype=bool, fillvalue=False)
        self._h5.swmr_mode = True
        self.written = set()
        self.closed = False

    def write(self, iz, image, maps):
        iz = int(iz)
        self._volume[iz] = np.asarray(image, np.float32)
        for phase, image in maps.items():
            self._maps[phase][iz] = np.asarray(image, np.float32)
        self._done[iz] = True
        self._h5.flush()
        self.written.add(iz)

    def close(self, discard=False):
        """Close; `discard`: remove the file instead (nothing worth keeping was written)."""
        self._h5.close()
        self.closed = True
        if discard:
            Path(self._target).unlink(missing_ok=True)
            return None
        _rename(self._target, self.path)
        return {"volume": Stored(self.path, "volume", self.shape),
                "maps": {p: Stored(self.path, f"maps/{p}", self.shape[:3]) for p in self.phases},
                "reconstructed": Stored(self.path, "reconstructed", self.shape[:1], "bool")}


def virtual_dataset(group, name, stored, master):
    """`group[name]`: a Virtual Dataset of the whole of `stored`, its source path relative to
    the master file's folder (absolute where the file lies elsewhere)."""
    from bliss_lite.data.scan_files import relative_to_master

    try:
        source = relative_to_master(Path(master).resolve(), Path(stored.path).resolve())
    except ValueError:
        source = str(Path(stored.path).resolve())
    layout = h5py.VirtualLayout(shape=tuple(stored.shape), dtype=np.dtype(stored.dtype))
    layout[...] = h5py.VirtualSource(source, stored.name, shape=tuple(stored.shape))
    fill = False if np.dtype(stored.dtype) == bool else 0
    return group.create_virtual_dataset(name, layout, fillvalue=fill)


# -- reading a saved entry back in blocks --------------------------------------------------------

def _open_entry(path):
    from bliss_lite.processing.frame_sources import open_scan_file

    return open_scan_file(path)


def _usable(group):
    """Frames of the entry with a pattern and every recorded channel CHANNELS needs."""
    return min(len(group["integrate/results/intensity"]), *(len(group[f"measurement/{n}"]) for n in CHANNELS))


def valid_dataset(group):
    """The entry's per-frame `valid` flags (`measurement/<detector>_valid`: False for the frames
    of a sweep line redone after a suspension, and for frames whose line never finished), or
    None for an entry without them (every frame counts)."""
    measurement = group["measurement"]
    name = next((n for n in measurement if n.endswith("_valid")), None)
    return None if name is None else measurement[name]


def valid_rows(valid, first, last):
    """(first..last) of the valid flags; rows past the flags written are not valid."""
    if valid is None:
        return np.ones(last - first, bool)
    flags = np.zeros(last - first, bool)
    have = np.asarray(valid[first:min(last, len(valid))], bool)
    flags[:have.size] = have
    return flags


def entry_frames(path, entry):
    """Frames of a saved entry with a pattern and every recorded channel placing it needs."""
    with _open_entry(path) as h5:
        return _usable(h5[entry])


def scan_blocks(path, entry, start=0, stop=None, rows=None):
    """Yield (indices, patterns, omega, x, z, i0, it) of the valid frames (`valid_dataset`)
    among frames start..stop of a saved entry (its `integrate/results/intensity` and
    `measurement/<channel>`), `rows` frames a block (default READ_BYTES of patterns)."""
    with _open_entry(path) as h5:
        group = h5[entry]
        patterns = group["integrate/results/intensity"]
        channels = [group[f"measurement/{n}"] for n in CHANNELS]
        valid = valid_dataset(group)
        count = _usable(group)
        stop = count if stop is None else min(int(stop), count)
        rows = rows or max(1, READ_BYTES // (4 * max(1, patterns.shape[1])))
        for first in range(int(start), stop, rows):
            last = min(first + rows, stop)
            keep = valid_rows(valid, first, last)
            if keep.all():
                yield (np.arange(first, last), patterns[first:last], *(c[first:last] for c in channels))
            elif keep.any():
                yield (np.arange(first, last)[keep], patterns[first:last][keep],
                       *(c[first:last][keep] for c in channels))


def height_range(path, entry, heights, iz, rows=2**20):
    """(first, stop): the frames of the entry whose z read-back is height iz lie in
    first..stop-1 (one block of frames when z is the slowest axis); None when none is.
    `heights(z, indices)` gives each frame's z index (SinogramBuilder.heights). Reads the z
    channel alone, `rows` frames at a time."""
    first = stop = None
    with _open_entry(path) as h5:
        dataset = h5[entry]["measurement/z"]
        count = _usable(h5[entry])
        for start in range(0, count, rows):
            indices = np.arange(start, min(start + rows, count))
            at = indices[heights(dataset[indices[0]:indices[-1] + 1], indices) == iz]
            if at.size:
                first = int(at[0]) if first is None else first
                stop = int(at[-1]) + 1
    return None if first is None else (first, stop)
