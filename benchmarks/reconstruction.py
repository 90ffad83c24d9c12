#!/usr/bin/env python3
"""Benchmark: filtered back-projection of one XRD-CT slice, every q bin at once.

Random float32 data of the requested size (the figure does not depend on the values): a
(n_omega, n_x, nq) sinogram reconstructed to (n_x, n_x, nq). A warm-up run of the same size
compiles (or loads) the numba kernels and touches the process's first ~2 GB (in this VM the
first touch of fresh memory costs ~0.8 s/GB, a cost a live pipeline pays once); it is not
counted, but reported as first_run_seconds. Then the slice is timed, filter and
back-projection separately. DESIGN.md's figure for a plain batched numba kernel on
this machine: ~25 s for 400 x 600 x 1000. Prints one JSON line.
Usage: python benchmarks/reconstruction.py [--nx 400] [--nomega 600] [--nq 1000] [--backend cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nx", type=int, default=400)
    parser.add_argument("--nomega", type=int, default=600)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--window", default="ramp")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is reported")
    args = parser.parse_args()

    import numba

    from bliss_lite.processing.fbp import fbp

    x = np.linspace(-1, 1, args.nx, endpoint=False) + 1.0 / args.nx
    omega = (np.arange(args.nomega) + 0.5) * 180.0 / args.nomega
    sino = np.random.default_rng(0).random((args.nomega, args.nx, args.nq), dtype=np.float32)
    start = time.perf_counter()
    fbp(sino, x, omega, 0.0, backend=args.backend, window=args.window)  # warm-up, not counted
    first = time.perf_counter() - start
    runs = []
    for _ in range(args.repeat):
        timings = {}
        start = time.perf_counter()
        image = fbp(sino, x, omega, 0.0, backend=args.backend, window=args.window, timings=timings)
        runs.append((time.perf_counter() - start, timings))
        del image
    seconds, timings = min(runs, key=lambda r: r[0])
    print(json.dumps({
        "benchmark": "fbp_slice", "nx": args.nx, "nomega": args.nomega, "nq": args.nq,
        "backend": args.backend, "window": args.window, "threads": numba.get_num_threads(),
        "cpus": os.cpu_count(), "seconds": round(seconds, 3), "first_run_seconds": round(first, 3),
        "filter_seconds": round(timings["filter_seconds"], 3),
        "backproject_seconds": round(timings["backproject_seconds"], 3),
        "interpolations_per_second": round(args.nx ** 2 * args.nomega * args.nq / timings["backproject_seconds"], -6),
        "runs": [round(r[0], 3) for r in runs],
        "peer": {"plain batched numba kernel (DESIGN.md)": 25.0}, "ratio_to_peer": round(25.0 / seconds, 2),
    }))


if __name__ == "__main__":
    main()
