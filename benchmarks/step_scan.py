#!/usr/bin/env python3
"""Benchmark: per-point cost of a step scan, and the total time of `ct(0.001)`, with the
Bluesky peer run side by side in the same invocation.

bliss_lite: `ascan(m4, 0, 1, N-1, 0, diode1, diode2, diode3)` in the `test` session (m4 is the
instant motor), saving to HDF5 and publishing to a private Redis on; the figure is the
scan's wall time over N (from the call to its return: file closed, Redis sealed). The points
in the file and in Redis are counted to show nothing was skipped.
Peer: a Bluesky script of N points (RunEngine `scan`, ophyd.sim, no saving), run from PEER in a
subprocess of the same Python, when it is there and so are bluesky and ophyd (docs/architecture.md).
Usage: python benchmarks/step_scan.py [--points N] [--repeat R] [--cts N]
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "benchmarks" / "peers" / "bluesky_scan.py"  # the Bluesky step scan, in a child process
BLISS_CT_MS = 15.0  # real BLISS 2.4 ct(0.001), measured once on this machine kind (quoted)


def run_peer(points):
    if not PEER.is_file():
        return {"error": f"{PEER} not found"}
    result = subprocess.run([sys.executable, str(PEER), str(points)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_ours(points, repeat, cts):
    from gevent import monkey

    monkey.patch_all()
    from bliss_lite.data.client import ScanReader
    from bliss_lite.scans.step import ascan, ct
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("test", ROOT / "config")
    session.scan_context.watchers.clear()  # no shell display: this measures the engine (one JSON line out)
    m4, counters = ns["m4"], [ns["diode1"], ns["diode2"], ns["diode3"]]
    ascan(m4, 0, 1, 99, 0, *counters)  # warm-up: Redis started, file created
    per_point = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        scan = ascan(m4, 0, 1, points - 1, 0, *counters)
        per_point.append((time.perf_counter() - t0) / points * 1e3)
    import h5py

    with h5py.File(scan.filename, "r", locking=False) as h5:
        in_file = min(len(h5[f"{scan.entry}/measurement/{c.name}"]) for c in counters)
    reader = ScanReader(session.scan_context.redis.client(), scan.key)
    in_redis = min(len(reader.read(c.name)) for c in counters)
    for _ in range(10):
        ct(0.001, *counters)
    ct_ms = []
    for _ in range(cts):
        t0 = time.perf_counter()
        ct(0.001, *counters)
        ct_ms.append((time.perf_counter() - t0) * 1e3)
    session.close()
    return {"ms_per_point": statistics.median(per_point), "ms_per_point_runs": [round(x, 4) for x in per_point],
            "points_in_file": in_file, "points_in_redis": in_redis,
            "ct_0.001_ms_median": statistics.median(ct_ms), "ct_0.001_ms_p90": sorted(ct_ms)[int(0.9 * len(ct_ms))]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cts", type=int, default=200)
    args = parser.parse_args()
    with private_environment("bl_bench_"):
        peer = run_peer(args.points)  # first, in its own process: ours then patches this one
        ours = run_ours(args.points, args.repeat, args.cts)
    peer_ms = peer.get("ms_per_point")
    print(json.dumps({
        "benchmark": "step_scan", "date": time.strftime("%Y-%m-%d"), "points": args.points,
        "saving": True, "publishing": True, **ours,
        "peer": "bluesky RunEngine scan + ophyd.sim (no saving)", "peer_ms_per_point": peer_ms,
        "peer_error": peer.get("error"),
        "speedup_vs_bluesky": round(peer_ms / ours["ms_per_point"], 1) if peer_ms else None,
        "peer_bliss_ct_ms_quoted": BLISS_CT_MS,
        "ct_speedup_vs_bliss": round(BLISS_CT_MS / ours["ct_0.001_ms_median"], 1),
    }))


if __name__ == "__main__":
    main()
