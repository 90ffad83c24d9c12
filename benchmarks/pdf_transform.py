#!/usr/bin/env python3
"""Benchmark: G(r) of every voxel of one reconstructed PDF-CT slice.

A slice (n, n, nq) float32 of the simulated phases' total scattering (silica glass, Ni
nanoparticles, CeO2: Debye patterns from their atoms) in random non-negative amounts, Q 0.3-30
1/A; reduced with qmax 25 1/A to `--nr` r points over 0-20 A (pdf.VoxelTransform: one
(nr x nq) matrix built once, `setup_seconds`, then one GEMM over the slice: `seconds`, the
median of `--repeat` runs after a warm-up). `max_abs_err`: the float32 GEMM against float64
on 200 voxels, relative to the largest |G|. The peer: the same transform one voxel at a time
(NumPy matrix-vector products, the way a per-pattern PDF program runs), on `--peer-voxels`
voxels, extrapolated to the slice (`peer_seconds`), and `speedup` against it. `--backend gpu`
times CuPy with the slice already on the GPU. Goal: <= 10 s on 2 cores, <= 20 ms on the GPU.
Prints one JSON line.
Usage: python benchmarks/pdf_transform.py [--n 400] [--nq 1000] [--nr 2000] [--backend cpu|gpu] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_env import timed


def slice_of(q, n, seed=0):
    from bliss_lite.controllers.sample import pdf_sample

    rng = np.random.default_rng(seed)
    phases = ("SiO2_glass", "Ni_nano", "CeO2")
    patterns = np.stack([np.interp(q, pdf_sample.Q_GRID, pdf_sample.phase_pattern(p)) for p in phases])
    amounts = np.where(rng.random((n * n, 3)) < 0.5, 0.0, rng.random((n * n, 3)))
    volume = (amounts @ patterns).astype(np.float32)
    return volume.reshape(n, n, q.size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--nr", type=int, default=2000)
    parser.add_argument("--backend", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-voxels", type=int, default=500)
    args = parser.parse_args()
    from bliss_lite.processing.pdf import PdfSettings, VoxelTransform

    q = np.linspace(0.3, 30.0, args.nq)
    qmax = 25.0
    volume = slice_of(q, args.n)
    settings = PdfSettings(composition={"Si": 1, "O": 2, "Ni": 1, "Ce": 1}, qmin=0.8, qmax=qmax, rmax=20.0,
                           rstep=20.0 / (args.nr - 1))
    start = time.perf_counter()
    transform = VoxelTransform(q, settings, volume.reshape(-1, args.nq).mean(axis=0))
    setup_seconds = time.perf_counter() - start
    cpu_seconds = timed(lambda: transform.apply(volume), args.repeat)
    g = transform.apply(volume).reshape(-1, settings.r.size)
    flat = volume.reshape(-1, args.nq)
    pick = np.linspace(0, flat.shape[0] - 1, 200).astype(int)
    exact = flat[pick][:, transform.select].astype(np.float64) @ transform.matrix.astype(np.float64).T
    max_abs_err = float(np.abs(g[pick] - exact).max() / np.abs(exact).max())
    matrix = transform.matrix
    peer_pick = np.linspace(0, flat.shape[0] - 1, min(args.peer_voxels, flat.shape[0])).astype(int)
    start = time.perf_counter()
    for i in peer_pick:
        matrix @ flat[i, transform.select]
    peer_seconds = (time.perf_counter() - start) / peer_pick.size * flat.shape[0]
    result = {"benchmark": "pdf_transform", "backend": args.backend, "n": args.n, "nq": args.nq,
              "nq_in_window": int(transform.select.sum()), "nr": int(settings.r.size), "voxels": int(flat.shape[0]),
              "setup_seconds": round(setup_seconds, 3), "cpu_seconds": round(cpu_seconds, 4),
              "cpu_threads": os.environ.get("OMP_NUM_THREADS", "default"), "goal_seconds": 10.0,
              "max_abs_err": max_abs_err, "peer": "the same transform one voxel at a time (NumPy matvec)",
              "peer_seconds": round(peer_seconds, 2), "speedup": round(peer_seconds / cpu_seconds, 1)}
    result["seconds"] = result["cpu_seconds"]
    if args.backend == "gpu":
        import cupy

        on_gpu = cupy.asarray(volume)

        def run():
            transform.apply(on_gpu, xp=cupy)
            cupy.cuda.Device().synchronize()

        result["seconds"] = round(timed(run, args.repeat), 5)
        result["goal_seconds"] = 0.02
        result["gpu_max_abs_err"] = float(abs(transform.apply(on_gpu, xp=cupy).get().reshape(-1, settings.r.size)[pick]
                                              - exact).max() / np.abs(exact).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
