"""Frames for reprocessing: a folder of CBF files as a Pilatus writes them, or an HDF5 scan entry.

`cbf_frames` reads CBF files through a pool of fabio readers (threads) with a bounded read-ahead,
and yields the frames in file-name order. fabio's byte-offset decoder releases the GIL for most
of its work (a Python thread kept ~92% of its speed beside a decoding one): on this 2-core
machine a full Pilatus 2M CBF takes 6.4 ms with one reader, 3.5 ms per frame with 2 or more
(benchmarks/jobs.py); the pool scales with cores, so the seed's 6 readers suit a beamline host. `hdf5_frames` yields
the frames of `/<entry>/instrument/<detector>/data` from the scan's data files
(`data.frame_reader`); Bitshuffle-LZ4 chunks are read raw and decoded in a pool of threads
(bitshuffle releases the GIL), other datasets through h5py.
`hdf5_scan` gives what else a reduction needs from the entry: the recorded positions and
monitors (`measurement/<channel>`, e.g. omega, x, z, i0, it) and the scan's parameters if the
entry stores them. Plain numpy, h5py and fabio: no gevent.
"""
from __future__ import annotations

import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ScanRecord", "cbf_files", "cbf_frames", "hdf5_frames", "hdf5_scan", "entry_name", "open_scan_file"]


def _natural_key(path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def cbf_files(folder, pattern="*.cbf"):
    """The files of `folder` matching `pattern`, in natural file-name order (img_2 before
    img_10; zero-padded Pilatus names sort the same either way). Every match counts, so a
    frame's index is its file's place whatever the file is: one that is not a regular CBF of
    a bounded size is refused when read, by name (never skipped: indices would shift).
    `pattern` names files of `folder` itself: one with '/' or '..' (`../../*.cbf` matched
    files outside it) is a FileCheckError naming it, and every match must lie in `folder`."""
    from bliss_lite.config.file_checks import FileCheckError, plain_pattern

    folder = Path(folder)
    plain_pattern(pattern, f"{folder}: pattern")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(folder.glob(pattern), key=_natural_key)
    for path in files:  # glob's own rules, checked: nothing but the folder's own entries
        if path.parent != folder or path.name in (".", ".."):
            raise FileCheckError(f"{folder}: pattern {pattern!r} matched {path}, which is not in the folder")
    return files


def _read_cbf(path):
    """One CBF's frame; OSError naming the file if it is not a regular file of a bounded
    size, is cut short, or its binary section fails its Content-MD5 (fabio only logs that and
    returns the corrupt frame: once a pattern off by 1e11, reported as a success)."""
    import fabio.cbfimage
    from fabio.compression import md5sum

    from bliss_lite.config.file_checks import FileCheckError, checked_file

    try:
        checked_file(path, "cbf", "CBF")
    except FileCheckError as exc:
        raise OSError(f"{path}: {exc.reason}") from None
    try:
        image = fabio.cbfimage.CbfImage()
        raw = image.read(str(path), only_raw=True)
        header = image.header
        size = int(header.get("X-Binary-Size", len(raw)))
        if len(raw) < size:
            raise ValueError(f"truncated: {len(raw)} of {size} binary bytes")
        expected = header.get("Content-MD5")
        if expected is not None and md5sum(raw[:size]) != np.bytes_(expected):
            raise ValueError("checksum mismatch (Content-MD5): the file is corrupt")
        frame = np.asarray(fabio.cbfimage.CbfImage().read(str(path), check_MD5=False).data)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OSError(f"{path}: corrupt CBF: {reason}") from None
    return frame


def _ordered(items, read, workers, ahead):
    """Yield (index, read(item)) in order, `workers` threads reading at most `ahead` items ahead."""
    ahead = max(int(ahead), 1)
    if workers <= 1:
        for index, item in enumerate(items):
            yield index, read(item)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="frame-reader")
    pending = deque()
    try:
        source = enumerate(items)
        for index, item in source:
            pending.append((index, pool.submit(read, item)))
            if len(pending) >= ahead:
                break
        while pending:
            index, future = pending.popleft()
            for next_index, item in source:  # keep the read-ahead full
                pending.append((next_index, pool.submit(read, item)))
                break
            yield index, future.result()
    finally:  # also when the consumer stops early: drop what is queued, let running reads end
        pool.shutdown(wait=True, cancel_futures=True)


def cbf_frames(folder, pattern="*.cbf", readers=6, read_ahead=None):
    """Yield (index, frame) for the CBF files of `folder` in file-name order, read by `readers`
    threads with at most `read_ahead` frames (default 2 x readers) decoded ahead of the
    consumer. The index is the file's position in that order."""
    files = cbf_files(folder, pattern)
    if not files:
        raise FileNotFoundError(f"{folder}: no file matches {pattern!r}")
    yield from _ordered(files, _read_cbf, readers, read_ahead or 2 * max(readers, 1))


def entry_name(entry):
    """"3.1" for 3, "3" or "3.1"."""
    text = str(entry).strip("/")
    return text if "." in text else f"{int(text)}.1"


def open_scan_file(filename):
    """An HDF5 scan file, read-only with locking off; SWMR where the file allows it, so a file
    whose scan is still being written opens too."""
    import hdf5plugin  # noqa: F401  (registers the Bitshuffle-LZ4 filter with h5py)

    from bliss_lite.data.safe_open import open_hdf5

    return open_hdf5(filename)  # SWMR: also a file whose scan is still being written


def hdf5_frames(filename, entry, detector="pilatus", readers=2, start=0, stop=None):
    """Yield (index, frame) for frames start..stop of `/<entry>/instrument/<detector>/data`,
    read from the scan's data files (`data.frame_reader`): of a scan still running, the frames
    written so far."""
    from bliss_lite.data import bslz4
    from bliss_lite.data.frame_reader import EntryFrames

    entry = entry_name(entry)
    with open_scan_file(filename) as h5, EntryFrames(h5, entry, detector) as frames:
        stop = len(frames) if stop is None else min(stop, len(frames))
        if frames.encoded:
            chunks = (frames.chunk(i) for i in range(start, stop))  # raw reads in this thread (h5py serialises them)
            for offset, frame in _ordered(chunks, lambda c: bslz4.decompress(c, frames.shape, frames.dtype), readers,
                                          2 * max(readers, 1)):
                yield start + offset, frame
        else:
            for i in range(start, stop):
                yield i, frames.frame(i)


@dataclass(frozen=True)
class ScanRecord:
    """What a reduction needs from a saved scan besides its frames."""

    filename: str
    entry: str
    title: str
    nframes: int
    frame_shape: tuple
    channels: dict = field(default_factory=dict)  # {name: 1-D array}: positions and monitors
    scan_info: dict | None = None  # the scan's parameters (e.g. {"xrdct": {...}}) if stored


def _text(value):
    value = value[()] if hasattr(value, "shape") else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _stored_scan_info(group):
    """scan_info stored as JSON text in the entry's `scan_info` dataset or attribute, if any."""
    raw = group["scan_info"] if "scan_info" in group else group.attrs.get("scan_info")
    if raw is None:
        return None
    try:
        info = json.loads(_text(raw))
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def hdf5_scan(filename, entry, detector="pilatus", channels=True) -> ScanRecord:
    """The entry's title, frame count and shape, its 1-D `measurement/` channels (omega, x, z,
    i0, it, ...; `channels=False`: none read, for a scan too long to hold them) and its stored
    scan_info (None where the file has none)."""
    from bliss_lite.data.frame_reader import EntryFrames

    entry = entry_name(entry)
    with open_scan_file(filename) as h5:
        if entry not in h5:
            raise KeyError(f"{filename}: no entry {entry} (entries: {', '.join(sorted(h5.keys())) or 'none'})")
        group = h5[entry]
        values = {}
        for name, item in group.get("measurement", {}).items() if channels else ():
            if getattr(item, "ndim", None) == 1:
                values[name] = item[()]
        try:  # the frames readable now (of a scan still running: those written so far)
            with EntryFrames(h5, entry, detector) as frames:
                nframes, frame_shape = len(frames), tuple(frames.shape)
        except KeyError:  # no such detector
            nframes, frame_shape = 0, ()
        return ScanRecord(str(filename), entry, _text(group["title"]) if "title" in group else "",
                          nframes, frame_shape, values, _stored_scan_info(group))
