#!/usr/bin/env python3
"""Benchmark: offline integration of a saved scan on Dask (issue 22), against the bare function.

A scan of `--frames` Bitshuffle-LZ4 Pilatus frames (`--roi ROW,COL,ROWS,COLS`, default the full
2M; Poisson counts) is written once, untimed. Then, each timed over the same frame ranges
(`--part-frames`, the default task size of `dask_integrate.PART_FRAMES`):

- `bare_s`: `dask_integrate.integrate_part` called in this process, range after range (one
  range run before the clock starts: imports and the integrator warm; OMP_NUM_THREADS=1 unless
  set, as Dask sets it in its workers);
- `dask_1_worker_s`, `dask_2_workers_s`: the same calls as Dask tasks on a LocalCluster of 1 and
  2 worker processes (one thread each; one range run on every worker first), submitted
  together and waited for. Each the best of `--repeat` runs (a loaded machine's noise is
one-sided: it only ever adds time).

`dask_overhead_percent` = (dask_1_worker_s - bare_s) / bare_s: what Dask adds per task at this
task size; `speedup_2_workers` = dask_1_worker_s / dask_2_workers_s. `max_rel_err`: the
patterns of the whole job on 2 workers (`integrate_scan_dask`: parts joined into
integrated.h5) against the single-process `integrate_scan`, max |a - b| / max |b|. Prints one
JSON line. Usage: python benchmarks/dask_reprocess.py [--frames 2048] [--roi 0,0,1679,1475]
[--part-frames 256] [--npt 1000] [--repeat 3]

`--backend gpu` (one NVIDIA GPU, CuPy): the GPU figures instead, on a scan of `--frames`
(default 16384) full Pilatus 2M frames of the simulated sample (`--bank` distinct frames
rendered and compressed, as benchmarks/integration.py does, written over and over: ~0.7 MB a
frame), in ranges of `--part-frames` (default `dask_integrate.GPU_PART_FRAMES`):

- `gpu_pipeline_fps`: the bare batched GPU pipeline on the same frames, their chunks in host
  memory (`LeanIntegrator.integrate_compressed`, as benchmarks/integration.py times it);
- `gpu_bare_fps`: the bare task function (`integrate_part`, backend "gpu": chunks read from the
  scan's files, integrated, part file written) called in this process range after range;
- `gpu_dask_fps`: the same calls as tasks of a LocalCluster of one worker process (worker 0:
  GPU 0), submitted together and waited for (one range run on the worker first);
- `gpu_dask_percent_of_bare` = 100 gpu_dask_fps / gpu_bare_fps (what Dask costs), and
  `gpu_dask_percent_of_pipeline` (Dask and the reads from the files together); each fps the
  best of `--repeat` runs. `gpu_max_rel_err`: the Dask job's first range against the CPU path.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PONI = ROOT / "config" / "xrdct" / "pilatus2m.poni"


def write_scan(path, frames, shape):
    from bliss_lite.data import bslz4
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter

    rng = np.random.default_rng(7)
    writer = EntryWriter(path, 1, title="timescan", axes=[ChannelSpec("omega", unit="deg")],
                         counters=[ChannelSpec("pilatus", "int32", shape, encoding="bslz4")])
    block = 64
    for first in range(0, frames, block):
        n = min(block, frames - first)
        data = rng.poisson(20, (n, *shape)).astype(np.int32)
        writer.append({"omega": np.linspace(first, first + n, n, endpoint=False),
                       "pilatus": [bslz4.compress(f) for f in data]})
    writer.close()


def _bare(calls):
    from bliss_lite.processing.dask_integrate import integrate_part

    started = time.perf_counter()
    for call in calls:
        integrate_part(*call)
    return time.perf_counter() - started


def timed_tasks(client, calls):
    from bliss_lite.processing.dask_integrate import integrate_part

    started = time.perf_counter()
    futures = [client.submit(integrate_part, *args, pure=False) for args in calls]
    client.gather(futures)
    return time.perf_counter() - started


def write_gpu_scan(path, frames, bank):
    """A scan of `frames` full frames: the `bank` of compressed chunks written over and over."""
    from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter

    writer = EntryWriter(path, 1, title="timescan", axes=[ChannelSpec("omega", unit="deg")],
                         counters=[ChannelSpec("pilatus", "int32", FULL_SHAPE, encoding="bslz4")])
    block = 64
    for first in range(0, frames, block):
        n = min(block, frames - first)
        writer.append({"omega": np.linspace(first, first + n, n, endpoint=False),
                       "pilatus": [bank[(first + k) % len(bank)] for k in range(n)]})
    writer.close()


def gpu_main(args):
    """The GPU figures (module docstring): one JSON line."""
    import cupy

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from integration import make_bank

    from bliss_lite.processing import dask_integrate
    from bliss_lite.processing.dask_cluster import cluster
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    frames = args.frames or 16384
    part = args.part_frames or dask_integrate.GPU_PART_FRAMES
    settings = IntegrationSettings.from_poni(PONI, npt=args.npt)
    settings_json = settings.to_json()
    started = time.perf_counter()
    bank = make_bank(args.bank)
    with tempfile.TemporaryDirectory(prefix="bl_dask_gpu_", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        scan = tmp / "scan.h5"
        write_gpu_scan(scan, frames, bank)
        setup_s = time.perf_counter() - started
        parts_dir = tmp / "parts"
        parts_dir.mkdir()
        calls = [(str(parts_dir), str(scan), "1.1", "pilatus", settings_json, first, stop, "gpu")
                 for first, stop in dask_integrate.plan(frames, part)]

        lean = LeanIntegrator(settings, backend="gpu")
        stream = [bank[i % len(bank)] for i in range(frames)]  # the scan's frames, in host memory
        lean.integrate_compressed(stream[:4 * lean.gpu.batch])  # kernels compiled, buffers allocated
        pipeline = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            lean.integrate_compressed(stream)
            pipeline.append(frames / (time.perf_counter() - t0))
        lean.gpu.close()
        del lean, stream

        dask_integrate.integrate_part(*calls[0])  # the worker's own integrator warm, as on the worker
        bare = [frames / _bare(calls) for _ in range(args.repeat)]
        with cluster(workers=1, backend="gpu") as client:
            client.submit(dask_integrate.integrate_part, *calls[0], pure=False).result()  # warm, as a task
            on_dask = [frames / timed_tasks(client, calls) for _ in range(args.repeat)]
            first = calls[0][5:7]  # its part file: the last run's, by the worker
        from bliss_lite.data.safe_open import open_hdf5

        with open_hdf5(dask_integrate.part_path(parts_dir, *first)) as h5:
            got = h5["intensity"][:256]
        expected = dask_integrate.integrate_range(str(scan), "1.1", "pilatus", settings_json, 0, len(got), "cpu")
    err = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
    best_pipeline, best_bare, best_dask = max(pipeline), max(bare), max(on_dask)
    of_bare, of_pipeline = 100 * best_dask / best_bare, 100 * best_dask / best_pipeline
    print(json.dumps({
        "benchmark": "dask_reprocess", "backend": "gpu", "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "frames": frames, "frame_shape": [1679, 1475], "bank_frames": len(bank),
        "compressed_mb_per_frame": round(sum(map(len, bank)) / len(bank) / 1e6, 3), "npt": args.npt,
        "part_frames": part, "tasks": len(calls), "repeat": args.repeat, "cores": len(os.sched_getaffinity(0)),
        "setup_s": round(setup_s, 1),
        "gpu_pipeline_fps": round(best_pipeline), "gpu_bare_fps": round(best_bare), "gpu_dask_fps": round(best_dask),
        "gpu_dask_percent_of_bare": round(of_bare, 1), "gpu_dask_percent_of_pipeline": round(of_pipeline, 1),
        "runs_fps": {"pipeline": [round(r) for r in pipeline], "bare": [round(r) for r in bare],
                     "dask": [round(r) for r in on_dask]},
        "gpu_max_rel_err": err, "goals_met": {"gpu_dask_percent_of_bare>=90": of_bare >= 90,
                                              "gpu_max_rel_err<=1e-4": err <= 1e-4}}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=["cpu", "gpu"],
                        help="gpu: the GPU figures (one GPU worker through Dask against the bare pipeline)")
    parser.add_argument("--bank", type=int, default=32, help="--backend gpu: distinct frames rendered")
    parser.add_argument("--tmp", default="/tmp", help="where the scan is written (--backend gpu: ~0.7 MB a frame)")
    parser.add_argument("--frames", type=int, default=None, help="frames of the scan (default 2048; gpu: 16384)")
    parser.add_argument("--roi", default="0,0,1679,1475")
    parser.add_argument("--part-frames", type=int, default=None)
    parser.add_argument("--npt", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="each timing the best of this many runs")
    args = parser.parse_args(argv)
    # as in Dask's workers (distributed.nanny.pre-spawn-environ): else the bare function's decoding
    # runs on bitshuffle's OpenMP threads, one per core, and on a loaded host spins (measured here:
    # 11 ms a full frame against 4 ms on one thread), so bare and Dask would not run the same code
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.backend == "gpu":
        return gpu_main(args)
    args.frames = args.frames or 2048

    from bliss_lite.data.safe_open import open_hdf5
    from bliss_lite.processing import dask_integrate
    from bliss_lite.processing.dask_cluster import cluster
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.jobs import Job, load_plugins, run_job

    load_plugins()
    roi = [int(v) for v in args.roi.split(",")]
    part = args.part_frames or dask_integrate.PART_FRAMES
    settings = IntegrationSettings.from_poni(PONI, roi=tuple(roi), npt=args.npt)
    settings_json = settings.to_json()
    with tempfile.TemporaryDirectory(prefix="bl_dask_", dir="/tmp") as tmp:
        tmp = Path(tmp)
        scan = tmp / "scan.h5"
        write_scan(scan, args.frames, tuple(roi[2:]))
        parts_dir = tmp / "parts"
        parts_dir.mkdir()
        calls = [(str(parts_dir), str(scan), "1.1", "pilatus", settings_json, first, stop, "cpu")
                 for first, stop in dask_integrate.plan(args.frames, part)]

        dask_integrate.integrate_part(*calls[0])  # warm before the clock, as the workers are
        bare = min(_bare(calls) for _ in range(args.repeat))

        seconds = {}
        for workers in (1, 2):
            with cluster(workers=workers) as client:
                client.run(dask_integrate.integrate_part, *calls[0])  # imports, integrator, file handles warm
                seconds[workers] = min(timed_tasks(client, calls) for _ in range(args.repeat))
                if workers == 2:
                    job = {"filename": str(scan), "entry": "1.1", "part_frames": part,
                           "integration": {"poni": str(PONI), "roi": roi, "npt": args.npt}}
                    single = run_job(Job("integrate_scan", {**job, "output": {"filename": str(tmp / "single.h5")}}))
                    assert single.status == "success", single.traceback
                    started = time.perf_counter()
                    out = dask_integrate.integrate_scan_dask({**job, "output": {"filename": str(tmp / "dask.h5")}},
                                                             client, progress=lambda total, done: _Silent())
                    job_s = time.perf_counter() - started
        with open_hdf5(tmp / "single.h5") as a, open_hdf5(tmp / "dask.h5") as b:
            expected, got = a["1.1/integrate/results/intensity"][()], b["1.1/integrate/results/intensity"][()]
    err = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
    print(json.dumps({
        "frames": args.frames, "frame_shape": roi[2:], "npt": args.npt, "part_frames": part,
        "tasks": len(calls), "repeat": args.repeat, "cores": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
        "bare_s": round(bare, 3), "dask_1_worker_s": round(seconds[1], 3), "dask_2_workers_s": round(seconds[2], 3),
        "bare_frames_per_s": round(args.frames / bare, 1),
        "dask_overhead_percent": round(100 * (seconds[1] - bare) / bare, 2),
        "speedup_2_workers": round(seconds[1] / seconds[2], 3),
        "job_2_workers_s": round(job_s, 3), "job_parts": out["parts"],
        "max_rel_err": err, "goals_met": {"speedup_2_workers>=1.7": seconds[1] / seconds[2] >= 1.7,
                                          "dask_overhead_percent<=5": 100 * (seconds[1] - bare) / bare <= 5,
                                          "max_rel_err<=1e-6": err <= 1e-6}}))


class _Silent:
    def update(self, n):
        pass

    def close(self):
        pass


if __name__ == "__main__":
    main()
