"""`integrate_scan` on a Dask cluster: the frames split in ranges, one task per range.

Each task opens the scan's data files itself (a shared filesystem: frames never travel through
the scheduler), decodes and integrates its frames, and writes its patterns to a part file of its
own (`integrated.h5.parts/<job key>/part_<first>_<stop>.h5`): no two processes ever write one
HDF5 file. The client records each finished part in `integrated.h5.parts/state.json`, so a rerun
after an interruption integrates only the parts missing (a state made with other settings is
dropped, and its late tasks write into their own key's folder, `PartState`). A
worker that dies costs only its task: the scheduler runs it again elsewhere (`retries` also
covers a task that raised). At the end the client alone copies the parts, in order, into
`integrated.h5` with the same PatternStore and NXprocess as the single-process run, so the
results and the layout are the same, then removes the parts.

Backend "gpu": a task's frames go through the batched GPU pipeline the live workers use
(`LeanIntegrator.integrate_compressed`: compressed chunks cross the bus and are decoded and
integrated there, batches overlapped round a few streams), fed from the data files by
`StoredChunks` (plain reads in threads, the next batch read while this one is staged), and a
task is `GPU_PART_FRAMES` long: at ~29,000 frames/s, 256 frames would be ~9 ms, no longer than
the pipeline's fill and drain and Dask's own cost per task.
"""
from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bliss_lite.data.safe_open import open_hdf5

PART_FRAMES = 256  # frames per task: seconds of work per task on a full Pilatus 2M, so Dask's ~ms per task is noise
GPU_PART_FRAMES = 8192  # frames per task on a GPU: ~0.3 s at the pipeline's rate (see above)
RETRIES = 2


def plan(count, size=PART_FRAMES):
    """[(first, stop), ...]: frames 0..count in ranges of `size`."""
    size = max(int(size), 1)
    return [(first, min(first + size, count)) for first in range(0, int(count), size)]


def _pick_gpu():
    """A LocalCluster's GPU workers are named 0, 1, ...: worker k uses GPU k (mod the count), so
    one worker per GPU spreads over them without dask-cuda. Elsewhere: CuPy's default device."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except ValueError:  # not in a worker: the bare function
        return
    if isinstance(name, int):
        import cupy

        cupy.cuda.Device(name % cupy.cuda.runtime.getDeviceCount()).use()


@functools.cache
def reuse_frame_memory():
    """Let this process's decoded frames come from the heap again; True where it took effect.

    Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (the default
    `distributed.nanny.pre-spawn-environ`, so that freed memory goes back to the system), and
    setting it freezes glibc's mmap threshold at 128 kB: each frame bitshuffle decodes (10 MB for
    a Pilatus 2M) is then a fresh mmap, faulted in and zeroed page by page by the kernel, and
    unmapped after. Measured here on full frames: +1.5 ms of system time per frame, ~35 % more
    CPU than the same function in a plain process, and memory bandwidth that the workers of one
    host share. Raised to 32 MB (glibc's most) with a 128 MB trim threshold, the frame buffers
    are reused; the worker keeps at most that much freed memory. glibc only; once per process."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 128 << 20))
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=2)
def _integrator(settings_json, backend):
    """One integrator per worker process and settings: pyFAI's matrix is built once, not per task."""
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    if backend == "gpu":
        _pick_gpu()
    return LeanIntegrator(IntegrationSettings.from_json(settings_json), backend)


def part_frames_for(backend):
    """The default task size of a backend."""
    return GPU_PART_FRAMES if backend == "gpu" else PART_FRAMES


def integrate_range(filename, entry, detector, settings_json, first, stop, backend="cpu"):
    """Patterns (stop - first, npt) float32 of frames first..stop, read from the scan's files
    where this runs: on the CPU integrated frame by frame as the single-process job does, on
    the GPU in batches (`integrate_batched`)."""
    from bliss_lite.processing.frame_sources import hdf5_frames

    reuse_frame_memory()
    integrator = _integrator(settings_json, backend)
    if backend == "gpu":
        _pick_gpu()  # CuPy's current device is per thread: this one's too, not only the builder's
        return integrate_batched(integrator, filename, entry, detector, first, stop)
    out = np.zeros((stop - first, integrator.npt), np.float32)
    seen = 0
    for index, frame in hdf5_frames(filename, entry, detector, readers=1, start=first, stop=stop):
        out[index - first] = integrator.integrate(frame)
        seen += 1
    if seen != stop - first:
        raise ValueError(f"{filename} entry {entry}: frames {first}..{stop}: only {seen} readable")
    return out


def integrate_batched(integrator, filename, entry, detector, first, stop, block_bytes=1 << 30):
    """Patterns of frames first..stop through `integrator`'s batched calls: Bitshuffle-LZ4 frames
    as one `integrate_compressed` over `StoredChunks` (on the GPU: one pipeline for the whole
    range, never drained between batches), other frames through `integrate_many`, at most
    `block_bytes` of them (100 full Pilatus 2M frames) at a time. Any LeanIntegrator works (the
    CPU's too: the same calls, decoded here)."""
    from bliss_lite.data.frame_reader import EntryFrames
    from bliss_lite.processing.frame_sources import entry_name, open_scan_file

    with open_scan_file(filename) as h5, EntryFrames(h5, entry_name(entry), detector) as frames:
        if len(frames) < stop:
            raise ValueError(f"{filename} entry {entry}: frames {first}..{stop}: only "
                             f"{max(0, len(frames) - first)} readable")
        if stop <= first:
            return np.zeros((0, integrator.npt), np.float32)
        if frames.encoded:
            with StoredChunks(frames, first, stop) as chunks:
                return np.asarray(integrator.integrate_compressed(chunks, dtype=frames.dtype.newbyteorder("=")),
                                  np.float32)
        out = np.empty((stop - first, integrator.npt), np.float32)
        block = max(1, int(block_bytes) // max(1, int(np.prod(frames.shape)) * frames.dtype.itemsize))
        for a in range(first, stop, block):
            b = min(a + block, stop)
            out[a - first:b - first] = integrator.integrate_many(frames.read(range(a, b)))
        return out


def _threads():
    from bliss_lite.processing.dask_cluster import usable_cores

    return max(2, min(8, usable_cores() // 2))


class StoredChunks(Sequence):
    """The stored Bitshuffle-LZ4 chunks of frames first..stop of an open `EntryFrames`, as a
    sequence read on demand: `chunks[k]` is chunk first + k (bytes of its own), `chunks[a:b]`
    a list of memoryviews into one of two reused buffers, valid until the next slice is asked
    for (the GPU pipeline copies a batch into its pinned buffers before it asks for the next).
    Reads are plain `os.preadv` at the offsets HDF5 gives (`EntryFrames.chunk_locations`),
    split among `threads` threads (they release the GIL), and the slice after the one asked
    for is read ahead while the caller works on this one. Each data file's first chunk is
    checked against h5py's `read_direct_chunk`; where they differ, h5py reads them all."""

    def __init__(self, frames, first, stop, threads=None):
        self.frames, self.first, self.count = frames, int(first), int(stop) - int(first)
        self.locations = frames.chunk_locations(first, stop)
        self._fds, self._buffers, self._turn, self._ahead = {}, [None, None], 0, None
        self.threads = int(threads or _threads())
        self._readers = ThreadPoolExecutor(self.threads, thread_name_prefix="chunk-reader")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="chunk-read-ahead")  # drives the readers
        self.plain = True
        try:
            for path, _, _ in self.locations:  # all opened here: the reading threads only look them up
                if path not in self._fds:
                    self._fds[path] = os.open(path, os.O_RDONLY)
            checked = set()
            for k, (path, _, _) in enumerate(self.locations):
                if path not in checked:
                    checked.add(path)
                    if self._read_one(k) != bytes(frames.chunk(self.first + k)):
                        self.plain = False  # e.g. a user block before the HDF5 data: let h5py find it
                        break
        except BaseException:
            self.close()
            raise

    def __len__(self):
        return self.count

    def __getitem__(self, key):
        if isinstance(key, slice):
            a, b, step = key.indices(self.count)
            if step != 1:
                raise ValueError("StoredChunks: only contiguous slices")
            return self._slice(a, max(a, b))
        k = operator.index(key)
        k = k + self.count if k < 0 else k
        if not 0 <= k < self.count:
            raise IndexError(f"chunk {key} of {self.count}")
        return self._read_one(k) if self.plain else self.frames.chunk(self.first + k)

    def _slice(self, a, b):
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (a, b):
            chunks = ahead[2].result()
        else:
            if ahead is not None:
                ahead[2].exception()  # waited for (never two reads into one buffer); not asked for, its error is no one's
            chunks = self._read(a, b)
        c, d = b, min(b + (b - a), self.count)
        if d > c:
            self._ahead = (c, d, self._pool.submit(self._read, c, d))
        return chunks

    def _read_one(self, k):
        path, offset, size = self.locations[k]
        data = os.pread(self._fds[path], size, offset)
        if len(data) != size:
            raise OSError(f"{path}: chunk of frame {self.first + k} cut short ({len(data)} of {size} bytes)")
        return data

    def _read(self, a, b):
        """Chunks a..b into the next buffer, the reads split among the pool's threads."""
        if not self.plain:
            return [self.frames.chunk(self.first + k) for k in range(a, b)]
        sizes = np.array([size for _, _, size in self.locations[a:b]], np.int64)
        starts = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        turn, self._turn = self._turn, 1 - self._turn
        buffer = self._buffers[turn]
        if buffer is None or buffer.size < starts[-1]:
            buffer = self._buffers[turn] = np.empty(int(starts[-1] * 1.25) + 4096, np.uint8)
        views = [memoryview(buffer[starts[i]:starts[i + 1]]) for i in range(len(sizes))]
        fds = [self._fds[path] for path, _, _ in self.locations[a:b]]

        def part(lo, hi):
            for i in range(lo, hi):
                _, offset, size = self.locations[a + i]
                if os.preadv(fds[i], [views[i]], offset) != size:
                    raise OSError(f"{self.locations[a + i][0]}: chunk of frame {self.first + a + i} cut short")

        edges = np.linspace(0, len(views), min(self.threads, len(views)) + 1).astype(int)
        futures = [self._readers.submit(part, int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
        errors = [f.exception() for f in futures]  # all ended before any error is raised
        for error in errors:
            if error is not None:
                raise error
        return views

    def close(self):
        if self._ahead is not None:
            try:
                self._ahead[2].result()
            except Exception:  # noqa: BLE001 - a read ahead nobody asked for: its error is no one's
                pass
            self._ahead = None
        self._pool.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def part_path(folder, first, stop):
    return Path(folder) / f"part_{first:012d}_{stop:012d}.h5"


def integrate_part(folder, filename, entry, detector, settings_json, first, stop, backend="cpu"):
    """The task: integrate frames first..stop into their own part file (written beside, then
    renamed: a part file is whole or absent); returns (first, stop)."""
    patterns = integrate_range(filename, entry, detector, settings_json, first, stop, backend)
    target = part_path(folder, first, stop)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open_hdf5(tmp, "w") as h5:
        h5["intensity"] = patterns
    os.replace(tmp, target)
    return first, stop


class PartState:
    """Which parts of a job are done, kept in `<root>/state.json` under the job's key, and where
    its part files go: `<root>/<key>/` (`folder`). Dask cannot stop a task that is running: one of
    an interrupted job goes on after the client cancelled it, and writes its part file late. A
    job with other settings (another key) has its parts in another folder, so such a late part
    never takes the place of one of its own (seen: a rerun with another npt joining a part of
    the interrupted job's width)."""

    def __init__(self, root, key):
        self.root, self.key = Path(root), key
        self.folder = self.root / key
        self.file = self.root / "state.json"
        self.done, self.meta = set(), {}  # meta: what the client needs of a part besides its file
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key:
            self.done = {tuple(p) for p in saved.get("done", []) if part_path(self.folder, *p).is_file()}
            self.meta = {tuple(p): m for p, m in saved.get("meta", []) if tuple(p) in self.done}
        elif self.root.is_dir():  # another job's parts (other settings): not ours to reuse
            for child in self.root.iterdir():  # a late task may still write there: what it leaves, remove() takes
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, part, meta=None):
        self.done.add(tuple(part))
        if meta is not None:
            self.meta[tuple(part)] = list(meta)
        tmp = self.file.with_name(".state.json.tmp")
        tmp.write_text(json.dumps({"key": self.key, "done": sorted(self.done),
                                   "meta": sorted([list(p), m] for p, m in self.meta.items())}))
        os.replace(tmp, self.file)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


def job_key(filename, entry, detector, settings_json, parts):
    text = json.dumps([str(Path(filename).resolve()), entry, detector, settings_json, parts[:1], len(parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def integrate_scan_dask(data, client, progress=None, part_frames=None, retries=RETRIES, backend=None):
    """`integrate_scan`'s job (HDF5 frames) on the cluster of `client`; the same output dict plus
    {parts, parts_run, parts_skipped}. `progress(total, done)` -> an object with update(n) and
    close() (default: a ProgressBar on stderr). `backend` (default: the input's "backend", else
    "cpu"): where the workers integrate ("gpu": each on its GPU)."""
    from distributed import as_completed

    from bliss_lite.processing.frame_sources import entry_name, hdf5_scan
    from bliss_lite.processing.integration_hook import line_frames
    from bliss_lite.processing.integrator import LeanIntegrator
    from bliss_lite.processing.job_inputs import _reduction_file, prepare_integration
    from bliss_lite.processing.nexus_output import write_integration
    from bliss_lite.processing.progress_bar import ProgressBar
    from bliss_lite.processing.reduction_files import PatternStore

    started = time.perf_counter()
    backend = backend or data.get("backend", "cpu")
    settings, info, path, entry = prepare_integration(data)
    filename, source_entry = str(Path(data["filename"]).resolve()), entry_name(data["entry"])
    detector = data.get("detector", "pilatus")
    radial = LeanIntegrator(settings).radial  # also checks the settings before any task starts
    count = hdf5_scan(filename, source_entry, detector, channels=False).nframes
    if not count:
        raise ValueError("integrate_scan: no frames to integrate")
    parts = plan(count, part_frames or data.get("part_frames") or part_frames_for(backend))
    settings_json = settings.to_json()
    target = Path(_reduction_file(path, entry, "integrated")).resolve()
    state = PartState(target.with_name(target.name + ".parts"), job_key(filename, source_entry, detector,
                                                                         settings_json, parts))
    todo = [p for p in parts if p not in state.done]
    bar = (progress or (lambda total, done: ProgressBar(total, done=done)))(
        count, sum(stop - first for first, stop in state.done))
    futures = [client.submit(integrate_part, str(state.folder), str(filename), source_entry, detector, settings_json,
                             first, stop, backend, pure=False, retries=retries) for first, stop in todo]
    try:
        for future in as_completed(futures):
            first, stop = future.result()
            state.add((first, stop))
            bar.update(stop - first)
    finally:
        client.cancel([f for f in futures if not f.done()])
        bar.close()
    store = PatternStore(target, settings.npt, line_frames(info), staging=True)
    try:
        for first, stop in parts:  # the one writer: parts copied in order
            with open_hdf5(part_path(state.folder, first, stop)) as h5:
                store.put(np.arange(first, stop), h5["intensity"][()])
    except BaseException:
        store.close(discard=True)
        raise
    stored = store.close(count)
    write_integration(path, entry, radial, settings, stored["intensity"], stored["integrated"])
    state.remove()
    return {"frames": count, "npt": settings.npt, "unit": settings.unit, "output": str(path), "entry": entry,
            "seconds": time.perf_counter() - started, "parts": len(parts), "parts_run": len(todo),
            "parts_skipped": len(parts) - len(todo)}
