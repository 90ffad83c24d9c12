"""Job plugins that redo a scan's reduction offline: `integrate_scan`, `reconstruct_scan`.

They take and return plain dicts (job runner contract), read only files the input names and
write their results as NXprocess groups, so `bliss-lite reprocess JOB.json --set npt=500`
redoes a reduction with other parameters. Frames come from the scan's HDF5 entry or from a
folder of CBF files as a Pilatus writes them (a pool of fabio readers).

Both keep the scan hooks' layout and memory bound: `integrate_scan` writes the patterns a
line at a time into `integrated.h5` of the scan's folder, `reconstruct_scan` reads them back
in blocks and runs the reconstruction hook's slice-by-slice reconstruction into
`reconstructed.h5`; each file is built beside the one it replaces and renamed over it once
whole, then the NXprocess refers to it (reduction_files.py).
"""
from __future__ import annotations

import time

import numpy as np

from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.processing.job_inputs import (  # noqa: F401 - integration_settings: this module's API too
    _plain_entries,
    _reduction_file,
    _stored_json,
    integration_settings,
    prepare_integration,
)
from bliss_lite.processing.jobs import register


def _frames(data):
    from bliss_lite.processing import frame_sources

    if data.get("cbf_folder"):
        return frame_sources.cbf_frames(data["cbf_folder"], data.get("pattern", "*.cbf"), int(data.get("readers", 6)))
    return frame_sources.hdf5_frames(data["filename"], data["entry"], data.get("detector", "pilatus"))


def integration_backend(data):
    """The backend an `integrate_scan` input's "backend" gets here: "cpu" (also when absent),
    "gpu", or for "auto" the GPU where CuPy finds one. Where "gpu" cannot run, a
    GpuUnavailableError naming the job's backend and why; an unknown one, a ValueError. Called
    before anything is written."""
    from bliss_lite.processing.gpu import GpuUnavailableError, resolve_backend, unavailable_reason
    from bliss_lite.protocols import BACKENDS, Backend

    requested = data.get("backend") or Backend.CPU
    if requested not in BACKENDS:
        raise ValueError(f'integrate_scan: input "backend" is {requested!r}; choose from {", ".join(BACKENDS)}')
    try:
        return resolve_backend(requested, "integrate_scan")
    except GpuUnavailableError:  # said as the job says it, with the option that changes it
        raise GpuUnavailableError(f'integrate_scan: the job\'s "backend" is "gpu", which needs CuPy and an NVIDIA '
                                  f'GPU, but {unavailable_reason()}; set "backend": "cpu" or "auto" '
                                  "(--set backend=cpu)") from None


@register("integrate_scan")
def integrate_scan(data):
    """{filename, entry | cbf_folder, integration: {...}, output: {filename, entry}, backend} ->
    {frames, npt, unit, output, entry, seconds}. `backend` "gpu" (or "auto" where there is
    one): an entry's frames through the batched GPU pipeline, as the Dask tasks do
    (`_integrate_batched`); CBF frames one at a time on the GPU."""
    from bliss_lite.processing.integration_hook import line_frames
    from bliss_lite.processing.integrator import LeanIntegrator
    from bliss_lite.processing.nexus_output import write_integration
    from bliss_lite.processing.reduction_files import PatternStore

    started = time.perf_counter()
    backend = integration_backend(data)  # refused before the output entry is made
    settings, info, path, entry = prepare_integration(data)
    integrator = LeanIntegrator(settings, backend)
    store = PatternStore(_reduction_file(path, entry, "integrated"), settings.npt, line_frames(info), staging=True)
    count, batch, rows = 0, [], []
    try:
        if backend == "gpu" and not data.get("cbf_folder"):
            count = _integrate_batched(data, integrator, store)
        else:
            for index, frame in _frames(data):
                batch.append(index)
                rows.append(integrator.integrate(frame))
                if len(batch) >= store.block:
                    store.put(batch, np.stack(rows))
                    batch, rows = [], []
                count = max(count, index + 1)
            if batch:
                store.put(batch, np.stack(rows))
        if not count:
            raise ValueError("integrate_scan: no frames to integrate")
    except BaseException:
        store.close(discard=True)  # the earlier file, if any, stays as it was
        raise
    stored = store.close(count)
    write_integration(path, entry, integrator.radial, settings, stored["intensity"], stored["integrated"])
    return {"frames": count, "npt": settings.npt, "unit": settings.unit, "output": str(path),
            "entry": entry, "seconds": time.perf_counter() - started}


def _integrate_batched(data, integrator, store):
    """The entry's frames through `dask_integrate.integrate_batched` (on the GPU: one pipeline
    per range, the compressed chunks read by `StoredChunks`), GPU_PART_FRAMES at a time into
    `store`, so that memory stays bounded whatever the scan; the frame count."""
    from bliss_lite.processing.dask_integrate import GPU_PART_FRAMES, integrate_batched, plan
    from bliss_lite.processing.frame_sources import hdf5_scan

    detector = data.get("detector", "pilatus")
    count = hdf5_scan(data["filename"], data["entry"], detector, channels=False).nframes
    for first, stop in plan(count, GPU_PART_FRAMES):
        patterns = integrate_batched(integrator, data["filename"], data["entry"], detector, first, stop)
        store.put(np.arange(first, stop), patterns)
    return count


def _mean_i0(path, entry, count):
    """The mean I0 of the entry's first `count` frames (the valid ones), read in blocks."""
    from bliss_lite.processing.reduction_files import valid_dataset, valid_rows

    total, used, rows = 0.0, 0, 2**20
    with open_hdf5(path) as h5:
        i0, valid = h5[f"{entry}/measurement/i0"], valid_dataset(h5[entry])
        for first in range(0, count, rows):
            last = min(first + rows, count)
            keep = valid_rows(valid, first, last)
            total += float(np.sum(i0[first:last][keep], dtype=np.float64))
            used += int(keep.sum())
    return total / max(used, 1)


def prepare_reconstruction(data):
    """(path, entry, scan_info["xrdct"], IntegrationSettings, hook options, frames) of a
    `reconstruct_scan` input: shared by the in-process run and the Dask one (dask_reconstruct.py)."""
    from bliss_lite.processing.frame_sources import hdf5_scan
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.reconstruction_hook import phases_of_sample
    from bliss_lite.processing.reduction_files import entry_frames

    _plain_entries(data)
    for key in ("filename", "entry"):
        if key not in data:
            raise ValueError(f"reconstruct_scan: input needs {key!r}")
    path, entry = data["filename"], data["entry"]
    record = hdf5_scan(path, entry, channels=False)
    info = (record.scan_info or {}).get("xrdct")
    if not info:
        raise ValueError(f"reconstruct_scan: {path} entry {entry} is not an xrdct scan (no scan_info.xrdct)")
    settings = _stored_json(path, f"{entry}/integrate", "configuration")
    if settings is None:
        raise ValueError(f"reconstruct_scan: {path} entry {entry} has no integrated patterns: run integrate_scan first")
    settings = IntegrationSettings.from_dict(settings)
    options = dict(data.get("reconstruction") or {})
    earlier = _stored_json(path, f"{entry}/reconstruct", "configuration") or {}
    for key in ("peak_fwhm", "roi_width", "window", "normalise", "reference_i0"):  # as before, unless given
        if key not in options and earlier.get(key) is not None:
            options[key] = earlier[key]
    if "phases" not in options:  # the job's, else the sample the scan recorded: never an earlier run's guess
        phases = phases_of_sample(record.scan_info, options)
        if phases is None:
            raise ValueError(f"reconstruct_scan: {path} entry {entry} recorded no sample phases: give "
                             f"reconstruction.phases {{name: pyFAI calibrant}} in the job")
        options["phases"] = phases
    count = entry_frames(path, entry)
    if not count:
        raise ValueError(f"reconstruct_scan: {path} entry {entry} has no integrated frame to reconstruct")
    if options.get("normalise", "i0+transmission") != "none" and options.get("reference_i0") is None:
        options["reference_i0"] = _mean_i0(path, entry, count)  # the whole scan's, whatever the blocks
    return path, entry, info, settings, options, count


@register("reconstruct_scan")
def reconstruct_scan(data):
    """{filename, entry, reconstruction: {method, centre, phases, ...}} -> {slices, centre_mm,
    phases, output, entry, seconds}: the XRD-CT volume and phase maps from the entry's
    integrated patterns (`integrate_scan` or the inline hook first) and recorded positions,
    height by height as the scan's hook makes them (the same results, the same layout): the
    patterns are read in blocks, at most two heights of sinograms are held."""
    from bliss_lite.processing.continuation import blocks, scan_entries
    from bliss_lite.processing.reconstruction_hook import make_reconstruction_hook
    from bliss_lite.processing.reduction_files import scan_blocks

    started = time.perf_counter()
    path, entry, info, settings, options, count = prepare_reconstruction(data)
    hook = make_reconstruction_hook(options, {})
    with open_hdf5(path) as h5:
        results = h5[f"{entry}/integrate/results"]
        radial = results[results.attrs["axes"][-1]][()]
        npt = results["intensity"].shape[1]
    # its backend option too: sinograms on the GPU where asked for
    hook.start(info, npt, _reduction_file(path, entry, "reconstructed"), radial=radial, staging=True)
    entries = scan_entries(path, entry)  # a resumed scan: N.1, N.2, ... as one dataset
    try:
        if len(entries) > 1:
            from bliss_lite.processing.integrator import LeanIntegrator

            detector = (info or {}).get("detector", "pilatus")
            for block in blocks(path, entries, LeanIntegrator(settings), detector):
                hook.add_frames(*block)
        else:
            for block in scan_blocks(path, entry, 0, count):
                hook.add_frames(*block)
    except BaseException:
        hook.store.close(discard=True)  # the earlier file, if any, stays as it was
        raise
    result = hook.finish(path, entry, settings.unit)
    if result is None:
        raise ValueError(f"reconstruct_scan: {path} entry {entry}: nothing to reconstruct")
    return {"slices": int(len(result["z"])), "centre_mm": result["centre"], "phases": sorted(result["maps"]),
            "output": str(path), "entry": entry, "seconds": time.perf_counter() - started}
