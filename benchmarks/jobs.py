#!/usr/bin/env python3
"""Benchmark: the job runner against the figures quoted for ESRF's dahu (150 us per dummy job,
1 us per dummy plugin call), and the CBF reader pool against the seed beamline's 10 ms per CBF.

- us_per_plugin_call: `call_plugin("dummy", input)`, the registry lookup and the call.
- us_per_job: N dummy jobs submitted to a JobRunner (thread pool), then each waited for:
  Job creation (uuid, timings) + hand-off to a worker + run + result, per job.
  us_per_job_sequential: the same one job at a time (submit, wait, next).
- us_per_remote_job: N dummy jobs through Redis (submit_remote, then wait_remote on each) to a
  job server in another process (`python -m bliss_lite.processing.job_server`), on a private
  redis-server (unix socket); ..._sequential: one job at a time, round trip.
  us_per_remote_job_thread_server: the same N with the server as a thread of this process.
- cbf_ms_per_frame_{1,6}_readers: `cbf_frames` over full-size Pilatus 2M CBFs (1679 x 1475 int32,
  Poisson counts, written once before the timed reads, then read from the page cache).
Usage: python benchmarks/jobs.py [--jobs N] [--remote-jobs N] [--cbf-frames N]  (0 skips a part)
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]
DAHU_US_PER_JOB = 150.0  # quoted by the seed for dahu's dummy job
DAHU_US_PER_PLUGIN_CALL = 1.0  # quoted by the seed for a dummy plugin call
SEED_CBF_MS = 10.0  # the seed beamline's time to read one CBF (it used 6 reader threads)


def best(fn, repeat=5):
    return min(fn() for _ in range(repeat))


def bench_plugin_call(calls=200_000):
    from bliss_lite.processing.jobs import call_plugin

    data = {"frame": 1, "npt": 500}

    def once():
        t0 = time.perf_counter()
        for _ in range(calls):
            call_plugin("dummy", data)
        return (time.perf_counter() - t0) / calls * 1e6

    return best(once)


def bench_runner(n):
    from bliss_lite.processing.jobs import JobRunner

    with JobRunner() as runner:
        def many():
            t0 = time.perf_counter()
            jobs = [runner.submit("dummy", {"i": i}) for i in range(n)]
            for job in jobs:
                runner.wait(job, 60)
            assert all(job.status == "success" for job in jobs)
            return (time.perf_counter() - t0) / n * 1e6

        def sequential():
            m = max(n // 4, 1)
            t0 = time.perf_counter()
            for i in range(m):
                runner.wait(runner.submit("dummy", {"i": i}), 60)
            return (time.perf_counter() - t0) / m * 1e6

        return best(many, 3), best(sequential, 3)


def _remote_runs(client, n):
    from bliss_lite.processing.job_server import submit_remote, wait_remote

    def many():
        t0 = time.perf_counter()
        ids = [submit_remote(client, "dummy", {"i": i}) for i in range(n)]
        jobs = [wait_remote(client, job_id, 60) for job_id in ids]
        assert all(job.status == "success" for job in jobs), [j.error for j in jobs if j.status != "success"][:1]
        return (time.perf_counter() - t0) / n * 1e6

    def sequential():
        m = max(n // 4, 1)
        t0 = time.perf_counter()
        for i in range(m):
            wait_remote(client, submit_remote(client, "dummy", {"i": i}), 60)
        return (time.perf_counter() - t0) / m * 1e6

    many()  # warm-up: group created, connections open
    return best(many, 3), best(sequential, 3)


def bench_remote(n, run_dir):
    from bliss_lite.data.redis_server import connect, ensure_server
    from bliss_lite.processing.job_server import serve

    url = ensure_server(run_dir)
    client = connect(url)
    server = subprocess.Popen([sys.executable, "-m", "bliss_lite.processing.job_server", "--url", url],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        many, sequential = _remote_runs(client, n)
    finally:
        server.terminate()
        server.wait(10)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(connect(url), stop), kwargs=dict(block_ms=50), daemon=True)
    thread.start()
    try:
        in_thread, _ = _remote_runs(client, n)
    finally:
        stop.set()
        thread.join(10)
    return many, sequential, in_thread


def bench_cbf(n):
    import fabio.cbfimage
    import numpy as np

    from bliss_lite.processing.frame_sources import cbf_frames

    rng = np.random.default_rng(0)
    base = rng.poisson(4, (1679, 1475)).astype(np.int32)
    result = {}
    with tempfile.TemporaryDirectory(prefix="bl_cbf_", dir="/tmp") as tmp:
        for i in range(n):
            fabio.cbfimage.CbfImage(data=np.roll(base, i * 7, axis=1)).write(os.path.join(tmp, f"pilatus_{i:05d}.cbf"))
        result["cbf_mb_per_file"] = round(os.path.getsize(os.path.join(tmp, "pilatus_00000.cbf")) / 1e6, 2)
        for readers in (1, 2, 6):
            def once(readers=readers):
                t0 = time.perf_counter()
                count = sum(1 for _ in cbf_frames(tmp, readers=readers))
                assert count == n
                return (time.perf_counter() - t0) / n * 1e3

            result[f"cbf_ms_per_frame_{readers}_readers"] = round(best(once, 3), 2)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--remote-jobs", type=int, default=2000)
    parser.add_argument("--cbf-frames", type=int, default=24)
    args = parser.parse_args()
    out = {"benchmark": "jobs", "cpus": os.cpu_count()}
    out["us_per_plugin_call"] = round(bench_plugin_call(), 3)
    if args.jobs:
        many, sequential = bench_runner(args.jobs)
        out.update(us_per_job=round(many, 1), us_per_job_sequential=round(sequential, 1), jobs=args.jobs)
    if args.remote_jobs:
        with private_environment("bl_jobs_") as tmp:
            many, sequential, in_thread = bench_remote(args.remote_jobs, tmp / "run")
        out.update(us_per_remote_job=round(many, 1), us_per_remote_job_sequential=round(sequential, 1),
                   us_per_remote_job_thread_server=round(in_thread, 1), remote_jobs=args.remote_jobs)
    if args.cbf_frames:
        out.update(bench_cbf(args.cbf_frames), cbf_frames=args.cbf_frames, seed_cbf_ms_per_frame=SEED_CBF_MS)
    out.update(dahu_us_per_job=DAHU_US_PER_JOB, dahu_us_per_plugin_call=DAHU_US_PER_PLUGIN_CALL)
    out["plugin_call_ratio_dahu_over_ours"] = round(DAHU_US_PER_PLUGIN_CALL / out["us_per_plugin_call"], 1)
    if "us_per_job" in out:
        out["job_ratio_dahu_over_ours"] = round(DAHU_US_PER_JOB / out["us_per_job"], 1)
    if "us_per_remote_job" in out:
        out["remote_job_ratio_dahu_over_ours"] = round(DAHU_US_PER_JOB / out["us_per_remote_job"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
