#!/usr/bin/env python3
"""Benchmark: full-size Pilatus 2M frames through a continuous scan, into HDF5 and Redis.

`fscan(omega, 0, step, N, 1/rate, pilatus)` in the demo session (full frame, 1475 x 1679):
omega sweeps at constant velocity, a position trigger per frame, every frame written to the
HDF5 file (write_direct_chunk, no second compression) and published to a private Redis (the
stream capped by the frame memory budget). A 2-core machine cannot render and Poisson-draw
2.4 Mpixel frames at 250 Hz besides (docs/architecture.md), so, as said in the output, the simulator
replays a bank of distinct frames of the sample rendered (and compressed) before the timed run.
`--rate 0` lifts the detector's 250 Hz cap and asks for 1000 Hz (its readout time allows): the figure is then the
highest sustained rate of the pipeline. Prints one JSON line.
Usage: python benchmarks/xrdct_acquisition.py [--frames N] [--rate HZ] [--bank N]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid=None):
    """User + system CPU seconds of a process (this one by default), from /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--bank", type=int, default=64)
    args = parser.parse_args()
    with private_environment("bl_xrdct_"):
        result = run(args)
    print(json.dumps(result))


def run(args):
    from gevent import monkey

    monkey.patch_all()
    import numpy as np

    from bliss_lite.data import bslz4
    from bliss_lite.scans.continuous_scans import fscan
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("demo", ROOT / "config")
    session.scan_context.watchers.clear()
    pilatus, omega, sample = ns["pilatus"], ns["omega"], ns["xrdct_sample"]
    model = sample.model(pilatus.roi)
    rng_positions = np.random.default_rng(0)
    bank = []
    for _ in range(args.bank):  # distinct frames of the sample: other x, omega, z each
        frame = model.frame(rng_positions.uniform(-0.9, 0.9), rng_positions.uniform(0, 180), 0.0, 0.003)[0]
        bank.append(bslz4.compress(frame))
    pilatus.frame_bank = bank
    rate = args.rate if args.rate > 0 else 1000.0  # the readout time (0.95 ms) bounds the period
    if args.rate <= 0:
        pilatus.rate_cap = rate
    period = 1.0 / rate
    step = min(1.0, 0.9 * omega.velocity * period)
    client = session.scan_context.redis.client()
    redis_pid = client.info()["process_id"]
    client.config_resetstat()
    cpu0, redis_cpu0, t0 = cpu_seconds(), cpu_seconds(redis_pid), time.perf_counter()
    scan = fscan(omega, 0.0, step, args.frames, period, pilatus)
    wall = time.perf_counter() - t0
    cpu, redis_cpu = cpu_seconds() - cpu0, cpu_seconds(redis_pid) - redis_cpu0
    sweep = scan.scan_info["sweep"]
    import h5py

    with h5py.File(scan.filename, "r", locking=False) as h5:
        in_file = h5[f"{scan.entry}/instrument/pilatus/data"].shape[0]
    info = client.info("memory")
    report = scan.scan_info["frames"]["pilatus"]
    session.close()
    chunk_mb = float(np.mean([len(c) for c in bank])) / 1e6
    return {
        "benchmark": "xrdct_acquisition", "date": time.strftime("%Y-%m-%d"),
        "frames": args.frames, "requested_rate": rate, "frame_shape": list(pilatus.shape),
        "fps": round(sweep["handled_rate_hz"], 1), "max_lateness_ms": round(1e3 * sweep["max_lateness_s"], 1),
        "scan_wall_s": round(wall, 2),
        "dropped": report["dropped"] + (args.frames - in_file), "duplicated": report["duplicated"],
        "frames_in_file": in_file, "filename": scan.filename, "entry": scan.entry,
        "compressed_mb_per_frame": round(chunk_mb, 3), "compression_ratio": round(pilatus.shape[0] * pilatus.shape[1] * 4 / 1e6 / chunk_mb, 1),
        "redis_peak_memory_mb": round(info["used_memory_peak"] / 2**20, 1),
        "cpu_share_scan_process": round(cpu / wall, 2), "cpu_share_redis": round(redis_cpu / wall, 2),
        "frame_source": f"bank of {args.bank} distinct frames of the sample, rendered and compressed before the run",
    }


if __name__ == "__main__":
    main()
