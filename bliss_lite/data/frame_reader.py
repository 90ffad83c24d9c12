"""An entry's detector frames, read where they are: in the scan's data files, or in the master.

`EntryFrames(h5, entry, detector)`, on an open master file, finds them:
- `instrument/<detector>/data` a Virtual Dataset (`frame_files`): in its source files, paths
  relative to the master's folder looked for there;
- no `data` yet (a scan whose number of frames was not known is still running): in the scan's
  data files by name (`scan_files.data_file`), `frames_per_file` each (the entry says how many);
- a chunked dataset (entries written before frames went to data files): in it.

`len(frames)` is the number of frames readable now, from the first: while a scan runs, the VDS
maps every planned frame and reads the fill value where none is written yet, so the count
stops at the first data file not made yet, or at the first frame not yet written in the file
being filled (its written chunks: frames are written in order, one per chunk).
`chunk(k)` gives frame k's stored Bitshuffle-LZ4 bytes (`read_direct_chunk`, decoded by
`bslz4` as frames from Redis are), `frame(k)` and `read(indices)` decoded frames.
Data files are opened read-only, SWMR where they allow it (also while a scan writes them, from
any process), and kept open until `close()`. Plain h5py and numpy: no gevent.
"""
from __future__ import annotations

import bisect
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from bliss_lite.data import bslz4
from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.data.scan_files import data_file

BSLZ4_FILTER = "32008"  # the bitshuffle HDF5 filter id
LZ4 = 2  # its compression option: as given (block, 2), as stored (major, minor, item size, block, 2)


def is_bslz4(dataset):
    """Frames stored one per chunk, Bitshuffle-LZ4: chunks that `bslz4.decompress` decodes."""
    opts = dataset._filters.get(BSLZ4_FILTER)
    compression = None if opts is None else opts[4] if len(opts) >= 5 else opts[1] if len(opts) >= 2 else None
    return compression == LZ4 and dataset.chunks is not None and tuple(dataset.chunks) == (1, *dataset.shape[1:])


def open_file(path):
    """An HDF5 file read-only with locking off: SWMR where the file allows it (one being
    written), else plainly."""
    return open_hdf5(path)


class _Open(NamedTuple):
    h5: h5py.File
    dataset: h5py.Dataset
    encoded: bool  # Bitshuffle-LZ4, one frame per chunk
    written: int  # frames in it, as it was opened


def _written(dataset):
    """Frames written in a data file: its extent, less the frames not written yet of a file
    being filled (one chunk per frame, written in order)."""
    extent = dataset.shape[0]
    if dataset.chunks is not None and dataset.chunks[0] == 1:
        return min(extent, dataset.id.get_num_chunks())
    return extent


@dataclass
class _Source:
    path: Path
    dataset: str
    start: int  # first frame of the entry it holds
    count: int  # frames of the entry it holds (mapped, or the file's capacity)
    offset: int = 0  # its first frame's index in the file's dataset


class EntryFrames:
    def __init__(self, h5, entry, detector):
        self.h5, self.entry, self.detector = h5, entry, detector
        self.master = Path(h5.filename)
        if entry not in h5:
            raise KeyError(f"{self.master}: no entry {entry} (entries: {', '.join(sorted(h5.keys())) or 'none'})")
        group = h5[entry].get(f"instrument/{detector}")
        if not isinstance(group, h5py.Group):
            raise KeyError(f"{self.master}: entry {entry} has no /{entry}/instrument/{detector}/data")
        data = group.get("data")
        self._open = {}  # path -> _Open, or None (not there)
        self._direct = None
        self._count = None
        self._layout = None  # (entry, frames per file): data files found by name
        self.sources = []
        if isinstance(data, h5py.Dataset) and data.is_virtual:
            self.shape, self.dtype = tuple(data.shape[1:]), data.dtype
            self.sources = sorted(self._mapped(data), key=lambda s: s.start)
            self._starts = [s.start for s in self.sources]
        elif isinstance(data, h5py.Dataset):
            self._direct = (data, is_bslz4(data))
            self.shape, self.dtype = tuple(data.shape[1:]), data.dtype
        elif "frames_per_file" in group:
            self._layout = (entry, int(group["frames_per_file"][()]))  # entry "3.2": scan 3's continuation
            first = self._dataset(self._layout_source(0))
            self.shape = tuple(first.shape[1:]) if first is not None else ()
            self.dtype = first.dtype if first is not None else np.dtype("int32")
        else:
            raise KeyError(f"{self.master}: entry {entry} has no /{entry}/instrument/{detector}/data")

    def _mapped(self, data):
        for vmap in data.virtual_sources():
            (first, *_), (last, *_) = vmap.vspace.get_select_bounds()
            offset = 0
            if vmap.src_space.get_select_type() == h5py.h5s.SEL_HYPERSLABS:
                offset = vmap.src_space.get_select_bounds()[0][0]
            name = Path(vmap.file_name)
            path = self.master if vmap.file_name == "." else name if name.is_absolute() else self.master.parent / name
            yield _Source(path, vmap.dset_name, first, last - first + 1, offset)

    def _layout_source(self, index):
        number, per_file = self._layout
        return _Source(data_file(self.master, number, self.detector, index), "data", index * per_file, per_file)

    def _dataset(self, source):
        """The source's dataset, or None where its file is not there (yet)."""
        found = self._found(source)
        return None if found is None else found.dataset

    def _found(self, source):
        """The source's file opened (kept open until `close`), or None where it is not there."""
        if source.path not in self._open:
            found = None
            if source.path.exists():
                try:
                    h5 = open_file(source.path)
                except OSError:
                    h5 = None
                if h5 is not None:
                    dataset = h5.get(source.dataset)
                    if isinstance(dataset, h5py.Dataset):
                        found = _Open(h5, dataset, is_bslz4(dataset), _written(dataset))
                    else:
                        h5.close()
            self._open[source.path] = found
        return self._open[source.path]

    def _held(self, source):
        """Frames of the entry the source holds now, from its first."""
        found = self._found(source)
        return 0 if found is None else max(0, min(source.count, found.written - source.offset))

    def _sources(self):
        if self._layout is None:
            yield from self.sources
            return
        index = 0
        while True:
            yield self._layout_source(index)
            index += 1

    def __len__(self):
        """Frames readable now, from the first (the first source not full ends them)."""
        if self._count is None:
            if self._direct is not None:
                self._count = self._direct[0].shape[0]
            else:
                self._count = 0
                for source in self._sources():
                    held = self._held(source)
                    self._count += held
                    if held < source.count:
                        break
        return self._count

    def _locate(self, index):
        """(dataset, Bitshuffle-LZ4?, index in it) of frame `index`; only its own file is opened."""
        index = int(index)
        if self._direct is not None:
            if 0 <= index < self._direct[0].shape[0]:
                return (*self._direct, index)
        elif index >= 0:
            if self._layout is not None:
                source = self._layout_source(index // self._layout[1])
            else:
                source = self.sources[max(0, bisect.bisect_right(self._starts, index) - 1)] if self.sources else None
            if source is not None and source.start <= index < source.start + self._held(source):
                found = self._found(source)
                return found.dataset, found.encoded, source.offset + index - source.start
        raise IndexError(f"{self.master}: entry {self.entry}: {self.detector} has {len(self)} frames, "
                         f"no frame {index}")

    @property
    def encoded(self):
        """True when frames are stored as Bitshuffle-LZ4 chunks, one per frame (`chunk` works)."""
        if len(self) == 0:
            return False
        return self._locate(0)[1]

    def chunk(self, index):
        """Frame `index`'s stored bytes (Bitshuffle-LZ4 frames only)."""
        dataset, _, local = self._locate(index)
        return dataset.id.read_direct_chunk((local,) + (0,) * (dataset.ndim - 1))[1]

    def chunk_locations(self, start, stop):
        """[(data file path, byte offset, size), ...] of frames start..stop's stored chunks
        (Bitshuffle-LZ4 frames only), for a reader that reads many chunks with plain file reads,
        in threads (h5py's `read_direct_chunk` holds the GIL and allocates every chunk anew).
        Each data file's chunk index is walked once (`chunk_iter`) rather than per frame.
        IndexError for a frame not readable now; ValueError for one not stored as a chunk."""
        tables, out = {}, []
        for index in range(int(start), int(stop)):
            dataset, encoded, local = self._locate(index)
            if not encoded:
                raise ValueError(f"{self.master}: entry {self.entry}: frame {index} is not a Bitshuffle-LZ4 chunk")
            key = (dataset.file.filename, dataset.name)
            if key not in tables:
                tables[key] = _chunk_table(dataset)
            try:
                out.append((key[0], *tables[key][local]))
            except KeyError:
                raise IndexError(f"{self.master}: entry {self.entry}: frame {index} has no stored chunk") from None
        return out

    def frame(self, index):
        dataset, encoded, local = self._locate(index)
        if encoded:
            return bslz4.decompress(dataset.id.read_direct_chunk((local,) + (0,) * (dataset.ndim - 1))[1],
                                    self.shape, self.dtype)
        return dataset[local]

    def read(self, indices):
        """(len(indices), rows, columns) frames."""
        out = np.empty((len(indices), *self.shape), dtype=self.dtype)
        for k, index in enumerate(indices):
            out[k] = self.frame(index)
        return out

    def close(self):
        for found in self._open.values():
            if found is not None:
                found.h5.close()
        self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _chunk_table(dataset):
    """{index along the first axis: (byte offset, size)} of a one-frame-per-chunk dataset's
    chunks as they are now."""
    table = {}

    def add(info):
        if info.byte_offset is not None:
            table[info.chunk_offset[0]] = (int(info.byte_offset), int(info.size))

    if hasattr(dataset.id, "chunk_iter"):  # h5py >= 3.8 on HDF5 >= 1.12.3: one pass
        dataset.id.chunk_iter(add)
    else:
        for k in range(dataset.id.get_num_chunks()):
            add(dataset.id.get_chunk_info(k))
    return table


@contextmanager
def entry_frames(path, entry, detector):
    """EntryFrames of the master file at `path`, opened (read-only, SWMR where it can) and
    closed around the block."""
    with open_file(path) as h5:
        frames = EntryFrames(h5, entry, detector)
        try:
            yield frames
        finally:
            frames.close()
