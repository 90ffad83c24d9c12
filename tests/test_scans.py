"""Step scans in the `test` session: points, numbers in memory, in the file and in Redis."""
from __future__ import annotations

import math

import gevent
import h5py
import numpy as np
import pytest

from bliss_lite.controllers.errors import LimitError
from bliss_lite.data.client import ScanReader
from bliss_lite.data.redis_server import connect
from bliss_lite.data.writer import read_entry


def gauss_rate(x, center=5.0, fwhm=1.0, height=1000.0):
    return height * math.exp(-4 * math.log(2) * ((x - center) / fwhm) ** 2)


def redis_data(scan, url):
    reader = ScanReader(connect(url), scan.key)
    return reader, reader.get_data()


def test_ascan_points_and_values(scan_session):
    ns = scan_session
    scan = ns["ascan"](ns["m0"], 0, 10, 10, 0.01)
    data = scan.get_data()
    assert scan.npoints == 11 and len(data["m0"]) == 11
    assert data["m0"] == pytest.approx(np.linspace(0, 10, 11))
    assert data["gauss"] == pytest.approx([gauss_rate(x) * 0.01 for x in range(11)])
    assert data["diode1"] == pytest.approx(np.full(11, 100.0), rel=0.1)  # sampled: its mean, whatever the count time
    assert np.all(np.diff(data["elapsed_time"]) >= 0.01)  # each point counted 10 ms
    assert set(data) == {"m0", "elapsed_time", "epoch", "diode1", "diode2", "diode3", "gauss"}
    assert (scan.state, scan.end_reason) == ("CLOSED", "SUCCESS")
    assert ns["m0"].position == 10.0  # an absolute scan stays at its last point


def test_get_data_equals_file_equals_redis(scan_session, shared_redis):
    ns = scan_session
    scan = ns["a2scan"](ns["m0"], 0, 2, ns["m1"], 5, 1, 40, 0.001, ns["diode1"], ns["gauss"])
    memory = scan.get_data()
    in_file = read_entry(scan.filename, scan.number)
    reader, in_redis = redis_data(scan, shared_redis)
    assert set(memory) == set(in_file) == set(in_redis)
    for name in memory:
        assert len(memory[name]) == 41
        np.testing.assert_array_equal(memory[name], in_file[name])
        np.testing.assert_array_equal(memory[name], in_redis[name])
    assert (reader.state, reader.end_reason) == ("CLOSED", "SUCCESS")
    assert reader.number == scan.number and reader.name == "a2scan"
    assert reader.scan_info["filename"] == scan.filename and reader.scan_info["entry"] == scan.entry


def test_entry_layout_is_nexus_and_opens_in_silx(scan_session):
    import silx.io
    import silx.io.nxdata

    ns = scan_session
    ns["umv"](ns["m1"], 3)
    scan = ns["ascan"](ns["m0"], -1, 1, 4, 0.001, ns["diode2"], ns["gauss"])
    assert scan.entry == f"{scan.number}.1" and scan.filename.endswith("/test/sample.h5")
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["title"][()].decode() == "ascan m0 -1 1 4 0.001"
        assert entry["end_reason"][()] == b"SUCCESS"
        assert entry["start_time"][()] and entry["end_time"][()]
        snapshot = entry["instrument/positioners"]
        assert snapshot["m0"][()] == 0.0 and snapshot["m1"][()] == 3.0  # positions at the start
        assert set(snapshot) >= {"m0", "m1", "m2", "m3", "m4", "omega", "x", "z"}
        assert entry["instrument/m0"].attrs["NX_class"] == "NXpositioner"
        assert entry["instrument/diode2"].attrs["NX_class"] == "NXdetector"
        assert entry["measurement/m0"][()] == pytest.approx([-1, -0.5, 0, 0.5, 1])
        assert entry.attrs["default"] == "plotselect"
    with silx.io.open(scan.filename) as root:
        nxdata = silx.io.nxdata.get_default(root[scan.entry])
        assert nxdata is not None and nxdata.is_valid
        assert nxdata.signal_name == "diode2 (a.u.)"  # silx shows the units (none configured: a.u.)
        assert nxdata.axes_names == ["m0 (a.u.)"]
        assert nxdata.signal.shape == (5,)


def test_numbers_files_samples_and_save_false(scan_session, data_root):
    ns = scan_session
    first = ns["ascan"](ns["m0"], 0, 1, 2, 0.001)
    second = ns["dscan"](ns["m0"], 0, 1, 2, 0.001)
    unsaved = ns["ascan"](ns["m0"], 0, 1, 2, 0.001, save=False)
    counted = ns["ct"](0.001)
    assert (first.entry, second.entry) == ("1.1", "2.1")
    assert unsaved.number == 3 and unsaved.filename is None and unsaved.entry is None  # the same count
    assert counted.number == 4 and counted.filename is None
    assert unsaved.key is not None and len(unsaved.get_data()["m0"]) == 3
    assert ns["ascan"](ns["m0"], 0, 1, 2, 0.001).entry == "5.1"  # no number is given twice
    assert ns["SCANS"].find(3) is unsaved and ns["SCANS"].find(4) is counted
    ns["SCAN_SAVING"].sample = "CeO2"
    other = ns["ascan"](ns["m0"], 0, 1, 2, 0.001)
    assert other.filename == str(data_root / "test" / "CeO2.h5") and other.entry == "1.1"  # a new file
    assert ns["SCANS"].find(1) is other  # the newest scan of that number
    listing = ns["SCANS"].__info__()
    assert "    3  CLOSED (SUCCESS)" in listing and "not saved" in listing and "sample.h5 5.1" in listing
    assert "CeO2.h5 1.1" in listing
    with pytest.raises(KeyError, match="no scan number 99 among the last 20"):
        ns["SCANS"].find(99)
    with h5py.File(first.filename, "r", locking=False) as h5:
        assert sorted(h5) == ["1.1", "2.1", "5.1"]  # unsaved scans have no entry
    with pytest.raises(ValueError, match="SCAN_SAVING.sample must be a plain file name"):
        ns["SCAN_SAVING"].sample = "../elsewhere"


def test_data_root_comes_from_the_session_yaml_unless_overridden(scan_session, monkeypatch):
    saving = scan_session["SCAN_SAVING"]
    monkeypatch.delenv("BLISS_LITE_DATA_ROOT")
    assert str(saving.base_path) == "/tmp/bliss_lite_data"  # config/sessions/test.yml
    monkeypatch.setenv("BLISS_LITE_DATA_ROOT", "/somewhere/else")
    assert str(saving.filename) == "/somewhere/else/test/sample.h5"


def test_ct_is_not_saved_and_sct_is(scan_session, shared_redis):
    ns = scan_session
    counted = ns["ct"](0.05)
    assert counted.filename is None and counted.get_data()["diode3"][0] == pytest.approx(300, rel=0.1)  # sampled
    assert set(counted.get_data()) == {"elapsed_time", "epoch", "diode1", "diode2", "diode3", "gauss"}
    _, in_redis = redis_data(counted, shared_redis)
    np.testing.assert_array_equal(in_redis["diode3"], counted.get_data()["diode3"])
    saved = ns["sct"](0.01, ns["diode1"])
    assert read_entry(saved.filename, saved.number)["diode1"] == pytest.approx(saved.get_data()["diode1"])


def test_relative_scans_return_to_start(scan_session):
    ns = scan_session
    m0, m1 = ns["m0"], ns["m1"]
    ns["mv"](m0, 2, m1, -3)
    scan = ns["dscan"](m0, -1, 1, 4, 0)
    assert scan.get_data()["m0"] == pytest.approx([1, 1.5, 2, 2.5, 3])
    assert m0.position == 2
    scan = ns["d2scan"](m0, 0, 1, m1, 0, -1, 2, 0)
    assert scan.get_data()["m1"] == pytest.approx([-3, -3.5, -4])
    assert (m0.position, m1.position) == (2, -3)
    scan = ns["dnscan"]([(m0, 1, 2), (m1, 1, 2)], 1, 0)
    assert scan.get_data()["m0"] == pytest.approx([3, 4]) and (m0.position, m1.position) == (2, -3)


def test_relative_scan_returns_to_start_after_an_error(scan_session):
    ns = scan_session
    m0 = ns["m0"]
    ns["mv"](m0, 1)
    original = m0.controller.start_all
    calls = []

    def stall_on_third(*moves):
        calls.append(moves)
        if len(calls) == 3:  # the move to the fourth point ends short: a fault
            m0.controller.lose_steps(m0, 7)
        return original(*moves)

    m0.controller.start_all = stall_on_third
    with pytest.raises(Exception, match="m0: did not reach its target"):
        ns["dscan"](m0, 0, 1, 4, 0)
    m0.controller.start_all = original
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "FAILURE" and len(scan.get_data()["m0"]) == 3  # 1, 1.25, 1.5
    assert m0.position == 1
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/end_reason"][()] == b"FAILURE"
        assert len(h5[f"{scan.entry}/measurement/m0"]) == 3


def test_mesh_order_and_backnforth(scan_session):
    ns = scan_session
    m0, m1 = ns["m0"], ns["m1"]
    scan = ns["amesh"](m0, 0, 2, 2, m1, 10, 11, 1, 0, ns["diode1"])
    data = scan.get_data()
    assert data["m0"].tolist() == [0, 1, 2, 0, 1, 2] and data["m1"].tolist() == [10, 10, 10, 11, 11, 11]
    assert scan.scan_info["shape"] == [2, 3]
    scan = ns["amesh"](m0, 0, 2, 2, m1, 10, 12, 2, 0, ns["diode1"], backnforth=True)
    assert scan.get_data()["m0"].tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2]
    ns["mv"](m0, 5, m1, 5)
    scan = ns["dmesh"](m0, -1, 1, 1, m1, 0, 1, 1, 0, ns["diode1"])
    assert scan.get_data()["m0"].tolist() == [4, 6, 4, 6] and (m0.position, m1.position) == (5, 5)


def test_lookupscan_and_pointscan(scan_session):
    ns = scan_session
    m0, m1 = ns["m0"], ns["m1"]
    scan = ns["lookupscan"]([(m0, [0, 3, 1]), (m1, np.array([2, 2, 5]))], 0, ns["diode1"])
    assert scan.get_data()["m0"].tolist() == [0, 3, 1] and scan.get_data()["m1"].tolist() == [2, 2, 5]
    scan = ns["pointscan"](m0, [7, -2], 0, "diode2")  # a counter given by name
    assert scan.get_data()["m0"].tolist() == [7, -2] and "diode2" in scan.get_data()
    assert scan.title == "pointscan m0 2 points 0"


def test_timescan_and_loopscan(scan_session):
    ns = scan_session
    scan = ns["loopscan"](5, 0.01, ns["diode1"])
    elapsed = scan.get_data()["elapsed_time"]
    assert len(elapsed) == 5 and np.all(np.diff(elapsed) >= 0.01)
    scan = ns["timescan"](0.005, ns["diode1"], npoints=3, sleep_time=0.01)
    assert np.all(np.diff(scan.get_data()["elapsed_time"]) >= 0.015)


def test_timescan_forever_stops_on_ctrl_c(scan_session):
    ns = scan_session
    main = gevent.getcurrent()
    gevent.spawn_later(0.3, main.throw, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        ns["timescan"](0.01, ns["diode1"])
    scan = ns["SCANS"][-1]
    n = len(scan.get_data()["diode1"])
    assert 10 <= n <= 30 and scan.end_reason == "USER_ABORT"
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/end_reason"][()] == b"USER_ABORT"
        assert len(h5[f"{scan.entry}/measurement/diode1"]) == n  # every point taken is in the file


@pytest.mark.parametrize("call, message", [
    (lambda ns: ns["ascan"](ns["m0"], 0, float("nan"), 10, 0.1), "ascan: m0 stop must be a finite number, got nan"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 0, 0.1), "ascan: intervals must be a whole number >= 1, got 0"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, -3, 0.1), "ascan: intervals must be a whole number >= 1, got -3"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 2.5, 0.1), "ascan: intervals must be a whole number >= 1, got 2.5"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 10, -0.1), "ascan: count time must be >= 0, got -0.1"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 10, 0.1, "nope"), "ascan: unknown counter 'nope'"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 10, 0.1, ns["m1"]), "ascan: <Axis m1.*> is not a counter"),
    (lambda ns: ns["ascan"]("m0", 0, 1, 10, 0.1), "ascan: motor must be an axis, got 'm0'"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 150, 10, 0.1), "ascan: m0: target 150 beyond high limit 100"),
    (lambda ns: ns["dscan"](ns["m0"], -102, 0, 10, 0.1), "dscan: m0: target -101 beyond low limit -100"),
    (lambda ns: ns["a2scan"](ns["m0"], 0, 1, ns["m0"], 0, 1, 3, 0), "a2scan: axis m0 given twice"),
    (lambda ns: ns["amesh"](ns["m0"], 0, 1, 2, ns["m1"], 0, 200, 2, 0), "amesh: m1: target 200 beyond high limit 100"),
    (lambda ns: ns["amesh"](ns["m0"], 0, 1, 2, ns["m2"], -99.8, 0, 2, 0),
     "amesh: m2: move to -99.8 needs a backlash approach from -100.3, beyond low limit -100"),
    (lambda ns: ns["lookupscan"]([(ns["m0"], [0, 1]), (ns["m1"], [0])], 0), "lookupscan: every axis needs the same number"),
    (lambda ns: ns["timescan"](0.1, npoints=-1), "timescan: npoints must be a whole number >= 0, got -1"),
    (lambda ns: ns["loopscan"](0, 0.1), "loopscan: npoints must be a whole number >= 1, got 0"),
    (lambda ns: ns["ct"](float("inf")), "ct: count time must be a finite number, got inf"),
])
def test_bad_arguments_are_refused_before_anything_moves(scan_session, call, message):
    ns = scan_session
    ns["mv"](ns["m0"], 1, ns["m1"], 1, ns["m2"], 1)
    before = list(ns["SCANS"])  # the scans themselves: SCANS keeps 20, its length stops changing
    with pytest.raises((ValueError, TypeError, LimitError), match=message.replace("(", r"\(").replace(")", r"\)")):
        call(ns)
    assert (ns["m0"].position, ns["m1"].position, ns["m2"].position) == (1, 1, 1)
    assert list(ns["SCANS"]) == before  # no scan was created, nothing was written


def test_no_counter_and_no_active_group(scan_session, monkeypatch):
    monkeypatch.setattr(scan_session["SESSION"], "active_mg", None)
    with pytest.raises(ValueError, match="ct: no counter given and no active measurement group"):
        scan_session["ct"](0.1)


def test_peak_tools_find_the_gaussian(scan_session):
    ns = scan_session
    m0 = ns["m0"]
    ns["ascan"](m0, 3, 7, 40, 0.001)
    ns["plotselect"]("gauss")
    assert ns["peak"]() == pytest.approx(5.0)
    assert ns["cen"]() == pytest.approx(5.0, abs=1e-9)  # symmetric sampling around the centre
    assert ns["com"]() == pytest.approx(5.0, abs=1e-6)
    assert ns["fwhm"]() == pytest.approx(1.0, abs=0.01)  # linear interpolation of half maximum
    ns["goto_peak"]()
    assert m0.position == 5.0
    ns["mv"](m0, 0)
    assert ns["goto_cen"]() == pytest.approx(5.0) and m0.position == pytest.approx(5.0)
    ns["mv"](m0, 0)
    ns["goto_com"]()
    assert m0.position == pytest.approx(5.0, abs=1e-3)


def test_goto_moves_every_axis_of_the_scan(scan_session):
    ns = scan_session
    m0, m1 = ns["m0"], ns["m1"]
    ns["a2scan"](m0, 0, 10, m1, 20, 40, 20, 0.001, ns["gauss"])
    assert ns["cen"]() == pytest.approx(5.0, abs=1e-9)
    ns["goto_cen"]()
    assert (m0.position, m1.position) == (pytest.approx(5.0), pytest.approx(30.0))


def test_peak_tools_name_their_problem(scan_session):
    ns = scan_session
    ns["SCANS"].clear()
    ns["loopscan"](3, 0)
    with pytest.raises(RuntimeError, match="no scan of an axis yet"):
        ns["cen"]()
    ns["ascan"](ns["m0"], 0, 1, 2, 0, ns["diode1"])
    with pytest.raises(ValueError, match="counter 'gauss' is not in scan"):
        ns["peak"]("gauss")
    with pytest.raises(ValueError, match="axis 'm1' did not move in scan"):
        ns["peak"](axis=ns["m1"])
    with pytest.raises(ValueError, match="plotselect: no counter 'gaus' in session test"):
        ns["plotselect"]("gaus")
    ns["amesh"](ns["m0"], 0, 1, 1, ns["m1"], 0, 1, 1, 0)
    with pytest.raises(ValueError, match="is a mesh: peak tools need a one-dimensional scan"):
        ns["cen"]()


def test_peak_tools_skip_counts_and_take_another_axis(scan_session):
    ns = scan_session
    ns["a2scan"](ns["m1"], 10, 20, ns["m0"], 0, 10, 50, 0.001, ns["gauss"], ns["diode1"])
    ns["ct"](0.01)  # a count in between does not hide the scan
    assert ns["cen"]("gauss") == pytest.approx(15.0, abs=1e-9)  # against m1, the first axis
    assert ns["cen"]("gauss", axis=ns["m0"]) == pytest.approx(5.0, abs=1e-9)


def test_scan_without_redis_is_saved_and_warns(scan_session, monkeypatch, caplog):
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", "redis://127.0.0.1:1")  # nothing listens there
    scan_session["SESSION"].scan_context.redis.forget()
    with gevent.Timeout(2.0):  # a dead Redis must not hang the scan (timed in benchmarks/interrupt.py)
        scan = scan_session["ascan"](scan_session["m0"], 0, 1, 3, 0)
    assert scan.key is None and scan.end_reason == "SUCCESS"
    assert len(read_entry(scan.filename, scan.number)["m0"]) == 4
    assert "WARNING: no Redis for live data" in caplog.text


def test_shell_display_shows_rows_and_summary(scan_session, capsys):
    ns = scan_session
    scan = ns["ascan"](ns["m0"], 0, 2, 2, 0.01, ns["gauss"])
    out = capsys.readouterr().out
    assert f"Scan {scan.number} " in out and scan.title in out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()
            and len(line.split()) == 4]
    assert [int(r[0]) for r in rows] == [0, 1, 2]
    assert [float(r[2]) for r in rows] == [0, 1, 2]
    assert f"Scan {scan.number}: 3 points" in out and f"{scan.filename} entry {scan.entry}" in out
    ns["ct"](0.01, ns["diode1"])
    assert "diode1 =" in capsys.readouterr().out


def test_a_writer_error_stops_the_scan_as_a_failure(scan_session, shared_redis, monkeypatch):
    from bliss_lite.data.writer import EntryWriter

    ns = scan_session
    real_append = EntryWriter.append

    def disk_full(self, batches):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EntryWriter, "append", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        ns["ascan"](ns["m0"], 0, 1, 3, 0)
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "FAILURE"
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/end_reason"][()] == b"FAILURE"  # closed, readable
    reader, _ = redis_data(scan, shared_redis)
    assert (reader.state, reader.end_reason) == ("CLOSED", "FAILURE")
    monkeypatch.setattr(EntryWriter, "append", real_append)
    assert ns["ascan"](ns["m0"], 0, 1, 3, 0).end_reason == "SUCCESS"  # the file opens again


def test_ctrl_c_during_cleanup_still_closes_and_seals(scan_session, shared_redis, monkeypatch):
    from bliss_lite.scans.io_pump import DataPump

    ns = scan_session
    real_finish = DataPump.finish

    def interrupted(self):
        self._stopping = True
        raise KeyboardInterrupt

    monkeypatch.setattr(DataPump, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ns["ascan"](ns["m0"], 0, 1, 9, 0)
    monkeypatch.setattr(DataPump, "finish", real_finish)
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "USER_ABORT"
    in_file = read_entry(scan.filename, scan.number)
    reader, in_redis = redis_data(scan, shared_redis)
    assert len(in_file["m0"]) == len(in_redis["m0"]) == 10  # every point, in both
    assert reader.end_reason == "USER_ABORT"
    assert ns["ascan"](ns["m0"], 0, 1, 3, 0).end_reason == "SUCCESS"


def test_a_counter_returning_garbage_fails_the_scan_by_name(scan_session):
    ns = scan_session

    class Broken:
        name, fullname, unit, shape, dtype = "broken", "test:broken", "", (), "float64"

        def __init__(self):
            self.calls = 0

        def read(self, count_time):
            self.calls += 1
            return 1.0 if self.calls < 3 else "overflow"

    with pytest.raises(TypeError, match="counter broken returned 'overflow', not a number"):
        ns["ascan"](ns["m0"], 0, 1, 9, 0, Broken(), ns["diode1"])
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "FAILURE"
    assert len(read_entry(scan.filename, scan.number)["diode1"]) == 2  # the points before it


def test_a_moving_axis_is_refused_before_the_scan(scan_session):
    from bliss_lite.controllers.errors import AxisError

    ns = scan_session
    m0 = ns["m0"]
    m0.velocity, m0.acceleration = 10, 100
    m0.move(5, wait=False)
    before = list(ns["SCANS"])  # the scans themselves: SCANS keeps 20, its length stops changing
    with pytest.raises(AxisError, match="dscan: m0 is moving; wait for it"):
        ns["dscan"](m0, -1, 1, 4, 0)
    assert list(ns["SCANS"]) == before
    m0.wait_move()
    assert m0.position == 5
