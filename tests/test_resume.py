"""Resuming an XRD-CT scan killed with SIGKILL: the continuation entry measures only the lines
the file lacks, and the two entries reduce to the maps of an uninterrupted scan."""
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from tests.conftest import CONFIG_DIR

GRID = dict(x_start=-1, x_stop=1, n_x=8, z_positions=[0.0], acq_time=0.015, n_omega=8, fast_axis="x")
# the peak width is measured from each scan's own data: the resumed and the whole scan must agree
HOOKS = {"integration": {"workers": 0, "npt": 200, "timeout": 0.5}, "reconstruction": {}}


def _killed_scan(data_root, redis_url, run_dir, lines_before_kill):
    """Run the xrdct in another process that kills itself (SIGKILL) during line
    `lines_before_kill + 1`; returns the file."""
    script = textwrap.dedent(f"""
        import os, signal, gevent
        from bliss_lite.shell.runner import open_session
        session, ns = open_session("test", {str(CONFIG_DIR)!r})
        ns["SCAN_SAVING"].sample = "killed"
        def kill():
            while not ns["SCANS"] or ns["SCANS"][-1].data.count("pilatus_valid") < {8 * lines_before_kill}:
                gevent.sleep(0.001)
            gevent.sleep(0.06)  # the pump has written the flags; the next line is being swept
            os.kill(os.getpid(), signal.SIGKILL)
        gevent.spawn(kill)
        g = {GRID!r}
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], g["x_start"], g["x_stop"], g["n_x"], g["z_positions"],
                    g["acq_time"], n_omega=g["n_omega"], fast_axis=g["fast_axis"], hooks=[])
    """)
    env = dict(os.environ, BLISS_LITE_DATA_ROOT=str(data_root), BLISS_LITE_REDIS_URL=redis_url,
               BLISS_LITE_RUN_DIR=str(run_dir))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    return data_root / "test" / "killed.h5"


def _cells(filename, entries, info):
    from bliss_lite.processing.sinogram import Grid

    grid, cells = Grid.from_info(info), []
    with h5py.File(filename, "r", locking=False, swmr=True) as h5:
        for entry in entries:
            m = h5[f"{entry}/measurement"]
            valid = m["pilatus_valid"][()]
            omega, x, z = (m[a][:len(valid)][valid] for a in ("omega", "x", "z"))
            iz, io, ix = grid.locate(omega, x, z, np.flatnonzero(valid))
            cells += list(np.ravel_multi_index((io, ix), (8, 8)))
    return cells


def test_a_killed_xrdct_resumes_into_n2_and_reduces_as_the_uninterrupted_scan(scan_session, shared_redis,
                                                                              data_root, tmp_path):
    from bliss_lite.processing.scan_plugins import reconstruct_scan

    ns = scan_session
    filename = _killed_scan(data_root, shared_redis, tmp_path / "run2", lines_before_kill=3)
    with h5py.File(filename, "r", locking=False, swmr=True) as h5:
        assert h5["1.1/end_reason"][()] == b""  # killed: never closed
        measured = len(h5["1.1/measurement/pilatus_valid"])
    assert 8 <= measured < 64

    scan = ns["resume_scan"](str(filename), "1.1", hooks=HOOKS)
    assert scan.entry == "1.2" and scan.end_reason == "SUCCESS" and scan.filename == str(filename)
    continues = scan.scan_info["continues"]
    assert continues["entries"] == ["1.1"] and continues["lines"] == 8
    assert 1 <= continues["lines_done"] <= 4 and scan.npoints == 8 * (8 - continues["lines_done"])
    cells = _cells(filename, ["1.1", "1.2"], scan.scan_info["xrdct"])
    assert sorted(cells) == list(range(64))  # N.1 + N.2: every grid point exactly once
    resumed = scan.hook("reconstruction").result
    assert resumed["filled"] == 1.0
    assert (filename.parent / "killed_scan0001_2" / "pilatus_00000.h5").exists()  # its own data files

    ns["SCAN_SAVING"].sample = "whole"
    g = GRID
    whole = ns["xrdct"](ns["omega"], ns["x"], ns["z"], g["x_start"], g["x_stop"], g["n_x"], g["z_positions"],
                        g["acq_time"], n_omega=g["n_omega"], fast_axis=g["fast_axis"], hooks=HOOKS)
    reference = whole.hook("reconstruction").result["maps"]
    widths = [s.hook("reconstruction").mapper.profile for s in (scan, whole)]
    assert all(p.fwhm and len(p.fwhm) == 1 and "isolated" in p.source for p in widths), widths  # measured, one width
    assert widths[0].fwhm[0] == pytest.approx(widths[1].fwhm[0], rel=0.05), widths
    for phase, image in resumed["maps"].items():
        if np.abs(reference[phase]).max() > 0:
            r = np.corrcoef(image.ravel(), reference[phase].ravel())[0, 1]
            assert r >= 0.99, (phase, r)

    offline = reconstruct_scan({"filename": str(filename), "entry": "1.2"})  # both entries, from the file
    assert offline["phases"]
    with h5py.File(filename, "r", locking=False) as h5:
        for phase, image in resumed["maps"].items():
            np.testing.assert_allclose(h5[f"1.2/reconstruct/{phase}/map"][()], image, rtol=1e-3, atol=1e-3)
        fwhm = h5["1.2/reconstruct/peak_fwhm"]  # the width the maps were made with, in the file
        assert fwhm.attrs["units"] == "nm^-1" and fwhm[()] == pytest.approx(widths[0].fwhm[0], rel=0.02)

    with pytest.raises(ValueError, match=r"every line measured: nothing to resume"):
        ns["resume_scan"](str(filename), "1.1", hooks=[])


def test_a_resume_with_other_settings_is_refused_naming_them(scan_session, shared_redis, data_root, tmp_path):
    ns = scan_session
    filename = _killed_scan(data_root, shared_redis, tmp_path / "run2", lines_before_kill=1)
    g = GRID
    before = ns["x"].position
    with pytest.raises(ValueError, match=r"cannot resume .* entry 1.1 with other settings: n_x 6 now, 8 in the file"):
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], g["x_start"], g["x_stop"], 6, g["z_positions"], g["acq_time"],
                    n_omega=8, fast_axis="x", hooks=[], resume=(str(filename), "1.1"))
    with pytest.raises(ValueError, match=r"count_time 0.02 now, 0.015 in the file"):
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], g["x_start"], g["x_stop"], 8, g["z_positions"], 0.02,
                    n_omega=8, fast_axis="x", hooks=[], resume=(str(filename), "1.1"))
    ns["pilatus"].roi = (816, 700, 48, 120)
    try:
        with pytest.raises(ValueError, match=r"roi \[816, 700, 48, 120\] now, \[816, 700, 48, 160\] in the file"):
            ns["resume_scan"](str(filename), "1.1", hooks=[])
    finally:
        ns["pilatus"].roi = (816, 700, 48, 160)
    assert ns["x"].position == before  # nothing moved
    scan = ns["resume_scan"](str(filename), "1.1", hooks=[])
    assert scan.entry == "1.2" and sorted(_cells(filename, ["1.1", "1.2"], scan.scan_info["xrdct"])) == list(range(64))


def test_the_write_mark_of_a_killed_writer_is_cleared_with_a_valid_checksum(tmp_path):
    from bliss_lite.data.file_marks import clear_write_mark, lookup3, write_mark

    assert lookup3(b"") == 0xDEADBEEF and lookup3(b"Four score and seven years ago") == 0x17770551  # lookup3.c
    path = tmp_path / "killed.h5"
    script = ("import h5py, os, signal, sys\nf = h5py.File(sys.argv[1], 'w', libver='latest', locking=False)\n"
              "f['x'] = [1, 2, 3]\nf.swmr_mode = True\nf.flush()\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", script, str(path)]).returncode == -9
    assert write_mark(path)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "a", locking=False)
    assert clear_write_mark(path) and not write_mark(path) and not clear_write_mark(path)
    with h5py.File(path, "a", locking=False) as h5:
        assert h5["x"][()].tolist() == [1, 2, 3]
        h5["y"] = 1
