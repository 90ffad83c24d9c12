#!/usr/bin/env python3
"""Benchmark: a long multi-height XRD-CT, memory sampled through the scan (seed-scale issue, a).

`xrdct` in the `test` session with a small detector ROI (48 x 160) and the detector's rate
cap lifted, integration (local workers) and reconstruction hooks on, every frame rendered by
the simulator (no bank). While it runs, the resident memory (VmRSS) of the scan process, each
integration worker and redis-server is sampled every `--sample-s`; the figure that matters is
its growth from 10 % to 100 % of the scan (goal <= 5 %: nothing per scan grows with its
frames). Prints one JSON line: frames, fps (frames handled per second, first trigger to last
frame), and per process kind rss_growth_percent and peak_rss_mb.
Usage: python benchmarks/scale.py [--frames N] [--rate HZ] [--workers N] [--npt N] [--nx N] [--nomega N]
       [--samples-out FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]
ROI = (816, 700, 48, 160)  # rows across one gap of the module grid, as the tests use


def rss_mb(pid):
    """Resident memory of a process in MB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def mappings_mb(pid):
    """Where a process's resident memory sits, in MB: the brk heap, anonymous mappings (glibc
    arenas, thread stacks, numpy's large buffers) and their count, and file mappings; with the
    thread count. Written beside each sample (--samples-out) to tell what grows."""
    rss = {"heap": 0, "anon": 0, "files": 0}
    maps = 0
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    fields = line.split()
                    name = fields[5] if len(fields) > 5 else ""
                    maps += name == ""
                elif line.startswith("Rss:"):
                    kb = int(line.split()[1])
                    rss["heap" if name == "[heap]" else "anon" if name == "" or name.startswith("[") else "files"] += kb
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None
    return {**{k: round(v / 1024, 1) for k, v in rss.items()}, "anon_maps": maps, "threads": threads}


def growth(samples, kind):
    """(growth from 10 % to 100 % of the scan in percent, peak MB) of one process kind: the
    sum over its processes at each sample."""
    points = [(fraction, sum(v for v in by_pid.values() if v)) for fraction, by_pid in samples[kind] if by_pid]
    if not points:
        return None, None
    at10 = next((mb for fraction, mb in points if fraction >= 0.10), points[0][1])
    last = points[-1][1]
    return round(100.0 * (last - at10) / at10, 2), round(max(mb for _, mb in points), 1)


def height_window_growth(samples, kind, span):
    """Growth in percent from the height before 10 % of the scan to the last height, of the
    highest and of the lowest sample in each (`span`: one height's fraction of the scan). A
    height's reconstruction lifts the memory for seconds; one sample at 10 % and one at the
    end may fall on such a peak or not, the envelope and the floor of a whole height do not."""
    points = [(fraction, sum(v for v in by_pid.values() if v)) for fraction, by_pid in samples[kind] if by_pid]
    early = [mb for fraction, mb in points if 0.10 - span <= fraction <= 0.10]
    late = [mb for fraction, mb in points if fraction >= 1.0 - span]
    if not early or not late:
        return None, None
    return (round(100.0 * (max(late) - max(early)) / max(early), 2),
            round(100.0 * (min(late) - min(early)) / min(early), 2))


def shape_for(frames, n_x, n_omega):
    """(n_x, n_omega, n_z): as many heights as make at least `frames` frames. The default
    n_omega = 12 n_x (the reference scan's is 1.5) keeps the moves between lines a small part,
    and gives a million frames 34 heights: the reduction's pipeline fills over its first 2-3
    heights, which must lie before the 10 % mark the growth is measured from (the reference
    scan's 400 heights fill it within its first 1 %; with 17 heights it ran past 10 %)."""
    return n_x, n_omega, max(1, math.ceil(frames / (n_x * n_omega)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=800.0, help="frames/s asked of the detector (cap lifted)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--npt", type=int, default=200)
    parser.add_argument("--sample-s", type=float, default=1.0)
    parser.add_argument("--nx", type=int, default=50)
    parser.add_argument("--nomega", type=int, default=600)
    parser.add_argument("--samples-out", help="also append every sample to this file as it is taken (JSON lines), "
                        "to watch a long run")
    args = parser.parse_args()
    with private_environment("bl_scale_"):
        result = run(args)
    print(json.dumps(result))


def run(args):
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import numpy as np

    from bliss_lite.processing.worker_pool import pool
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("test", ROOT / "config")
    session.scan_context.watchers.clear()  # no table of a million rows: this measures the pipeline
    pilatus = ns["pilatus"]
    pilatus.roi = ROI
    pilatus.rate_cap = args.rate
    n_x, n_omega, n_z = shape_for(args.frames, args.nx, args.nomega)
    frames = n_x * n_omega * n_z
    heights = list(np.linspace(-0.4, 0.4, n_z))
    period = 1.0 / args.rate
    hooks = {"integration": {"workers": args.workers, "npt": args.npt}, "reconstruction": {}}
    planned = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, n_x, heights, period, n_omega=n_omega,
                          hooks=hooks, run=False)
    samples = {"scan_process": [], "workers": [], "redis": []}
    client = session.scan_context.redis.client()
    redis_pid = client.info()["process_id"]

    def sample():
        while True:
            done = planned.data.count("pilatus") / frames
            url = session.scan_context.redis.url()
            workers = pool(url).processes if url else []
            samples["scan_process"].append((done, {os.getpid(): rss_mb(os.getpid())}))
            samples["workers"].append((done, {p.pid: rss_mb(p.pid) for p in workers if p.poll() is None}))
            samples["redis"].append((done, {redis_pid: rss_mb(redis_pid)}))
            if args.samples_out:
                with open(args.samples_out, "a") as out:
                    out.write(json.dumps({"t": round(time.perf_counter() - start, 1), "done": round(done, 4),
                                          **{kind: sum(v for v in samples[kind][-1][1].values() if v)
                                             for kind in samples},
                                          "scan_process_maps": mappings_mb(os.getpid())}) + "\n")
            gevent.sleep(args.sample_s)

    start = time.perf_counter()
    sampler = gevent.spawn(sample)
    try:
        scan = planned.run()
    finally:
        sampler.kill()
    wall = time.perf_counter() - start
    sweep = scan.scan_info["sweep"]
    kinds = {kind: dict(zip(("rss_growth_percent", "peak_rss_mb"), growth(samples, kind), strict=True))
             for kind in samples}
    for kind in samples:
        kinds[kind]["rss_growth_peak_to_peak_percent"], kinds[kind]["rss_growth_floor_percent"] = \
            height_window_growth(samples, kind, 1.0 / n_z)
    integration = scan.hook("integration")
    result = {
        "benchmark": "scale", "date": time.strftime("%Y-%m-%d"), "frames": frames,
        "shape": {"n_x": n_x, "n_omega": n_omega, "n_z": n_z}, "frame_shape": list(pilatus.shape),
        "requested_rate": args.rate, "fps": round(sweep["handled_rate_hz"] or 0.0, 1), "scan_wall_s": round(wall, 1),
        "end_reason": str(scan.end_reason), "frames_in_scan": int(scan.data.count("pilatus")),
        "integrated_by_workers": None if integration is None else len(integration.received)
        - integration.local_frames,
        "estimate_duration_s": round(planned.estimate.duration_s, 1),
        **{f"{kind}_{key}": value for kind, figures in kinds.items() for key, value in figures.items()},
        "samples": len(samples["scan_process"]), "workers": args.workers, "npt": args.npt,
        "frame_source": "every frame rendered by the simulator (48 x 160 ROI, Poisson noise)",
        "goal": "rss growth from 10 % to 100 % of the scan <= 5 % for every process kind",
        "growth_figures": "rss_growth_percent: one sample at 10 % against the last; peak_to_peak / floor: the "
                          "highest / lowest sample over the height before 10 % against the last height's",
    }
    session.close()
    return result


if __name__ == "__main__":
    main()
