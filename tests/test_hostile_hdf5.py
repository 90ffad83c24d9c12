"""Truncated and non-regular HDF5 files: every open is bounded and says which file and what to do.

h5py opening a truncated file with swmr=True retries the first read past its end without end
(Ctrl-C included); `data/safe_open.open_hdf5` looks at the file first. The tests cut real
scan files at lengths hypothesis picks, and name FIFOs and devices as data files.
"""
from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bliss_lite.data.safe_open import DamagedFile, check_hdf5, open_hdf5, stored_eof


def _file(path):
    """A small HDF5 file written as the scans write theirs (libver latest, SWMR)."""
    with h5py.File(path, "w", libver="latest") as h5:
        entry = h5.create_group("1.1")
        entry["title"] = "ascan m0 0 1 10 0.1"
        entry.create_dataset("measurement/diode1", data=np.arange(2000.0), chunks=(100,))
        h5.swmr_mode = True
    return path


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return _file(tmp_path_factory.mktemp("h5") / "whole.h5")


def test_a_whole_file_opens_and_its_recorded_end_is_its_size(whole):
    size, eof = stored_eof(whole)
    assert size == eof == whole.stat().st_size
    with open_hdf5(whole) as h5:
        assert h5["1.1/measurement/diode1"][-1] == 1999.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_a_file_cut_anywhere_is_refused_at_once_naming_it(whole, tmp_path, fraction):
    data = whole.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[:int(fraction * len(data))])
    started = time.monotonic()
    with pytest.raises(DamagedFile) as error:
        open_hdf5(cut, wait=0)
    assert time.monotonic() - started < 1.0
    message = str(error.value)
    assert message.startswith(f"{cut}: ") and "\n" not in message
    assert "truncated" in message or "not an HDF5 file" in message
    with pytest.raises(DamagedFile):  # for appending too: nothing is written into it
        open_hdf5(cut, "a", wait=0)
    assert cut.stat().st_size == int(fraction * len(data))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    path = tmp_path / "scan.h5"
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would block until a writer came
    elif kind == "device":
        path = Path("/dev/zero")  # reading it would never end
    else:
        path.mkdir()
    with pytest.raises(DamagedFile, match="not a regular file"):
        open_hdf5(path)


def test_ctrl_c_interrupts_the_wait_for_a_short_file(whole, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[:3000])
    threading.Timer(0.2, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        check_hdf5(cut, wait=30)
    assert time.monotonic() - started < 2


def test_a_file_being_extended_is_opened_once_it_is_whole(whole, tmp_path):
    """A SWMR writer's file short for an instant is looked at again, not refused."""
    data = whole.read_bytes()
    path = tmp_path / "growing.h5"
    path.write_bytes(data[:len(data) - 100])
    threading.Timer(0.2, lambda: path.write_bytes(data)).start()
    with open_hdf5(path, wait=5) as h5:
        assert "1.1" in h5


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def test_a_scan_refuses_a_damaged_file_before_anything_moves(scan_session):
    ns = scan_session
    first = ns["ascan"](ns["m0"], 0, 1, 3, 0.01)
    _truncate(first.filename)
    before = {name: ns[name].position for name in ("m0", "m1")}
    started = time.monotonic()
    with pytest.raises(DamagedFile) as error:
        ns["dscan"](ns["m0"], -1, 1, 3, 0.01)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert first.filename in message and "truncated" in message and "SCAN_SAVING.sample" in message
    assert {name: ns[name].position for name in ("m0", "m1")} == before
    ns["SCAN_SAVING"].sample = "fresh"  # nothing else stopped: the next file takes scans
    again = ns["dscan"](ns["m0"], -1, 1, 3, 0.01)
    assert again.filename.endswith("fresh.h5") and len(again.get_data()["diode1"]) == 4
    assert ns["m0"].position == before["m0"]


def _cli(args, tmp_path):
    env = {**os.environ, "BLISS_LITE_RUN_DIR": str(tmp_path / "run")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bliss_lite", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    return proc, time.monotonic() - started


def test_reprocess_and_plot_report_a_truncated_file_at_once(whole, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[:200])  # cut inside the root group: swmr=True once hung here
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {"filename": str(cut), "entry": "1.1"}}))
    for args in (["reprocess", str(job)], ["plot", str(cut), "1.1", "-o", str(tmp_path / "out.png")]):
        proc, took = _cli(args, tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if f"{cut}: truncated HDF5 file" in line]
        assert len(lines) == 1, proc.stdout + proc.stderr
        assert took < 30


def test_every_hdf5_open_goes_through_the_bounded_helper():
    """A static check: h5py.File is called in data/safe_open.py alone."""
    import ast

    package = Path(__file__).parents[1] / "bliss_lite"
    calls = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "File"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "h5py"):
                calls.append(f"{path.relative_to(package)}:{node.lineno}")
    assert calls and all(call.startswith("data/safe_open.py:") for call in calls), calls
