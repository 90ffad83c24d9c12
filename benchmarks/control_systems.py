#!/usr/bin/env python3
"""Benchmark: per-point cost of an ascan on a Tango axis and on an EPICS axis (servers on this
machine: simulators/tango_server.py, simulators/epics_ioc.py) against the mockup, and Bluesky's
ophyd EpicsMotor driving the same IOC in the same run (when ophyd and bluesky are installed).

Each scan: `ascan(axis, 0, 1, N-1, 0, counter)` with a short move per point (1/(N-1) mm at
20 mm/s, 200 mm/s^2, the same profile on every axis), not saved; the figure is wall time / N.
Peer: bluesky `scan([], EpicsMotor, 0, 1, N)` with a RunEngine and no subscribers.
Usage: python benchmarks/control_systems.py [--points N]   Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench_env import private_environment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script, *args):
    process = subprocess.Popen([sys.executable, str(ROOT / "simulators" / script), *args],
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    for line in process.stdout:
        if line.startswith("LISTENING"):
            return process, int(line.split()[1])
    raise RuntimeError(f"{script} did not start")


CONFIG = """
- class: mockup
  name: bench_mockup
  axes:
    - {{name: mmot, steps_per_unit: 1000, velocity: 20, acceleration: 200}}
- class: tango_motor
  name: bench_tango
  axes:
    - {{name: tmot, device: "tango://127.0.0.1:{tport}/sim/motor/1#dbase=no", steps_per_unit: 1000,
       velocity: 20, acceleration: 200}}
- class: epics_motor
  name: bench_epics
  axes:
    - {{name: emot, prefix: "SIM:m1", steps_per_unit: 1000, velocity: 20, acceleration: 200}}
- {{name: cnt, class: simulation_diode, mean: 100}}
"""


def bliss_lite_points(root, points):
    from bliss_lite.config import Config
    from bliss_lite.config.settings import SettingsStore
    from bliss_lite.scans.step import ascan

    config = Config(root, SettingsStore(Path(root) / "run"))
    result = {}
    for name in ("mmot", "tmot", "emot"):
        axis, counter = config.get(name), config.get("cnt")
        axis.move(0.0)
        ascan(axis, 0, 1, 2, 0, counter, save=False)  # warm: connections made
        t0 = time.perf_counter()
        ascan(axis, 0, 1, points - 1, 0, counter, save=False)
        result[f"{name}_ms_per_point"] = round((time.perf_counter() - t0) / points * 1e3, 2)
    return result


PEER = """
import time
from bluesky import RunEngine
from bluesky.plans import scan
from ophyd import EpicsMotor
m = EpicsMotor("SIM:m1", name="m")
m.wait_for_connection(timeout=10)
m.velocity.put(20); m.acceleration.put(0.1)
RE = RunEngine({{}})
RE(scan([], m, 0, 1, 3))
t0 = time.perf_counter()
RE(scan([], m, 0, 1, {points}))
print((time.perf_counter() - t0) / {points} * 1e3)
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(EPICS_CA_ADDR_LIST="127.0.0.1", EPICS_CA_AUTO_ADDR_LIST="NO",
                      EPICS_CA_SERVER_PORT=str(free_port()), EPICS_CA_REPEATER_PORT=str(free_port()))
    tango, tport = start("tango_server.py", "--port", "0")
    ioc, _ = start("epics_ioc.py", "--prefix", "SIM:")
    try:
        with private_environment("bl_cs_") as tmp:  # its own Redis, stopped after (not the user's)
            Path(tmp, "bench.yml").write_text(CONFIG.format(tport=tport))
            result = {"points": args.points, **bliss_lite_points(str(tmp), args.points)}
        peer = subprocess.run([sys.executable, "-c", PEER.format(points=args.points)], capture_output=True,
                              text=True, timeout=300)
        result["ophyd_epicsmotor_ms_per_point"] = (round(float(peer.stdout.split()[-1]), 2) if peer.returncode == 0
                                                   else f"not run: {(peer.stderr.strip().splitlines() or ['?'])[-1]}")
    finally:
        for process in (tango, ioc):
            process.kill()
            process.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
