#!/usr/bin/env python3
"""Benchmark: phase maps of one reconstructed XRD-CT slice by full-pattern decomposition.

A slice (n, n, nq) float32 made of known non-negative amounts of the model's components plus
noise: 4 crystalline phases (computed from their d-spacings through a 0.35 nm^-1 profile), an
amorphous component (humps) and a constant background: 6 components. Timed: `decompose`
(one GEMM over the slice, batched NNLS, the residual map), the median of `--repeat` runs after
a warm-up. `max_rel_err`: the fitted amounts against the true ones, relative to the largest.
The peer: scipy.optimize.nnls one voxel at a time on `--peer-voxels` voxels, extrapolated to
the slice (`peer_seconds`), and `speedup` against it. `--backend gpu` times CuPy from a slice
already on the GPU (`seconds`; the CPU figure is in `cpu_seconds`). Goal: <= 5 s on 2 cores,
<= 50 ms on the GPU. Prints one JSON line.
Usage: python benchmarks/phase_decomposition.py [--n 400] [--nq 1000] [--backend cpu|gpu] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_env import timed

PHASES = {"CeO2": "CeO2", "LaB6": "LaB6", "Si": "Si", "alpha_Al2O3": "alpha_Al2O3",
          "matrix": {"humps": [[20.0, 6.0, 1.0], [38.0, 9.0, 0.5]]}}


def slice_of(model, n, seed=0):
    """(volume (n, n, nq) float32, true amounts (n*n, k))."""
    rng = np.random.default_rng(seed)
    k = model.design.shape[1]
    amounts = np.where(rng.random((n * n, k)) < 0.4, 0.0, rng.random((n * n, k))).astype(np.float32)
    design = (model.design / model.design.max(axis=0)).astype(np.float32)
    volume = amounts @ design.T
    volume += rng.standard_normal(volume.shape, dtype=np.float32) * np.float32(0.01)
    return volume.reshape(n, n, -1), amounts, design


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--backend", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-voxels", type=int, default=2000)
    args = parser.parse_args()
    from scipy.optimize import nnls as scipy_nnls

    from bliss_lite.processing.decomposition import PhaseModel, build_model
    from bliss_lite.processing.references import PeakProfile

    q = np.linspace(10.0, 40.0, args.nq)
    built = build_model(PHASES, q, profile=PeakProfile((0.35,)), background=0)
    volume, amounts, design = slice_of(built, args.n)
    model = PhaseModel(q, built.names, design.astype(np.float64), built.units, built.sources, built.profile, 0)
    cpu_seconds = timed(lambda: model.decompose(volume), args.repeat)
    maps, _ = model.decompose(volume)
    fitted = np.stack([maps[name].reshape(-1) for name in model.names], axis=1)
    truth = amounts[:, :model.phase_count]
    max_rel_err = float(np.abs(fitted - truth).max() / truth.max())
    flat = volume.reshape(-1, args.nq)
    pick = np.linspace(0, flat.shape[0] - 1, args.peer_voxels).astype(int)
    start = time.perf_counter()
    for i in pick:
        scipy_nnls(design.astype(np.float64), flat[i].astype(np.float64))
    peer_seconds = (time.perf_counter() - start) / pick.size * flat.shape[0]
    result = {"benchmark": "phase_decomposition", "backend": args.backend, "n": args.n, "nq": args.nq,
              "components": int(design.shape[1]), "voxels": int(flat.shape[0]), "cpu_seconds": round(cpu_seconds, 4),
              "cpu_threads": os.environ.get("OMP_NUM_THREADS", "default"), "goal_seconds": 5.0,
              "max_rel_err": max_rel_err, "peer": "scipy.optimize.nnls per voxel",
              "peer_seconds": round(peer_seconds, 2), "speedup": round(peer_seconds / cpu_seconds, 1)}
    if args.backend == "gpu":
        import cupy

        on_gpu = cupy.asarray(volume)

        def run():
            model.decompose(on_gpu)
            cupy.cuda.Device().synchronize()

        result["seconds"] = round(timed(run, args.repeat), 5)
        result["goal_seconds"] = 0.05
        gpu_maps, _ = model.decompose(on_gpu)
        result["gpu_max_rel_err"] = float(max(np.abs(gpu_maps[p] - maps[p]).max() for p in maps) / truth.max())
    else:
        result["seconds"] = result["cpu_seconds"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
