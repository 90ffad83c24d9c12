"""Suspenders, pause and resume: a scan crossing a beam loss waits, redoes what the loss spoiled,
keeps every point or grid point exactly once, and records each suspension in its entry."""
import subprocess
import sys
import textwrap
import time

import gevent
import h5py
import numpy as np
import pytest

from bliss_lite.config.errors import ConfigError


def _when(ns, condition, then):
    """Run `then()` in a greenlet once `condition(scan)` holds for the newest scan."""
    before = len(ns["SCANS"])

    def watch():
        while len(ns["SCANS"]) == before or not condition(ns["SCANS"][-1]):
            gevent.sleep(0.002)
        then(ns["SCANS"][-1])

    return gevent.spawn(watch)


def test_a_step_scan_crossing_a_beam_loss_redoes_the_point(scan_session, capsys):
    ns = scan_session
    ring = ns["ring"]
    floor = ns["suspend_when"](ns["ring_current"], below=10, resume_above=150, settle_s=0.05)
    seen = []
    _when(ns, lambda s: s.data.npoints >= 5, lambda s: ring.lose_beam(0.3))
    _when(ns, lambda s: s.guard.suspended is not None, lambda s: seen.append(s.__info__()))
    scan = ns["ascan"](ns["m0"], 0, 2, 20, 0.02, ns["diode1"], ns["ring_current"], suspenders=[floor])
    assert scan.end_reason == "SUCCESS" and scan.guard.redone >= 1
    data = scan.get_data()
    np.testing.assert_allclose(data["m0"], np.linspace(0, 2, 21))  # every point once, in order
    assert data["ring_current"].min() >= 150  # no point taken without beam
    (start, end, reason), = scan.suspensions
    assert end - start >= 0.3 and reason.startswith("ring_current") and "below 10" in reason
    since = time.strftime("%H:%M:%S", time.localtime(start))
    assert f"suspended since {since}: {reason}" in seen[0]  # the scan says why and since when...
    out = capsys.readouterr().out
    assert f"scan {scan.number}: suspended since {since}: {reason}; waiting for ring_current >= 150" in out
    assert f"scan {scan.number}: resumed after" in out  # ...and when it goes on
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        assert entry["end_reason"][()] == b"SUCCESS" and len(entry["measurement/m0"]) == 21
        rows = entry["suspensions"]
        assert rows["start_time"][()] == pytest.approx([start]) and rows["end_time"][()] == pytest.approx([end])
        assert rows["reason"][0].decode() == reason


def test_an_xrdct_crossing_a_beam_loss_redoes_the_line_and_reduces_valid_frames_once(scan_session):
    """The loss comes in the middle of the third sweep line: that line is braked, measured
    again once the beam is back, its spoiled frames stay in the file marked invalid, and the
    sinograms hold each grid point's valid frame exactly once (live and offline)."""
    from bliss_lite.processing.scan_plugins import reconstruct_scan
    from bliss_lite.processing.sinogram import Grid

    ns = scan_session
    ring = ns["ring"]
    floor = ns["suspend_when"](ns["ring_current"], below=10, resume_above=150, settle_s=0.05)
    _when(ns, lambda s: s.data.count("pilatus") >= 9, lambda s: ring.lose_beam(0.3))
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x",
                       suspenders=[floor], hooks={"integration": {"workers": 0, "npt": 200, "timeout": 0.5},
                                                  "reconstruction": {}})
    assert scan.end_reason == "SUCCESS" and len(scan.suspensions) == 1
    data = scan.get_data()
    valid = data["pilatus_valid"]
    assert len(valid) == len(data["pilatus"]) > 24 and valid.sum() == 24  # 6 lines of 4, one line again
    assert valid[:8].all() and not valid[8:].all()  # the third line was spoiled...
    grid = Grid.from_info(scan.scan_info["xrdct"])
    cells = np.ravel_multi_index(grid.locate(data["omega"][valid], data["x"][valid], data["z"][valid],
                                             np.flatnonzero(valid))[1:], (6, 4))
    assert sorted(cells) == list(range(24))  # ...and every grid point has one valid frame
    assert np.all(data["i0"][valid] > 1000)
    live = scan.hook("reconstruction").result
    assert live["filled"] == 1.0
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        np.testing.assert_array_equal(entry["instrument/pilatus/valid"][()], valid)
        np.testing.assert_array_equal(entry["measurement/pilatus_valid"][()], valid)
        assert len(entry["instrument/pilatus/data"]) == len(valid)  # the spoiled frames stay in the file
        assert len(entry["suspensions/start_time"]) == 1
    maps = {p: m.copy() for p, m in live["maps"].items()}
    reconstruct_scan({"filename": scan.filename, "entry": scan.entry})
    with h5py.File(scan.filename, "r", locking=False) as h5:
        for phase, image in maps.items():
            np.testing.assert_allclose(h5[f"{scan.entry}/reconstruct/{phase}/map"][()], image, rtol=1e-4, atol=1e-4)


def test_pause_and_resume_from_another_greenlet(scan_session):
    ns = scan_session

    def hold(scan):
        scan.pause()
        gevent.spawn_later(0.4, scan.resume)

    _when(ns, lambda s: s.data.npoints >= 3, hold)
    scan = ns["loopscan"](8, 0.02, ns["diode1"], suspenders=[])
    epoch = scan.get_data()["epoch"]
    assert len(epoch) == 8 and scan.end_reason == "SUCCESS"
    assert np.diff(epoch).max() >= 0.4  # held between two points, none lost
    (start, end, reason), = scan.suspensions
    assert reason == "paused by request" and end - start >= 0.35


def test_pause_and_resume_through_redis_from_another_process(scan_session, shared_redis):
    ns = scan_session
    script = textwrap.dedent("""
        import sys, time
        from bliss_lite.data.model import HISTORY_KEY
        from bliss_lite.data.redis_server import connect
        from bliss_lite.data.scan_control import request
        client = connect(sys.argv[1])
        last = (client.xrevrange(HISTORY_KEY, count=1) or [(b"0-0", {})])[0][0]
        print("ready", flush=True)
        (_, [(_, fields)]), = client.xread({HISTORY_KEY: last}, block=20000, count=1)
        key = fields[b"key"].decode()
        time.sleep(0.2)
        request(client, key, "pause")
        time.sleep(0.8)
        request(client, key, "resume")
        print("done", flush=True)
    """)
    other = subprocess.Popen([sys.executable, "-c", script, shared_redis], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "ready"
        scan = ns["loopscan"](40, 0.05, ns["diode1"], suspenders=[])
        assert other.wait(20) == 0 and other.stdout.read().strip() == "done"
    finally:
        other.kill()
    assert len(scan.get_data()["diode1"]) == 40 and scan.end_reason == "SUCCESS"
    (start, end, reason), = scan.suspensions
    assert reason == "paused by request" and 0.5 <= end - start <= 2.0


def test_ctrl_c_while_suspended_aborts_within_a_second(scan_session):
    ns = scan_session
    ring, main = ns["ring"], gevent.getcurrent()
    floor = ns["suspend_when"](ns["ring_current"], below=10, resume_above=150)
    pressed = []

    def press(scan):
        pressed.append(time.monotonic())
        main.throw(KeyboardInterrupt)

    _when(ns, lambda s: s.data.npoints >= 2, lambda s: ring.lose_beam(60))
    _when(ns, lambda s: s.guard.suspended is not None, press)
    with pytest.raises(KeyboardInterrupt):
        ns["dscan"](ns["m1"], 0, 1, 10, 0.01, ns["diode1"], suspenders=[floor])
    assert time.monotonic() - pressed[0] < 1.0
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "USER_ABORT" and ns["m1"].position == pytest.approx(0.0, abs=1e-3)
    (start, end, reason), = scan.suspensions  # the suspension ends with the abort, in the file too
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/suspensions/end_time"][()] == pytest.approx([end])
    ring.restart()  # the beam is back for the next tests


def test_session_suspenders_from_yaml_and_bad_ones_refused_with_file_and_line(tmp_path, shared_redis, data_root,
                                                                              monkeypatch):
    import shutil

    from bliss_lite.shell.runner import open_session
    from tests.conftest import CONFIG_DIR

    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    root = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, root)
    shutil.copytree(CONFIG_DIR.parent / "sessions", tmp_path / "sessions")  # the setup files, beside it
    session_file = root / "sessions" / "test.yml"
    good = session_file.read_text() + (
        "  suspenders:\n"
        "    - when: ring_current\n"
        "      below: 10\n"
        "      resume_above: 150\n"
        "      settle_s: 0.05\n")
    session_file.write_text(good)
    session, ns = open_session("test", root)
    try:
        (floor,) = ns["SUSPENDERS"]
        assert floor.source is ns["ring_current"] and floor.resume == 150
        _when(ns, lambda s: s.data.npoints >= 3, lambda s: ns["ring"].lose_beam(0.2))
        scan = ns["ascan"](ns["m0"], 0, 1, 10, 0.02, ns["diode1"])
        assert len(scan.suspensions) == 1 and len(scan.get_data()["m0"]) == 11
        assert ns["ascan"](ns["m0"], 0, 1, 2, 0.01, ns["diode1"], suspenders=[]).guard.suspenders == []
    finally:
        session.close()
    def refused(text, key, message):
        session_file.write_text(text)
        line = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip().startswith(key))
        with pytest.raises(ConfigError, match=rf"sessions/test.yml:{line}: session 'test': suspenders item 1.*{message}"):
            open_session("test", root)

    refused(good.replace("below: 10", "below: fast"), "below", "below must be a number, got 'fast'")
    refused(good.replace("settle_s: 0.05", "colour: red"), "colour", "unknown key 'colour'")
    refused(good.replace("resume_above: 150", "resume_above: 5"), "resume_above",
            "resume_above 5 must be on the good side of 10")
    refused(good.replace("when: ring_current", "when: ring_currant"), "- when", "'ring_currant' is not an object")


class Shutter:
    """A fast shutter's state as a callable (1 open, 0 closed), for `equals=0`. An interlock
    closes it the first time it is read while `axis` stands at `at` (so a step scan's point
    there is the one spoiled); it opens again on the first read `closed_s` later. With
    `flicker_s`, it closes once more on the first read that long after opening (during the
    settle time), and opens `closed_s` later. Every change is logged with its monotonic time."""

    def __init__(self, axis, at, log, closed_s=0.1, flicker_s=None):
        self.name = "fshutter"
        self.axis, self.at, self.log = axis, at, log
        self.closed_s, self.flicker_s = closed_s, flicker_s
        self.closed, self.since, self.closes = False, None, 0

    def _set(self, closed, t):
        self.closed, self.since = closed, t
        self.closes += closed
        self.log.append(("closed" if closed else "opened", t))

    def __call__(self):
        t = time.monotonic()
        if self.since is None:
            if abs(self.axis.position - self.at) < 1e-4:
                self._set(True, t)
        elif self.closed and t - self.since >= self.closed_s:
            self._set(False, t)
        elif not self.closed and self.flicker_s is not None and self.closes == 1 and t - self.since >= self.flicker_s:
            self._set(True, t)
        return 0 if self.closed else 1


def _actions(log):
    """pre_suspend and pre_resume callables that log their call with its monotonic time."""
    return (lambda: log.append(("pre_suspend", time.monotonic())),
            lambda: log.append(("pre_resume", time.monotonic())))


def test_an_equals_suspender_runs_pre_suspend_and_pre_resume_in_order_and_redoes_the_point(scan_session):
    ns = scan_session
    log = []
    shutter = Shutter(ns["m0"], 0.5, log)
    pre_suspend, pre_resume = _actions(log)
    closed = ns["suspend_when"](shutter, equals=0, pre_suspend=pre_suspend, pre_resume=pre_resume)
    scan = ns["ascan"](ns["m0"], 0, 1, 10, 0.02, ns["diode1"], suspenders=[closed])
    assert scan.end_reason == "SUCCESS"
    assert [what for what, _ in log] == ["closed", "pre_suspend", "opened", "pre_resume"]
    assert scan.guard.redone == 1  # the point at 0.5, spoiled by the closing, taken again
    data = scan.get_data()
    np.testing.assert_allclose(data["m0"], np.linspace(0, 1, 11), atol=1e-3)  # every point once, in order
    assert len(data["diode1"]) == 11
    (start, end, reason), = scan.suspensions
    assert reason == "fshutter is 0"
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert [r.decode() for r in h5[f"{scan.entry}/suspensions/reason"][()]] == [reason]


def test_the_settle_time_starts_again_when_the_condition_trips_during_it(scan_session):
    ns = scan_session
    log = []
    settle_s = 0.3
    shutter = Shutter(ns["m0"], 0.3, log, closed_s=0.1, flicker_s=0.1)  # closes again 0.1 s into the settle
    pre_suspend, pre_resume = _actions(log)
    closed = ns["suspend_when"](shutter, equals=0, settle_s=settle_s, pre_suspend=pre_suspend,
                                pre_resume=pre_resume)
    scan = ns["ascan"](ns["m0"], 0, 1, 10, 0.02, ns["diode1"], suspenders=[closed])
    assert scan.end_reason == "SUCCESS"
    assert [what for what, _ in log] == ["closed", "pre_suspend", "opened", "closed", "opened", "pre_resume"]
    times = dict(log[4:])  # the last opening and the resume
    assert times["pre_resume"] - times["opened"] >= settle_s  # the settle counted from the last opening
    assert len(scan.suspensions) == 1 and scan.guard.redone == 1  # one suspension, flicker included
    np.testing.assert_allclose(scan.get_data()["m0"], np.linspace(0, 1, 11), atol=1e-3)


def test_a_state_suspender_holds_the_scan_while_an_axis_is_in_fault(scan_session):
    ns = scan_session
    m0, m2 = ns["m0"], ns["m2"]
    log = []

    def interlock():  # the monochromator's controller faults while the scan stands at 0.5
        while abs(m0.position - 0.5) >= 1e-4:
            gevent.sleep(0.002)
        m2.controller.set_fault(m2)
        log.append(("fault", time.monotonic()))

    def reset():
        m2.controller.set_fault(m2, False)
        log.append(("fault cleared", time.monotonic()))

    def pre_suspend():
        log.append(("pre_suspend", time.monotonic()))
        gevent.spawn_later(0.1, reset)  # someone resets the controller

    _, pre_resume = _actions(log)
    faulty = ns["suspend_when"](m2, state="FAULT", pre_suspend=pre_suspend, pre_resume=pre_resume)
    watcher = gevent.spawn(interlock)
    try:
        scan = ns["ascan"](m0, 0, 1, 10, 0.02, ns["diode1"], suspenders=[faulty])
    finally:
        watcher.kill()
        m2.controller.set_fault(m2, False)
    assert scan.end_reason == "SUCCESS"
    assert [what for what, _ in log] == ["fault", "pre_suspend", "fault cleared", "pre_resume"]
    assert scan.guard.redone == 1
    np.testing.assert_allclose(scan.get_data()["m0"], np.linspace(0, 1, 11), atol=1e-3)
    (start, end, reason), = scan.suspensions
    assert reason == "m2 state FAULT"


def test_a_step_scan_crossing_a_beam_loss_of_the_yaml_schedule(tmp_path, shared_redis, data_root, monkeypatch):
    """The loss comes from the ring's `beam_losses:` (not lose_beam()): its clock is started
    once the scan has taken 3 points, the loss 0.1 s later, for 0.3 s."""
    import shutil

    from bliss_lite.shell.runner import open_session
    from tests.conftest import CONFIG_DIR

    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    root = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, root)
    shutil.copytree(CONFIG_DIR.parent / "sessions", tmp_path / "sessions")
    ring_file = root / "source" / "ring.yml"
    ring_file.write_text(ring_file.read_text().replace(
        "  refill_s: 0.5\n", "  refill_s: 0.5\n  beam_losses:\n    - {at_s: 0.1, duration_s: 0.3}\n"))
    session, ns = open_session("test", root)
    try:
        ring = ns["ring"]
        assert ring.schedule == [(0.1, 0.3)]
        ring.restart(t0=time.monotonic() + 3600)  # the schedule's clock waits for the scan
        floor = ns["suspend_when"](ns["ring_current"], below=10, resume_above=150, settle_s=0.05)
        _when(ns, lambda s: s.data.npoints >= 3, lambda s: ring.restart())
        scan = ns["ascan"](ns["m0"], 0, 2, 20, 0.02, ns["diode1"], ns["ring_current"], suspenders=[floor])
    finally:
        session.close()
    assert scan.end_reason == "SUCCESS"
    assert ring.current_at(ring.t0 + 0.25) == 0 and ring.current_at(ring.t0 + 0.05) == 200  # the scheduled loss
    data = scan.get_data()
    np.testing.assert_allclose(data["m0"], np.linspace(0, 2, 21), atol=1e-3)  # every point once, in order
    assert data["ring_current"].min() >= 150  # none kept without beam
    (start, end, reason), = scan.suspensions
    assert reason == "ring_current 0 mA below 10"
    assert end - start >= 0.3  # the whole loss waited out
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        assert entry["end_reason"][()] == b"SUCCESS" and len(entry["measurement/m0"]) == 21
        assert [r.decode() for r in entry["suspensions/reason"][()]] == [reason]
