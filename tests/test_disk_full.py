"""A full disk: refused before the scan when it cannot fit; met during the scan, the scan
fails cleanly and the file stays valid HDF5 with every point written until then.

A real failing write without root: the scan runs in a subprocess whose file-size limit
(RLIMIT_FSIZE, SIGXFSZ ignored) makes writes past it fail with EFBIG, as a full disk fails
them with ENOSPC.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import gevent
import h5py
import hdf5plugin  # noqa: F401 - the Bitshuffle filter, to read frames back
import numpy as np
import pytest
from conftest import CONFIG_DIR

from bliss_lite.data.scan_files import data_file
from bliss_lite.data.writer import META_SLACK, DiskFullError, read_entry

# Runs one scan twice. The first run makes the files; the second may grow the file it fills
# most as much, less `short` bytes (beyond the writer's slack), so the disk fills part-way
# through it. A dscan fills the master file (it doubles) and is `short` of the second 64 kB
# chunk of each of its 7 channels (started at point 8192); an xrdct fills its frames' data
# file (a new one, as big as the first scan's), `short` of half its frames. The limit is per
# file: the xrdct's frames are made big enough (ROI 320 x 320) that the master, which only
# doubles, stays below it.
FILL_THE_DISK = r"""
import json, os, resource, signal, sys
import numpy as np
from bliss_lite.data.scan_files import data_file
from bliss_lite.shell.runner import open_session

kind, out = sys.argv[1], sys.argv[2]
session, ns = open_session("test", sys.argv[3])

def run():
    if kind == "dscan":
        return ns["dscan"](ns["m0"], -1, 1, 11999, 0)
    return ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 3, [0.0], 0.042, n_omega=12, hooks=[])

if kind == "xrdct":
    ns["pilatus"].roi = (600, 400, 320, 320)
first = run()  # the failing run is not the first entry of the file: this one must survive
master = os.path.getsize(first.filename)
if kind == "dscan":
    grown, short = 2 * master, 200_000
else:
    grown = os.path.getsize(data_file(first.filename, first.number, "pilatus", 0))
    short = sum(map(len, first.data.buffers["pilatus"].points)) // 2
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), nothing kills us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
limit = grown + %d - short
assert kind == "dscan" or limit > 2 * master + %d, "the master file would meet the limit first"
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
error = None
try:
    run()
except OSError as exc:
    error = str(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
scan = ns["SCANS"][-1]
np.savez(out, **scan.get_data())
print(json.dumps({"error": error, "end_reason": scan.end_reason, "state": scan.state, "filename": scan.filename,
                  "entry": scan.entry, "first_entry": first.entry, "npoints": first.npoints, "number": scan.number,
                  "axes": {a.name: [a.position, a.is_moving] for a in session.axes}}))
""" % (META_SLACK, META_SLACK)


def fill_the_disk(kind, tmp_path, shared_redis):
    env = dict(os.environ, BLISS_LITE_REDIS_URL=shared_redis)
    out = tmp_path / "memory.npz"
    done = subprocess.run([sys.executable, "-c", FILL_THE_DISK, kind, str(out), str(CONFIG_DIR)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(out) as memory:
        return report, dict(memory)


def check_the_file_holds_what_was_written(report, memory):
    """Plain h5py opens the file; every channel holds a prefix of what the scan took, at
    least the points the error says the file keeps, each value equal, nothing else."""
    kept = int(report["error"].rsplit("keeps its first ", 1)[1].split()[0])
    with h5py.File(report["filename"], "r") as h5:  # no SWMR, no tolerance: a valid, closed file
        entry = h5[report["entry"]]
        assert entry["end_reason"][()] == b"FAILURE" and entry["end_time"][()]
        measurement = entry["measurement"]
        assert set(measurement) == set(memory)
        lengths = {}
        for name in measurement:
            in_file = measurement[name][()]
            lengths[name] = len(in_file)
            np.testing.assert_array_equal(in_file, memory[name][:len(in_file)])
        earlier = h5[report["first_entry"]]
        assert earlier["end_reason"][()] == b"SUCCESS"
        assert all(len(earlier["measurement"][name]) == report["npoints"] for name in earlier["measurement"])
    assert min(lengths.values()) == kept
    assert 0 < kept < report["npoints"]  # the disk filled part-way
    return kept, lengths


def test_a_scan_too_big_for_the_disk_is_refused_before_anything_moves(scan_session, data_root):
    ns = scan_session
    ns["pilatus"].roi = None  # full frames: 3e6 of 9.9 MB, estimated at half that, need 15.6 TB
    with pytest.raises(DiskFullError, match=r"no space for this scan in .*/test: it needs about 15.6 TB, "
                                            r"the disk has [\d.]+ [kMGT]B free"):
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 3, [0.0], 0.01, n_omega=10**6, hooks=[])
    assert (ns["omega"].position, ns["x"].position, ns["z"].position) == (0.0, 0.0, 0.0)
    with pytest.raises(DiskFullError, match="no space for this scan"):
        ns["loopscan"](10**13, 0)
    assert not (data_root / "test" / "sample.h5").exists()  # no entry was made
    assert ns["ascan"](ns["m0"], 0, 1, 2, 0).entry == "1.1"


def test_disk_full_during_a_step_scan(scan_session, data_root, tmp_path, shared_redis):
    report, memory = fill_the_disk("dscan", tmp_path, shared_redis)
    assert report["end_reason"] == "FAILURE" and report["state"] == "CLOSED"
    assert report["error"].startswith(f"{report['filename']}: disk full (File too large): no room for the next points")
    kept, lengths = check_the_file_holds_what_was_written(report, memory)
    assert set(lengths.values()) == {kept}  # a step scan's points are whole
    assert kept <= 8192 < len(memory["m0"])  # the second chunk of each channel did not fit
    assert report["axes"]["m0"] == [0.0, False]  # back where the relative scan started
    assert not any(moving for _, moving in report["axes"].values())
    ns = scan_session  # the file takes the next scan (here, with room again)
    scan = ns["ascan"](ns["m0"], 0, 1, 2, 0)
    assert (scan.filename, scan.entry, scan.end_reason) == (report["filename"], "3.1", "SUCCESS")
    assert read_entry(scan.filename, 2)["m0"].tolist() == memory["m0"][:kept].tolist()


def test_disk_full_during_an_xrdct_scan(scan_session, tmp_path, shared_redis):
    report, memory = fill_the_disk("xrdct", tmp_path, shared_redis)
    assert report["end_reason"] == "FAILURE"
    frames_file = data_file(report["filename"], report["number"], "pilatus", 0)
    assert report["error"].startswith(f"{report['filename']}: disk full (File too large): no room for the next "
                                      f"points of entry {report['entry']} in its data file {frames_file}")
    kept, lengths = check_the_file_holds_what_was_written(report, memory)
    assert lengths["pilatus"] < len(memory["pilatus"])  # the frames that did not fit are not there
    with h5py.File(frames_file, "r") as h5:  # the data file the disk filled: closed, valid, every frame written
        np.testing.assert_array_equal(h5["data"][()], memory["pilatus"][:lengths["pilatus"]])
    assert not any(moving for _, moving in report["axes"].values())


def test_data_directory_removed_during_a_scan(scan_session, data_root):
    """The open file keeps taking the points (the directory entry goes, the file lives
    until closed); the scan ends normally, and the next one makes the directory again."""
    ns = scan_session
    directory = data_root / "test"

    def remove_once_writing():
        while not (ns["SCANS"] and ns["SCANS"][-1].title.endswith("40 0.005") and ns["SCANS"][-1].data.npoints > 5):
            gevent.sleep(0.005)
        shutil.rmtree(directory)

    remover = gevent.spawn(remove_once_writing)
    scan = ns["ascan"](ns["m0"], 0, 1, 40, 0.005)
    remover.get(timeout=5)
    assert (scan.end_reason, len(scan.get_data()["m0"])) == ("SUCCESS", 41)
    assert not directory.exists()
    after = ns["ascan"](ns["m0"], 0, 1, 2, 0)
    # the session's count goes on (a number names one scan of the session, as in BLISS)
    assert (after.entry, after.end_reason) == (f"{scan.number + 1}.1", "SUCCESS")
    assert read_entry(after.filename, scan.number + 1)["m0"].tolist() == [0.0, 0.5, 1.0]


def test_data_directory_made_read_only_during_a_scan(scan_session, data_root, tmp_path):
    """The open file stays writable: the scan ends normally with every point; the next scan
    is refused before it starts."""
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    if os.access(probe, os.W_OK):
        pytest.skip("permissions do not apply here (root with CAP_DAC_OVERRIDE)")
    ns = scan_session
    ns["ascan"](ns["m0"], 0, 1, 2, 0)
    directory = data_root / "test"

    def protect_once_writing():
        while not (ns["SCANS"] and ns["SCANS"][-1].entry == "2.1" and ns["SCANS"][-1].data.npoints > 5):
            gevent.sleep(0.005)
        directory.chmod(0o555)
        (directory / "sample.h5").chmod(0o444)

    protector = gevent.spawn(protect_once_writing)
    try:
        scan = ns["ascan"](ns["m0"], 0, 1, 40, 0.005)
        protector.get(timeout=5)
        assert scan.end_reason == "SUCCESS"
        assert read_entry(scan.filename, 2)["m0"].tolist() == scan.get_data()["m0"].tolist()
        with pytest.raises(PermissionError, match="is not writable"):
            ns["ascan"](ns["m0"], 0, 1, 2, 0)
    finally:
        directory.chmod(0o755)
