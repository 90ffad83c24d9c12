"""`reconstruct_scan` on a Dask cluster: one task per height.

The heights of an XRD-CT volume are independent once two things are known: the centre of
rotation (estimated from the first complete height with signal) and the phase mapper (made
from the first height's summed pattern). So the client reconstructs heights in order, as the
single-process job does, until both are known; then each remaining height is a task that reads
that height's patterns from the entry where it runs, reconstructs it with the same centre and
mapper, and writes it to a part file of its own (`reconstructed.h5.parts/part_<h>_<h+1>.h5`).
The client alone writes `reconstructed.h5` (height by height, as the parts come) and the
NXprocess; heights done earlier with another centre are redone at the end as in the single
process. Finished heights are recorded (`state.json`): a rerun skips them. Resumed scans (one
dataset over several entries) run in the client.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.processing.dask_integrate import RETRIES, PartState, job_key, part_path

SPAN_ROWS = 2**20  # z read-backs read per block when finding each height's frames


def height_spans(path, entry, heights, count):
    """{h: (first, stop)}: the frames holding each height, in the order the scan met them."""
    from bliss_lite.processing.frame_sources import open_scan_file

    spans = {}
    with open_scan_file(path) as h5:
        z = h5[entry]["measurement/z"]
        for start in range(0, count, SPAN_ROWS):
            indices = np.arange(start, min(start + SPAN_ROWS, count))
            at = heights(z[indices[0]:indices[-1] + 1], indices)
            for h in np.unique(at):
                where = indices[at == h]
                first, stop = spans.get(int(h), (int(where[0]), 0))
                spans[int(h)] = (first, int(where[-1]) + 1)
    return dict(sorted(spans.items(), key=lambda item: item[1][0]))


def reconstruct_height(folder, path, entry, options, info, npt, radial, summed, h, span):
    """The task: height h into its own part file; (h, centre used, grid points measured)."""
    from bliss_lite.processing.reconstruction_hook import make_reconstruction_hook

    # arrays from the scheduler come read-only; scipy's splines want writeable ones
    radial = np.array(radial, np.float64)
    summed = None if summed is None else np.array(summed)
    hook = make_reconstruction_hook(options, {})
    target = part_path(folder, h, h + 1)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    hook.start(info, npt, tmp, radial=radial)  # the whole volume's datasets: only height h is written
    try:
        hook.prepare_maps(radial, summed)
        done = hook.height_from_file(path, entry, h, tuple(span))
    except BaseException:
        hook.store.close(discard=True)  # a retry starts from nothing
        raise
    finally:
        hook.builder.drop_spares()
    hook.store.close()
    if done is None:
        raise ValueError(f"{path} entry {entry}: no frame at height {h}")
    os.replace(tmp, target)
    return h, float(done[0]), int(done[1])


def _read_part(folder, h, phases):
    with open_hdf5(part_path(folder, h, h + 1)) as h5:
        return h5["volume"][h], {p: h5[f"maps/{p}"][h] for p in phases}


def reconstruct_scan_dask(data, client, progress=None, retries=RETRIES):
    """`reconstruct_scan`'s job with the heights on the cluster of `client`; the same output
    dict plus {heights_run, heights_skipped}."""
    from distributed import as_completed

    from bliss_lite.processing.continuation import scan_entries
    from bliss_lite.processing.job_inputs import _reduction_file
    from bliss_lite.processing.progress_bar import ProgressBar
    from bliss_lite.processing.reconstruction_hook import make_reconstruction_hook
    from bliss_lite.processing.reduction_files import scan_blocks
    from bliss_lite.processing.scan_plugins import prepare_reconstruction, reconstruct_scan

    started = time.perf_counter()
    path, entry, info, settings, options, count = prepare_reconstruction(data)
    if len(scan_entries(path, entry)) > 1:
        return reconstruct_scan(data)
    path = str(Path(path).resolve())
    with open_hdf5(path) as h5:
        results = h5[f"{entry}/integrate/results"]
        radial = results[results.attrs["axes"][-1]][()]
        npt = results["intensity"].shape[1]
    hook = make_reconstruction_hook(options, {})
    target = Path(_reduction_file(path, entry, "reconstructed")).resolve()
    hook.start(info, npt, target, radial=radial, staging=True)
    try:
        spans = height_spans(path, entry, hook.builder.heights, count)
        order = list(spans)
        k = 0
        while k < len(order) and (hook.centre is None or not hook.mapper.ready):  # as the single process
            for block in scan_blocks(path, entry, *spans[order[k]]):
                hook.add_frames(*block)
            k += 1
        rest = order[k:]  # a height still held (incomplete) is finished by hook.finish, as in the single process
        task_options = {**options, "centre": hook.centre, "reference_i0": hook.reference_i0}
        key = job_key(path, entry, "reconstruct", repr(sorted(task_options.items())), [(h, h + 1) for h in rest])
        state = PartState(target.with_name(target.name + ".parts"), key)
        bar = (progress or (lambda total, done: ProgressBar(total, "heights", done=done)))(len(order), k)
        for h in [h for h in rest if (h, h + 1) in state.done]:
            hook.take_height(h, *_read_part(state.folder, h, hook.mapper.names), *state.meta[(h, h + 1)])
            bar.update(1)
        todo = [h for h in rest if (h, h + 1) not in state.done]
        futures = [client.submit(reconstruct_height, str(state.folder), path, entry, task_options, info, npt, radial,
                                 hook.summed, h, spans[h], pure=False, retries=retries) for h in todo]
        try:
            for future in as_completed(futures):
                h, centre, filled = future.result()
                hook.take_height(h, *_read_part(state.folder, h, hook.mapper.names), centre, filled)
                state.add((h, h + 1), meta=(centre, filled))
                bar.update(1)
        finally:
            client.cancel([f for f in futures if not f.done()])
            bar.close()
    except BaseException:
        hook.store.close(discard=True)  # the earlier file, if any, stays as it was
        raise
    result = hook.finish(path, entry, settings.unit)
    state.remove()
    if result is None:
        raise ValueError(f"reconstruct_scan: {path} entry {entry}: nothing to reconstruct")
    return {"slices": int(len(result["z"])), "centre_mm": result["centre"], "phases": sorted(result["maps"]),
            "output": str(path), "entry": entry, "seconds": time.perf_counter() - started,
            "heights_run": len(todo), "heights_skipped": len(rest) - len(todo)}
