#!/usr/bin/env python3
"""Benchmark: how fast a scan gives control back when interrupted, and how fast a dead Redis
is reported (the tests only guard these against hangs; the figures live here).

- `sigint_to_exit_ms`: `bliss-lite -s test -c "dscan(...)"` gets SIGINT mid-scan; the time
  until the process has stopped the axis, closed the entry (USER_ABORT), sealed Redis, moved
  back to the start and exited. Median of --runs.
- `dead_redis_report_ms`: time for a scan's Redis lookup to give up on a URL where nothing
  listens (the scan then saves to its file only). Median of --runs.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]


def sigint_to_exit():
    code = "dscan(m0, -1, 1, 200, 0.02, diode1)"
    process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "--config", str(ROOT / "config"), "-s", "test",
                                "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in process.stdout:
        if line.split()[:1] == ["5"]:
            break
    time.sleep(0.2)
    t0 = time.perf_counter()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    took = time.perf_counter() - t0
    if process.returncode != 130:
        raise RuntimeError(f"dscan exited {process.returncode}, not 130")
    return took * 1e3


def dead_redis_report():
    from bliss_lite.scans.redis_link import ScanRedis

    os.environ["BLISS_LITE_REDIS_URL"] = "redis://127.0.0.1:1"
    t0 = time.perf_counter()
    client = ScanRedis().client()  # a session's first look for Redis
    took = time.perf_counter() - t0
    os.environ.pop("BLISS_LITE_REDIS_URL")
    if client is not None:
        raise RuntimeError("something answered on redis://127.0.0.1:1")
    return took * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with private_environment("bl_intr_"):
        sigint = [sigint_to_exit() for _ in range(args.runs)]
        dead = [dead_redis_report() for _ in range(args.runs)]
    print(json.dumps({"benchmark": "interrupt", "date": time.strftime("%Y-%m-%d"), "runs": args.runs,
                      "sigint_to_exit_ms": round(statistics.median(sigint), 1),
                      "sigint_to_exit_ms_max": round(max(sigint), 1),
                      "dead_redis_report_ms": round(statistics.median(dead), 2)}))


if __name__ == "__main__":
    main()
