"""`integrate_scan` on a Dask cluster: the frames split in ranges, one task per range.

Each task opens the scan's data files itself (a shared filesystem: frames never travel through
the scheduler), decodes and integrates its frames, and writes its patterns to a part file of its
own (`integrated.h5.parts/part_<first>_<stop>.h5`): no two processes ever write one HDF5 file.
The client records each finished part in `integrated.h5.parts/state.json`, so a rerun after an
interruption integrates only the parts missing (a state made with other settings is dropped). A
worker that dies costs only its task: the scheduler runs it again elsewhere (`retries` also
covers a task that raised). At the end the client alone copies the parts, in order, into
`integrated.h5` with the same PatternStore and NXprocess as the single-process run, so the
results and the layout are the same, then removes the parts.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bliss_lite.data.safe_open import open_hdf5

PART_FRAMES = 256  # frames per task: seconds of work per task on a full Pilatus 2M, so Dask's ~ms per task is noise
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


@functools.lru_cache(maxsize=2)
def _integrator(settings_json, backend):
    """One integrator per worker process and settings: pyFAI's matrix is built once, not per task."""
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    if backend == "gpu":
        _pick_gpu()
    return LeanIntegrator(IntegrationSettings.from_json(settings_json), backend)


def integrate_range(filename, entry, detector, settings_json, first, stop, backend="cpu"):
    """Patterns (stop - first, npt) float32 of frames first..stop, read from the scan's files
    where this runs, integrated frame by frame as the single-process job does."""
    from bliss_lite.processing.frame_sources import hdf5_frames

    integrator = _integrator(settings_json, backend)
    out = np.zeros((stop - first, integrator.npt), np.float32)
    seen = 0
    for index, frame in hdf5_frames(filename, entry, detector, readers=1, start=first, stop=stop):
        out[index - first] = integrator.integrate(frame)
        seen += 1
    if seen != stop - first:
        raise ValueError(f"{filename} entry {entry}: frames {first}..{stop}: only {seen} readable")
    return out


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
    """Which parts of a job are done, kept in `<folder>/state.json` under the job's key."""

    def __init__(self, folder, key):
        self.folder, self.key = Path(folder), key
        self.file = self.folder / "state.json"
        self.done, self.meta = set(), {}  # meta: what the client needs of a part besides its file
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key:
            self.done = {tuple(p) for p in saved.get("done", []) if part_path(self.folder, *p).is_file()}
            self.meta = {tuple(p): m for p, m in saved.get("meta", []) if tuple(p) in self.done}
        elif self.folder.exists():  # another job's parts (other settings): not ours to reuse
            shutil.rmtree(self.folder)
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
        shutil.rmtree(self.folder, ignore_errors=True)


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
    from bliss_lite.processing.nexus_output import write_integration
    from bliss_lite.processing.progress_bar import ProgressBar
    from bliss_lite.processing.reduction_files import PatternStore
    from bliss_lite.processing.scan_plugins import _reduction_file, prepare_integration

    started = time.perf_counter()
    backend = backend or data.get("backend", "cpu")
    settings, info, path, entry = prepare_integration(data)
    filename, source_entry = str(Path(data["filename"]).resolve()), entry_name(data["entry"])
    detector = data.get("detector", "pilatus")
    radial = LeanIntegrator(settings).radial  # also checks the settings before any task starts
    count = hdf5_scan(filename, source_entry, detector, channels=False).nframes
    if not count:
        raise ValueError("integrate_scan: no frames to integrate")
    parts = plan(count, part_frames or data.get("part_frames") or PART_FRAMES)
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
