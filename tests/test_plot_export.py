"""`bliss-lite plot FILE ENTRY -o out.png`: scans of the `test` session, saved, then drawn; the
figure's data are compared with the file's, the PNG's size with dpi x figure size."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from bliss_lite.data.entry_reader import read_frames
from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.writer import EntryWriter
from bliss_lite.view.export import main, render

# the console script the README names, installed beside this interpreter (pip install -e .);
# where the package is only on the path (no install), the same main through -m
_SCRIPT = Path(sys.executable).with_name("bliss-lite")
BLISS_LITE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bliss_lite"]


def artist(figure, gid):
    """The one line or image of the figure with this gid."""
    found = [a for ax in figure.axes for a in (*ax.lines, *ax.images) if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} found"
    return found[0]


def measured(scan, *names):
    with h5py.File(scan.filename, "r", locking=False) as h5:
        return [h5[f"{scan.entry}/measurement/{name}"][()] for name in names]


def test_ascan_draws_the_default_counter_with_cen_and_peak_and_saves_the_png(scan_session, tmp_path):
    ns = scan_session
    scan = ns["ascan"](ns["m0"], 0, 10, 20, 0.001, ns["gauss"], ns["diode1"])
    m0, gauss = measured(scan, "m0", "gauss")
    figure = render(scan.filename, scan.entry)
    curve = artist(figure, "curve:gauss")  # the NXdata default plot: the first counter, alone
    np.testing.assert_array_equal(curve.get_xdata(), m0)
    np.testing.assert_array_equal(curve.get_ydata(), gauss)
    assert [a for a in figure.axes[0].lines if a.get_gid().startswith("curve:")] == [curve]
    assert abs(artist(figure, "peak").get_xdata()[0] - 5) <= 0.5  # within a step
    assert abs(artist(figure, "cen").get_xdata()[0] - 5) <= 0.5
    assert figure.axes[0].get_xlabel() == "m0 (a.u.)"  # m0 has no unit configured: the file says so
    assert figure.axes[0].get_ylabel() == "gauss (counts)"  # integrating: counts
    title = figure.get_suptitle()
    assert f"Scan {scan.number}: ascan m0 0 10 20 0.001" in title
    assert "sample.h5" in title and f"entry {scan.entry}" in title

    out = tmp_path / "plots" / "ascan.png"
    out.parent.mkdir()
    assert main([scan.filename, str(scan.number), "-o", str(out), "--dpi", "50"]) == 0  # "3" means "3.1"
    width, height = figure.get_size_inches() * 50
    assert imread(out).shape[:2] == (round(height), round(width))
    assert [p.name for p in out.parent.iterdir()] == ["ascan.png"]  # no temporary file left behind


def test_counters_option_and_a_timescan_against_elapsed_time(scan_session):
    ns = scan_session
    scan = ns["ascan"](ns["m0"], 0, 10, 10, 0.001)
    diode2, gauss = measured(scan, "diode2", "gauss")
    figure = render(scan.filename, scan.entry, ["diode2", "gauss"])
    np.testing.assert_array_equal(artist(figure, "curve:diode2").get_ydata(), diode2)
    np.testing.assert_array_equal(artist(figure, "curve:gauss").get_ydata(), gauss)
    m0, = measured(scan, "m0")
    assert artist(figure, "peak").get_xdata()[0] == m0[np.argmax(diode2)]  # cen/peak of the first counter

    timed = ns["timescan"](0.001, ns["diode1"], npoints=4)
    elapsed, diode1 = measured(timed, "elapsed_time", "diode1")
    figure = render(timed.filename, timed.entry)
    curve = artist(figure, "curve:diode1")
    np.testing.assert_array_equal(curve.get_xdata(), elapsed)
    np.testing.assert_array_equal(curve.get_ydata(), diode1)
    assert figure.axes[0].get_xlabel() == "elapsed_time (s)"  # the unit the file holds
    assert not [a for a in figure.axes[0].lines if a.get_gid() in ("peak", "cen")]  # no axis scanned


@pytest.mark.parametrize("backnforth", [False, True])
def test_mesh_is_an_image_of_the_counter_over_both_motors(scan_session, backnforth):
    ns = scan_session
    ns["umv"](ns["m0"], 5, ns["m1"], 1)
    scan = ns["dmesh"](ns["m0"], -1, 1, 4, ns["m1"], -1, 1, 2, 0.001, ns["gauss"], backnforth=backnforth)
    m0, m1, gauss = measured(scan, "m0", "m1", "gauss")
    expected = np.full((3, 5), np.nan)  # each point placed by its own positions
    for x, y, value in zip(m0, m1, gauss):
        expected[round(y - 0), round((x - 4) / 0.5)] = value
    image = artist(render(scan.filename, scan.entry), "mesh:gauss")
    np.testing.assert_array_equal(image.get_array(), expected)
    assert image.get_extent() == pytest.approx([3.75, 6.25, -0.5, 2.5])
    assert image.axes.get_xlabel() == "m0 (a.u.)" and image.axes.get_ylabel() == "m1 (a.u.)"


def test_xrdct_frame_pattern_and_phase_maps(scan_session, tmp_path):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, 6, [0.0], 0.01, n_omega=8, fast_axis="x",
                       hooks={"integration": {"npt": 100, "workers": 0},
                              "reconstruction": {"phases": {"CeO2": "CeO2", "LaB6": "LaB6"}}})
    figure = render(scan.filename, scan.entry)
    last = read_frames(scan.filename, scan.entry, "pilatus", [47])[0]
    frame = artist(figure, "frame").get_array()
    assert frame.mask.any() and np.array_equal(frame.mask, last == -1)  # gap pixels masked (grey)
    np.testing.assert_array_equal(frame.data, last)
    assert artist(figure, "frame").axes.get_title() == "pilatus: frame 47 of 48"
    with h5py.File(scan.filename, "r", locking=False) as h5:
        results = h5[f"{scan.entry}/integrate/results"]
        q, intensity = results["q"][()], results["intensity"][()]
        maps = {phase: h5[f"{scan.entry}/reconstruct/{phase}/map"][0] for phase in ("CeO2", "LaB6")}
    pattern = artist(figure, "pattern")
    np.testing.assert_array_equal(pattern.get_xdata(), q)
    np.testing.assert_allclose(pattern.get_ydata(), intensity.mean(axis=0), rtol=1e-6)
    assert pattern.axes.get_xlabel() == "q (nm^-1)"
    for phase, image in maps.items():
        np.testing.assert_array_equal(artist(figure, f"map:{phase}").get_array(), image)

    out = tmp_path / "xrdct.png"
    done = subprocess.run([*BLISS_LITE, "plot", scan.filename, scan.entry, "-o", str(out)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    width, height = figure.get_size_inches() * 100  # the default dpi
    assert imread(out).shape[:2] == (round(height), round(width))


def test_a_scan_still_being_written_is_drawn_with_the_points_it_has(tmp_path):
    path = tmp_path / "running.h5"
    writer = EntryWriter(path, 4, title="ascan m0 0 4 4 0.1", axes=[ChannelSpec("m0", unit="mm")],
                         counters=[ChannelSpec("diode1"), ChannelSpec("gauss")])
    try:
        writer.append({"m0": [0.0, 1.0, 2.0], "diode1": [1.0, 2.0, 3.0], "gauss": [5.0, 9.0]})  # SWMR, open
        figure = render(path, "4")
        both = render(path, "4.1", ["diode1", "gauss"])
    finally:
        writer.close()
    curve = artist(figure, "curve:diode1")  # the default plot: the first counter against the first axis
    np.testing.assert_array_equal(curve.get_xdata(), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(curve.get_ydata(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(artist(both, "curve:gauss").get_xdata(), [0.0, 1.0])  # the points all have
    assert figure.axes[0].get_xlabel() == "m0 (mm)"
    assert "[running]" in figure.get_suptitle()


@pytest.fixture
def saved(scan_session):
    ns = scan_session
    return ns["ascan"](ns["m0"], 0, 1, 2, 0.001)


def fails(capsys, argv, status):
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_errors_are_one_line_naming_what_is_wrong(saved, tmp_path, capsys):
    out = str(tmp_path / "out.png")
    path = saved.filename
    assert "nowhere.h5: no such file" in fails(capsys, [str(tmp_path / "nowhere.h5"), "1", "-o", out], 1)
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not HDF5")
    assert f"{not_hdf5}: not an HDF5 file" in fails(capsys, [str(not_hdf5), "1", "-o", out], 1)
    err = fails(capsys, [path, "99", "-o", out], 1)
    assert f"{path}: no entry 99.1 (entries: " in err and saved.entry in err
    err = fails(capsys, [path, saved.entry, "-o", out, "--counters", "diode1,nope"], 1)
    assert f"entry {saved.entry}: no counter 'nope' (counters: " in err and "diode1" in err
    err = fails(capsys, [path, saved.entry, "-o", str(tmp_path / "missing" / "out.png")], 1)
    assert "missing/out.png: cannot write the image" in err
    assert not (tmp_path / "out.png").exists()
    assert "required: -o/--output (usage: bliss-lite plot FILE ENTRY -o OUT" in fails(capsys, [path, saved.entry], 2)
    assert "--dpi" in fails(capsys, [path, saved.entry, "-o", out, "--dpi", "0"], 2)
    assert "cannot write a .xyz image" in fails(capsys, [path, saved.entry, "-o", str(tmp_path / "a.xyz")], 2)
