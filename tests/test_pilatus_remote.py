"""The Pilatus simulator as its own process (simulators/pilatus_server.py), over TCP."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bliss_lite.controllers.detectors.pilatus_base import DetectorError
from bliss_lite.controllers.detectors.pilatus_remote import RemotePilatus

SERVER = Path(__file__).parents[1] / "simulators" / "pilatus_server.py"


@pytest.fixture
def pilatus_server():
    process = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--seed", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("LISTENING"), process.stderr.read()
        yield process, f"127.0.0.1:{int(line.split()[1])}"
    finally:
        process.kill()
        process.wait()


def test_remote_frames_equal_the_in_process_ones(scan_session, pilatus_server):
    ns = scan_session
    _, address = pilatus_server
    local = ns["pilatus"]
    ns["xrdct_sample"].reseed(1)  # the server's seed (--seed 1): the same noise
    remote = RemotePilatus("pilatus", address, ns["xrdct_sample"], local.roi)
    try:
        assert remote.shape == local.shape and remote.max_rate == 500
        args = (ns["omega"], 0.0, 3.0, 10, 0.01)
        over_tcp = ns["fscan"](*args, remote).get_data()
        in_process = ns["fscan"](*args, local).get_data()
    finally:
        remote.close()
    assert over_tcp["pilatus_frame_number"].tolist() == list(range(10))
    np.testing.assert_array_equal(over_tcp["omega"], in_process["omega"])
    np.testing.assert_array_equal(over_tcp["pilatus"], in_process["pilatus"])  # same sample, same seed


def test_remote_refusals_and_a_dead_detector_are_clear_errors(scan_session, pilatus_server):
    ns = scan_session
    process, address = pilatus_server
    remote = RemotePilatus("pilatus", address, ns["xrdct_sample"], ns["pilatus"].roi, timeout=0.5)
    with pytest.raises(DetectorError, match="pilatus: trigger mode must be one of"):
        remote.prepare(3, 0.01, 0.001, "SOFTWARE")
    remote.inject(drop=[1])
    process.kill()
    process.wait()
    with pytest.raises(DetectorError, match=r"pilatus: (connection to 127.0.0.1:\d+ (closed|lost)|no reply)"):
        remote.prepare(3, 0.01, 0.001, "EXTERNAL_TRIGGER")
    with pytest.raises(DetectorError, match="pilatus: cannot reach the detector at 127.0.0.1"):
        remote.prepare(3, 0.01, 0.001, "EXTERNAL_TRIGGER")
    remote.close()
