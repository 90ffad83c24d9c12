#!/usr/bin/env python3
"""Benchmark: filtered back-projection of one XRD-CT slice, every q bin at once.

Random float32 data of the requested size (the figure does not depend on the values): a
(n_omega, n_x, nq) sinogram reconstructed to (n_x, n_x, nq). A warm-up run of the same size
compiles (or loads) the numba kernels and touches the process's first ~2 GB (in this VM the
first touch of fresh memory costs ~0.8 s/GB, a cost a live pipeline pays once); it is not
counted, but reported as first_run_seconds. Then the slice is timed, filter and
back-projection separately. The figure for a plain batched numba kernel on this
machine (docs/architecture.md): ~25 s for 400 x 600 x 1000. Prints one JSON line.
Usage: python benchmarks/reconstruction.py [--nx 400] [--nomega 600] [--nq 1000] [--backend cpu] [--peer-bins 8]

`--backend gpu`: `seconds` is end to end from a NumPy sinogram in host memory to a NumPy image
in host memory (the bus crossed both ways, overlapped with the work), `seconds_pinned` from
and to pinned arrays;
`device_seconds` with the sinogram already on the GPU (as after GPU integration) and the image
left there: the wall time of the `fbp` call (Python included) until the GPU is done;
`device_events_seconds` the same call timed by CUDA events around it; `filter_seconds` and
`backproject_seconds` its two parts, each run alone (CUDA events). Medians of `--repeat` runs
after a warm-up. The CPU FBP runs in the same
invocation (`cpu_seconds`), and `max_rel_err` is the GPU images against it, relative to its
maximum.

The peer runs in the same invocation (`--peer-bins`, 0 to skip; astra-toolbox from the `bench`
extras): ASTRA's FBP one q bin at a time on the first `--peer-bins` bins, extrapolated to all
nq bins (`benchmarks/astra_peer.py` says how it is called and how its images are matched to
ours: exactly, by the pixel size). On the CPU ('FBP', 'linear' projector) over
`--peer-processes` processes (2 by default), on the GPU ('FBP_CUDA') in this process. The first
half of those bins hold sinograms of disks instead of random values, so that the images can be
compared meaningfully (the timings do not depend on the values). `--peer-preload` lists
libraries to load before `import astra` (the GPU machine's CUDA 12 runtime and cuFFT shim).
`load_average` is the machine's (1, 5, 15 min) before and after, as `uptime` shows it.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import astra_peer
import numpy as np


def run_peer(args, backend, x, omega, sino, ours_bins):
    """The ASTRA peer's figures, or the reason it could not run."""
    if args.peer_bins <= 0:
        return None
    try:
        return astra_peer.peer(backend, x, omega, sino, ours_bins, args.peer_bins, args.peer_processes,
                               args.peer_preload, phantoms=args.phantom_bins)
    except Exception as exc:  # the peer is optional: report why it is missing, keep our figures
        return {"error": f"{type(exc).__name__}: {exc}"}


def gpu_main(args, sino, x, omega):
    import cupy

    from bliss_lite.processing.fbp import fbp
    from bliss_lite.processing.gpu import fbp as gpu_fbp
    from bliss_lite.processing.gpu.staging import pinned_empty

    def timed(call):
        call()  # warm-up: kernels compiled, pinned buffers made
        times = []
        for _ in range(args.repeat):
            cupy.cuda.Device().synchronize()
            start = time.perf_counter()
            call()
            cupy.cuda.Device().synchronize()
            times.append(time.perf_counter() - start)
        return float(np.median(times)), [round(t, 4) for t in times]

    start = time.perf_counter()
    image = fbp(sino, x, omega, 0.0, backend="gpu", window=args.window)
    first = time.perf_counter() - start
    seconds, runs = timed(lambda: fbp(sino, x, omega, 0.0, backend="gpu", window=args.window))
    pinned_in = pinned_empty(sino.shape, np.float32)
    pinned_in[...] = sino
    pinned_out = pinned_empty((args.nx, args.nx, args.nq), np.float32)
    pinned, pinned_runs = timed(lambda: gpu_fbp.fbp(pinned_in, x, omega, 0.0, window=args.window, out=pinned_out))
    on_device = cupy.asarray(sino)
    device_seconds, device_runs = timed(lambda: fbp(on_device, x, omega, 0.0, backend="gpu", window=args.window))
    geometry = gpu_fbp.SliceGeometry(x, omega, 0.0, None, args.nq, args.window, "auto")
    filtered = cupy.empty((geometry.n_om, geometry.nxp, geometry.nqp), np.float32)
    image_d = cupy.empty((geometry.n, geometry.n, geometry.nqp), np.float32)
    calls = {"events": lambda: fbp(on_device, x, omega, 0.0, backend="gpu", window=args.window),
             "filter_seconds": lambda: geometry.filter(on_device, filtered),
             "backproject_seconds": lambda: geometry.backproject(filtered, image_d)}
    parts = {key: [] for key in calls}
    for key, call in calls.items():
        call()
        for _ in range(args.repeat):
            marks = (cupy.cuda.Event(), cupy.cuda.Event())
            marks[0].record()
            call()
            marks[1].record()
            marks[1].synchronize()
            parts[key].append(cupy.cuda.get_elapsed_time(*marks) / 1e3)
    timings = {key: float(np.median(values)) for key, values in parts.items()}
    sirt_seconds = None
    if args.sirt_iterations > 0:
        from bliss_lite.processing.sirt import sirt

        sirt(on_device[:, :, :8], x, omega, 0.0, iterations=1, backend="gpu")  # compiled
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        sirt(on_device, x, omega, 0.0, iterations=args.sirt_iterations, backend="gpu")
        cupy.cuda.Device().synchronize()
        sirt_seconds = round((time.perf_counter() - start) / args.sirt_iterations, 3)
    device_image = fbp(on_device, x, omega, 0.0, backend="gpu", window=args.window).get()
    pool_bytes = cupy.get_default_memory_pool().total_bytes()
    free_bytes, total_bytes = cupy.cuda.runtime.memGetInfo()
    filtered = image_d = None  # free 10 GB at 1000^3 before the peer
    peer = run_peer(args, "gpu", x, omega, sino, device_image[..., :args.peer_bins])
    start = time.perf_counter()
    expected = fbp(sino, x, omega, 0.0, window=args.window)
    cpu_first = time.perf_counter() - start
    start = time.perf_counter()
    expected = fbp(sino, x, omega, 0.0, window=args.window)
    cpu_seconds = time.perf_counter() - start
    scale = np.abs(expected).max()
    error = max(float(np.abs(image - expected).max() / scale), float(np.abs(pinned_out - expected).max() / scale),
                float(np.abs(device_image - expected).max() / scale))
    print(json.dumps({
        "benchmark": "fbp_slice", "backend": "gpu", "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "nx": args.nx, "nomega": args.nomega, "nq": args.nq, "window": args.window,
        "seconds": round(seconds, 4), "runs": runs, "first_run_seconds": round(first, 3),
        "seconds_pinned": round(pinned, 4), "pinned_runs": pinned_runs,
        "device_seconds": round(device_seconds, 4), "device_runs": device_runs,
        "device_events_seconds": round(timings["events"], 5),
        "device_events_runs": [round(t, 5) for t in parts["events"]],
        "filter_kind": geometry.matrix[0] if geometry.filter_method == "matrix" else "fft",
        "filter_seconds": round(timings["filter_seconds"], 5),
        "backproject_seconds": round(timings["backproject_seconds"], 5),
        "interpolations_per_second": round(args.nx ** 2 * args.nomega * args.nq / timings["backproject_seconds"], -9),
        "sirt_seconds_per_iteration": sirt_seconds, "sirt_iterations": args.sirt_iterations,
        "gpu_memory_gib": {"cupy_pool_held": round(pool_bytes / 2 ** 30, 1),
                           "used_on_device": round((total_bytes - free_bytes) / 2 ** 30, 1),
                           "device_total": round(total_bytes / 2 ** 30, 1)},
        "cpu_seconds": round(cpu_seconds, 3), "cpu_first_run_seconds": round(cpu_first, 3),
        "cpu_threads": __import__("numba").get_num_threads(), "cpus": os.cpu_count(),
        "ratio_to_cpu": round(cpu_seconds / device_seconds, 1), "max_rel_err": error,
        "peer": {"plain batched GPU kernel, end to end with transfers, H100 (issue 7)": 0.071},
        "ratio_to_peer_pinned": round(0.071 / pinned, 2),
        "astra": peer,
        "ratio_astra_to_device_seconds": ratio(peer, device_seconds),
        "ratio_astra_to_host_seconds": ratio(peer, seconds),
        "load_average": [args.load_before, [round(v, 2) for v in os.getloadavg()]],
        "note": "seconds: NumPy sinogram -> NumPy image (staged through pinned buffers); seconds_pinned: pinned "
                "in and out; device_seconds: CuPy sinogram -> CuPy image (no bus), wall time of the call; "
                "device_events_seconds: the same by CUDA events",
    }))


def ratio(peer, seconds):
    """How many times longer ASTRA takes for all bins than we do (None without a peer figure)."""
    if not peer or "seconds_all_bins" not in peer:
        return None
    return round(peer["seconds_all_bins"] / seconds, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nx", type=int, default=400)
    parser.add_argument("--nomega", type=int, default=600)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--window", default="ramp")
    parser.add_argument("--sirt-iterations", type=int, default=3,
                        help="gpu: SIRT iterations timed (device sinogram); 0: none")
    parser.add_argument("--peer-bins", type=int, default=8, help="q bins ASTRA reconstructs (0: no peer)")
    parser.add_argument("--peer-processes", type=int, default=None,
                        help="ASTRA processes (default: 2 on the CPU, 1 on the GPU)")
    parser.add_argument("--peer-preload", default=os.environ.get("ASTRA_PRELOAD", ""),
                        help="':'-separated libraries to load before import astra (default $ASTRA_PRELOAD)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is reported (gpu: median)")
    args = parser.parse_args()
    args.peer_bins = max(0, min(args.peer_bins, args.nq))
    args.phantom_bins = (args.peer_bins + 1) // 2
    if args.peer_processes is None:
        args.peer_processes = 1 if args.backend == "gpu" else 2
    args.load_before = [round(v, 2) for v in os.getloadavg()]

    import numba

    from bliss_lite.processing.fbp import fbp

    x = np.linspace(-1, 1, args.nx, endpoint=False) + 1.0 / args.nx
    omega = (np.arange(args.nomega) + 0.5) * 180.0 / args.nomega
    sino = np.random.default_rng(0).random((args.nomega, args.nx, args.nq), dtype=np.float32)
    if args.phantom_bins:
        sino[:, :, :args.phantom_bins] = astra_peer.phantom_bins(x, omega, args.phantom_bins)
    if args.backend == "gpu":
        return gpu_main(args, sino, x, omega)
    start = time.perf_counter()
    fbp(sino, x, omega, 0.0, backend=args.backend, window=args.window)  # warm-up, not counted
    first = time.perf_counter() - start
    runs = []
    for _ in range(args.repeat):
        timings = {}
        start = time.perf_counter()
        image = fbp(sino, x, omega, 0.0, backend=args.backend, window=args.window, timings=timings)
        runs.append((time.perf_counter() - start, timings))
        ours_bins = np.array(image[..., :args.peer_bins])
        del image
    seconds, timings = min(runs, key=lambda r: r[0])
    peer = run_peer(args, "cpu", x, omega, sino, ours_bins)
    print(json.dumps({
        "benchmark": "fbp_slice", "nx": args.nx, "nomega": args.nomega, "nq": args.nq,
        "backend": args.backend, "window": args.window, "threads": numba.get_num_threads(),
        "cpus": os.cpu_count(), "seconds": round(seconds, 3), "first_run_seconds": round(first, 3),
        "filter_seconds": round(timings["filter_seconds"], 3),
        "backproject_seconds": round(timings["backproject_seconds"], 3),
        "interpolations_per_second": round(args.nx ** 2 * args.nomega * args.nq / timings["backproject_seconds"], -6),
        "runs": [round(r[0], 3) for r in runs],
        "peer": {"plain batched numba kernel (docs/architecture.md)": 25.0}, "ratio_to_peer": round(25.0 / seconds, 2),
        "astra": peer, "ratio_astra_to_ours": ratio(peer, seconds),
        "load_average": [args.load_before, [round(v, 2) for v in os.getloadavg()]],
    }))


if __name__ == "__main__":
    main()
