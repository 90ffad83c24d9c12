"""Scans seen from other processes: a live follower, and Ctrl-C (SIGINT) in a scan run by the CLI."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bliss_lite.config import Config
from bliss_lite.config.settings import SettingsStore
from bliss_lite.data.client import ScanClient
from bliss_lite.data.redis_server import connect

CONFIG = Path(__file__).parents[1] / "config"


def test_follower_process_gets_every_point_once_in_order(scan_session, shared_redis):
    ns = scan_session
    env = dict(os.environ, BLISS_LITE_REDIS_URL=shared_redis)
    follower = subprocess.Popen([sys.executable, "-m", "bliss_lite", "follow", "--count", "1", "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert follower.stdout.readline().startswith("Following scans on")
        scan = ns["ascan"](ns["m4"], 0, 3, 300, 0, ns["diode1"], ns["diode2"])
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    header = next(line for line in out.splitlines() if line.strip().startswith("#")).split()
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [int(r[0]) for r in rows] == list(range(301))  # every point, once, in order
    data = scan.get_data()
    for column, name in enumerate(header[1:], start=1):
        assert [float(r[column]) for r in rows] == pytest.approx(data[name], rel=1e-5), name
    assert f"End of scan {scan.number}: SUCCESS, 301 points" in out


def test_sigint_during_dscan_returns_to_start_and_keeps_the_data(run_dir, data_root, shared_redis):
    env = dict(os.environ, BLISS_LITE_RUN_DIR=str(run_dir), BLISS_LITE_DATA_ROOT=str(data_root),
               BLISS_LITE_REDIS_URL=shared_redis, PYTHONUNBUFFERED="1")
    client = connect(shared_redis)
    scans = ScanClient(client)
    scans.start_from_now()
    code = "mv(m0, 2)\ndscan(m0, -1, 1, 200, 0.02, diode1)\nprint('not reached')"
    process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "--config", str(CONFIG), "-s", "test", "-c", code],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stdout:
            if line.split()[:1] == ["5"]:  # the sixth point is on the screen: the scan is running
                break
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        # stopped, closed, moved back and exited: a hang fails here (the time is measured in
        # benchmarks/interrupt.py)
        out, err = process.communicate(timeout=3.0)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "not reached" not in out
    reader = scans.wait_next_scan(timeout_ms=1000)
    assert reader is not None and reader.name == "dscan"
    assert (reader.state, reader.end_reason) == ("CLOSED", "USER_ABORT")
    in_redis = reader.get_data()
    path = data_root / "test" / "sample.h5"
    with h5py.File(path, "r", locking=False) as h5:
        entry = h5[f"{reader.number}.1"]
        assert entry["end_reason"][()] == b"USER_ABORT"
        positions = entry["measurement/m0"][()]
        assert 10 <= len(positions) < 201
        np.testing.assert_array_equal(positions, in_redis["m0"])
        np.testing.assert_array_equal(entry["measurement/diode1"][()], in_redis["diode1"])
    assert positions == pytest.approx(np.linspace(1, 3, 201)[:len(positions)])
    m0 = Config(CONFIG, SettingsStore(run_dir)).get("m0")
    assert m0.position == 2.0  # back at the start, as saved when the process ended
