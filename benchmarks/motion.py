#!/usr/bin/env python3
"""Benchmark: `umv` overhead over the ideal trapezoid time, and the shell's start-up time.

Prints one JSON line. The move is the demo's srot, 0 -> 5 deg (1.25 s ideal: 5 deg/s,
20 deg/s^2), and back (with its 0.1 deg backlash leg, whose ideal time is counted too).
The peer figure is real BLISS 2.4's `umv` floor measured once on this machine kind (~57 ms
over the ideal move time; see docs/architecture.md): it is quoted, not re-run here.
Usage: python benchmarks/motion.py [--moves N] [--startups N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_BLISS_UMV_OVERHEAD_MS = 57.0


def ideal_time(axis, target):
    """Sum of the ideal durations of the legs a move to `target` makes (backlash included)."""
    from bliss_lite.controllers.motion import plan_motion
    from bliss_lite.controllers.trajectory import Trajectory

    plan = plan_motion(axis, target)
    spu = abs(axis.steps_per_unit)
    position, total = axis.controller.read_position(axis), 0.0
    for leg in plan.legs:
        total += Trajectory.point_to_point(0.0, position, leg, axis.velocity * spu, axis.acceleration * spu).duration
        position = leg
    return total


def umv_overheads(axis, targets):
    from bliss_lite.shell.standard import umv

    overheads = []
    for target in targets:
        ideal = ideal_time(axis, target)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            umv(axis, target)
        overheads.append((time.perf_counter() - start - ideal) * 1e3)
    return overheads


def startup_times(n):
    """Seconds for `bliss-lite -s demo -c pass` (process start to exit), n runs."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bliss_lite", "-s", "demo", "--config", str(ROOT / "config"),
                        "-c", "pass"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def prompt_times(n):
    """Seconds from launching the interactive shell to its first prompt, through a pty."""
    try:
        import pexpect
    except ImportError:
        return []
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        child = pexpect.spawn(sys.executable, ["-m", "bliss_lite", "-s", "demo", "--config", str(ROOT / "config")],
                              env=env, encoding="utf-8", timeout=30)
        child.expect(r"demo \[1\]: ")
        times.append(time.perf_counter() - start)
        child.sendeof()
        child.expect(pexpect.EOF)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--startups", type=int, default=5)
    args = parser.parse_args()
    os.environ["BLISS_LITE_RUN_DIR"] = tempfile.mkdtemp(prefix="bliss_lite_bench_")

    from bliss_lite.shell.runner import open_session

    with contextlib.redirect_stdout(io.StringIO()):
        _, ns = open_session("demo", ROOT / "config")
    srot = ns["srot"]
    overheads = umv_overheads(srot, [5.0 if i % 2 == 0 else 0.0 for i in range(args.moves)])
    forward = overheads[0::2]
    startups = startup_times(args.startups)
    prompts = prompt_times(max(1, args.startups // 2))
    median = statistics.median(overheads)
    print(json.dumps({
        "benchmark": "motion",
        "date": time.strftime("%Y-%m-%d"),
        "umv_move": "srot 0<->5 deg (1.25 s ideal forward; backward adds the backlash leg)",
        "moves": len(overheads),
        "umv_overhead_ms_median": round(median, 3),
        "umv_overhead_ms_forward_median": round(statistics.median(forward), 3),
        "umv_overhead_ms_max": round(max(overheads), 3),
        "peer_bliss_umv_overhead_ms": PEER_BLISS_UMV_OVERHEAD_MS,
        "peer_source": "real BLISS 2.4 measured once on this machine kind (quoted, not run)",
        "ratio_peer_over_ours": round(PEER_BLISS_UMV_OVERHEAD_MS / median, 1) if median > 0 else None,
        "startup_c_pass_s_median": round(statistics.median(startups), 3),
        "startup_to_prompt_s_median": round(statistics.median(prompts), 3) if prompts else None,
    }))


if __name__ == "__main__":
    main()
