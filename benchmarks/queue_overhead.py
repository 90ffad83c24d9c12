#!/usr/bin/env python3
"""Benchmark: what the queue server costs an item, and how fast a pause holds a scan.

- `ct_item_ms`: an empty `ct(0.001)` item, from `QueueClient.add` (the server checks it with
  run=False and queues it) to its record reading "done" (polled every 2 ms). Median and
  worst of --items, one after the other.
- `pause_to_holding_ms`: `pause()` asked during an `ascan` of 0.05 s points, until the
  status says the scan holds (the server pauses the scan itself: it holds after the point
  under way; the status is refreshed every 50 ms). Median of --pauses.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]


def _start_server(client, session):
    process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "queue", "--config", str(ROOT / "config"),
                                "-s", session], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not (client.get(f"bliss_lite:queue:{session}:server") or b"").decode().endswith(f":{process.pid}"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the queue server did not start")
        time.sleep(0.05)
    return process


def _wait(queue, item_id, states, poll=0.002):
    while True:
        item = queue.item(item_id)
        if item["state"] in states:
            return item
        time.sleep(poll)


def measure(items, pauses):
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data import redis_server
    from bliss_lite.data.queue_client import QueueClient

    client = redis_server.connect(redis_server.ensure_server(run_dir()))
    server = _start_server(client, "test")
    try:
        queue = QueueClient(client, "test", who="benchmark")
        times = []
        for _ in range(items):
            t0 = time.perf_counter()
            item = queue.add("ct(0.001)")
            _wait(queue, item["id"], ("done", "failed"))
            times.append((time.perf_counter() - t0) * 1000)
        holds = []
        for _ in range(pauses):
            item = queue.add("ascan(m0, 0, 1, 40, 0.05)")
            _wait(queue, item["id"], ("running",))
            time.sleep(0.3)
            t0 = time.perf_counter()
            queue.pause()
            while not queue.status()["holding"]:
                time.sleep(0.002)
            holds.append((time.perf_counter() - t0) * 1000)
            queue.abort()
            _wait(queue, item["id"], ("aborted", "done", "failed"))
            queue.resume()
        return {"ct_item_ms": round(statistics.median(times), 1), "ct_item_worst_ms": round(max(times), 1),
                "items": items, "pause_to_holding_ms": round(statistics.median(holds), 1),
                "pause_worst_ms": round(max(holds), 1), "pauses": pauses}
    finally:
        server.kill()
        server.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--pauses", type=int, default=5)
    args = parser.parse_args()
    with private_environment("bl_queue_bench_"):
        print(json.dumps(measure(args.items, args.pauses)))


if __name__ == "__main__":
    main()
