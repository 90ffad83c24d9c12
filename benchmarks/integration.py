"""Azimuthal integration throughput on full Pilatus 2M frames, decompression included.

`python benchmarks/integration.py --processes 2 [--frames 3000] [--npt 1000]`

A bank of distinct frames of the simulated sample (full frame, Poisson noise, gaps at -1) is
rendered and compressed (Bitshuffle-LZ4, as they arrive from Redis or the file) before the
timed part. Then `--processes` processes (one thread each, OMP_NUM_THREADS=1) decompress and
integrate frames from the bank with the lean engine, started together at a barrier; fps is
all their frames over the wall time. pyFAI's `integrate1d` (CSR, no split, its own OpenMP
threads on every core) does the same pipeline in the same run for `pyfai_fps`; `max_rel_err`
is the largest difference between the two patterns over the bank, relative to the pattern's
maximum. One JSON line.

`--backend gpu` (one NVIDIA GPU, CuPy): the same bank, as compressed chunks in host memory
(bytes objects, as they come from Redis), integrated into patterns in host memory by the GPU
pipeline (chunks staged into pinned buffers, decoded and integrated on the GPU, `--frames`
frames cycling over the bank): `fps`. `fps_int32`: the bank decoded, int32 frames in pinned
host memory (as the issue's CuPy peer had them), `fps_int32_pageable` from an ordinary numpy
array. `fps_to_device`: the compressed frames into patterns left on the GPU (`device=True`,
as before a reconstruction there), one run. `max_rel_err` is against the CPU path. The CPU pipeline runs in the same invocation
with `--processes` processes (`cpu_fps`).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PONI = ROOT / "config" / "xrdct" / "pilatus2m.poni"


def make_bank(count, seed=0):
    import numpy as np

    from bliss_lite.controllers.detectors.pilatus_geometry import Roi
    from bliss_lite.controllers.sample.diffraction import DiffractionModel, load_geometry
    from bliss_lite.controllers.sample.phantom import default_phantom
    from bliss_lite.data import bslz4

    model = DiffractionModel(default_phantom(), load_geometry(PONI), Roi(), flux=2.0e5, seed=seed)
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(count):
        frame, _ = model.frame(rng.uniform(-0.9, 0.9), rng.uniform(0, 180), 0.0, 0.004)
        chunks.append(bslz4.compress(frame))
    return chunks


def _work(chunks, npt, count, barrier, results):
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE
    from bliss_lite.data import bslz4
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    lean = LeanIntegrator(IntegrationSettings.from_poni(PONI, npt=npt))
    lean.integrate(bslz4.decompress(chunks[0], FULL_SHAPE, np.int32))  # compiled before the clock
    barrier.wait()
    start = time.perf_counter()
    for i in range(count):
        lean.integrate(bslz4.decompress(chunks[i % len(chunks)], FULL_SHAPE, np.int32))
    results.put((count, time.perf_counter() - start))


def lean_fps(chunks, npt, processes, frames):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    share = frames // processes
    workers = [ctx.Process(target=_work, args=(chunks, npt, share, barrier, results)) for _ in range(processes)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    done = [results.get(timeout=600) for _ in workers]
    wall = time.perf_counter() - start
    for w in workers:
        w.join()
    return sum(n for n, _ in done) / wall, wall


def pyfai_fps_and_error(chunks, npt, frames):
    import numpy as np

    from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE
    from bliss_lite.data import bslz4
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    lean = LeanIntegrator(IntegrationSettings.from_poni(PONI, npt=npt))
    error = 0.0
    for chunk in chunks:
        frame = bslz4.decompress(chunk, FULL_SHAPE, np.int32)
        reference = lean.reference(frame).intensity
        error = max(error, float(np.abs(lean.integrate(frame) - reference).max() / np.abs(reference).max()))
    start = time.perf_counter()
    for i in range(frames):
        lean.reference(bslz4.decompress(chunks[i % len(chunks)], FULL_SHAPE, np.int32))
    return frames / (time.perf_counter() - start), error


def gpu_figures(chunks, npt, frames, int32_frames, repeat):
    import cupy
    import numpy as np

    from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE
    from bliss_lite.data import bslz4
    from bliss_lite.processing.gpu.staging import pinned_empty
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    settings = IntegrationSettings.from_poni(PONI, npt=npt)
    gpu, cpu = LeanIntegrator(settings, backend="gpu"), LeanIntegrator(settings)
    decoded = np.stack([bslz4.decompress(c, FULL_SHAPE, np.int32) for c in chunks])
    expected = np.stack([cpu.integrate(f) for f in decoded])
    error = max(_rel(gpu.integrate_compressed(chunks), expected), _rel(gpu.integrate_many(decoded), expected))
    stream = [chunks[i % len(chunks)] for i in range(frames)]
    gpu.integrate_compressed(stream[:4 * gpu.gpu.batch])  # warm: kernels compiled, buffers allocated
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        gpu.integrate_compressed(stream)
        runs.append(frames / (time.perf_counter() - start))
    gpu.integrate_compressed(stream[:4 * gpu.gpu.batch], device=True)
    start = time.perf_counter()
    on_device = gpu.integrate_compressed(stream, device=True)
    cupy.cuda.Device().synchronize()
    to_device = frames / (time.perf_counter() - start)
    error = max(error, _rel(on_device[:len(chunks)].get(), expected))
    del on_device
    bank = np.stack([decoded[i % len(decoded)] for i in range(int32_frames)])
    pinned = pinned_empty(bank.shape, np.int32)
    pinned[...] = bank
    int32 = {}
    for name, source in (("pinned", pinned), ("pageable", bank)):
        gpu.integrate_many(source[:gpu.gpu.batch])
        best = 0.0
        for _ in range(repeat):
            start = time.perf_counter()
            gpu.integrate_many(source)
            best = max(best, len(source) / (time.perf_counter() - start))
        int32[name] = best
    return {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "fps": max(runs),
            "fps_runs": [round(r) for r in runs], "fps_to_device": to_device, "fps_int32": int32["pinned"],
            "fps_int32_pageable": int32["pageable"], "max_rel_err": error, "batch": gpu.gpu.batch,
            "staging_threads": gpu.gpu.stager.threads}


def _rel(a, b):
    import numpy as np

    return float(max(np.abs(x - y).max() / np.abs(y).max() for x, y in zip(a, b)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3000, help="frames integrated by the lean engine, all processes")
    parser.add_argument("--pyfai-frames", type=int, default=150)
    parser.add_argument("--bank", type=int, default=32, help="distinct frames rendered before the timed part")
    parser.add_argument("--npt", type=int, default=1000)
    parser.add_argument("--backend", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--gpu-frames", type=int, default=30000, help="compressed frames integrated on the GPU")
    parser.add_argument("--int32-frames", type=int, default=384, help="int32 frames in host memory, GPU")
    parser.add_argument("--repeat", type=int, default=3, help="GPU timed runs; the best is reported")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    chunks = make_bank(args.bank)
    mean_chunk = sum(map(len, chunks)) / len(chunks)
    if args.backend == "gpu":
        figures = gpu_figures(chunks, args.npt, args.gpu_frames, args.int32_frames, args.repeat)
        cpu_fps, wall = lean_fps(chunks, args.npt, args.processes, args.frames)
        print(json.dumps({
            "benchmark": "integration", "backend": "gpu", "device": figures.pop("device"),
            "frames": args.gpu_frames, "npt": args.npt, "frame_shape": [1679, 1475], "bank_frames": args.bank,
            "compressed_mb_per_frame": round(mean_chunk / 1e6, 3),
            **{k: (round(v, 1) if isinstance(v, float) and k != "max_rel_err" else v) for k, v in figures.items()},
            "cpu_fps": round(cpu_fps, 1), "cpu_processes": args.processes, "cpus": os.cpu_count(),
            "ratio_to_cpu": round(figures["fps"] / cpu_fps, 2),
            "peer": {"plain CuPy pipeline, int32 frames in pinned memory, H100 (issue 7)": 5000},
            "note": "compressed frames: bytes objects in host memory -> patterns in host memory; bank pre-rendered",
        }))
        return
    fps, wall = lean_fps(chunks, args.npt, args.processes, args.frames)
    pyfai_fps, error = pyfai_fps_and_error(chunks, args.npt, args.pyfai_frames)
    print(json.dumps({
        "benchmark": "integration", "backend": args.backend, "processes": args.processes, "cpus": os.cpu_count(),
        "frames": args.frames, "npt": args.npt, "frame_shape": [1679, 1475], "bank_frames": args.bank,
        "compressed_mb_per_frame": round(mean_chunk / 1e6, 3), "fps": round(fps, 1), "seconds": round(wall, 2),
        "pyfai_fps": round(pyfai_fps, 1), "ratio": round(fps / pyfai_fps, 2), "max_rel_err": error,
        "note": "frames pre-rendered into a bank and compressed before timing; decompression is timed",
    }))


if __name__ == "__main__":
    main()
