"""Faults in the middle of scans, through the simulator processes (simulators/): the stages
behind the motor controller's socket, the Pilatus behind its own. Each fault must abort the
scan with a message naming the axis or detector, after stopping everything else; the entry
keeps every point taken and its end_reason, the Redis scan is sealed, nothing moves after."""
from __future__ import annotations

import gevent
import h5py
import numpy as np
import pytest

from bliss_lite.controllers.detectors.pilatus_base import DetectorError
from bliss_lite.controllers.errors import AxisError
from bliss_lite.data.client import ScanReader
from bliss_lite.data.redis_server import connect
from simulators.processes import SimulatorProcess, write_remote_config


@pytest.fixture(scope="module")
def simulators():
    with SimulatorProcess.motor() as motors, SimulatorProcess.pilatus() as pilatus:
        yield motors, pilatus


@pytest.fixture
def remote(simulators, shared_redis, data_root, run_dir, tmp_path, monkeypatch):
    """The `remote` session's namespace; its axes start at 0 with no fault injected."""
    from bliss_lite.shell.runner import open_session

    motors, pilatus = simulators
    assert motors.send("INJECT clear") == "OK"
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    root = write_remote_config(tmp_path / "config", motors.port, pilatus.port, timeout=0.5, stall_timeout=0.3)
    _, ns = open_session("remote", root)
    ns["mv"](ns["omega"], 0, ns["x"], 0, ns["z"], 0)
    ns["motors"], ns["redis"] = motors, connect(shared_redis)
    yield ns
    ns["pilatus"].close()  # the detector server serves one client at a time
    motors.send("INJECT clear")


def controller_state(ns, name):
    """What the controller itself says (not the driver): READY, MOVING, FAULT ..."""
    return ns["motors"].send(f"STATE {name}").split()[1]


def at_rest(ns, *names):
    """True when every named axis is still on the controller (two reads, same position)."""
    first = {n: ns["motors"].send(f"POS {n}") for n in names}
    gevent.sleep(0.05)
    return all(controller_state(ns, n) != "MOVING" and ns["motors"].send(f"POS {n}") == first[n] for n in names)


def xrdct_480(ns):
    """An omega-sweep XRD-CT of 8 x 60 = 480 frames, 3 degrees a 10 ms frame (~5 s)."""
    return ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [0.0], 0.01, n_omega=60)


def after(delay, action):
    return gevent.spawn_later(delay, action)


def once_frames_came(ns, count, action):
    """Run `action` once the running scan holds `count` frames: mid-scan on a loaded machine too,
    where a fixed delay may fall before the first frame."""
    before = ns["SCANS"][-1] if ns["SCANS"] else None

    def wait():
        while True:
            scan = ns["SCANS"][-1] if ns["SCANS"] else None
            if scan is not None and scan is not before and scan.data.count("pilatus") >= count:
                return action()
            gevent.sleep(0.01)
    return gevent.spawn(wait)


def check_closed(ns, scan, end_reason, channels):
    """The entry is readable, ends with end_reason and holds exactly the points taken; the
    Redis scan is sealed with the same reason."""
    data = scan.get_data()
    with h5py.File(scan.filename, "r", locking=False) as h5:
        entry = h5[scan.entry]
        assert entry["end_reason"][()].decode() == end_reason
        for name in channels:
            np.testing.assert_array_equal(entry[f"measurement/{name}"][()], data[name])
    reader = ScanReader(ns["redis"], scan.key)
    assert (reader.state, reader.end_reason) == ("CLOSED", end_reason)
    for name in channels:
        if reader.channels[name].encoding == "raw":
            np.testing.assert_array_equal(reader.read(name), data[name])
    return data


def test_a_motor_fault_mid_step_scan_is_named_and_the_entry_kept(remote):
    ns = remote
    after(0.4, lambda: ns["motors"].send("INJECT fault x"))
    with pytest.raises(AxisError, match=r"^x: .*FAULT"):
        ns["ascan"](ns["x"], 0, 4, 40, 0.02, ns["diode1"])
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "FAILURE"
    data = check_closed(ns, scan, "FAILURE", ["x", "diode1"])
    assert 2 <= len(data["x"]) < 41
    np.testing.assert_allclose(data["x"], np.arange(len(data["x"])) * 0.1, atol=1e-9)  # the points taken


def test_a_motor_fault_mid_sweep_stops_the_sweep_and_the_detector(remote):
    ns = remote
    injector = once_frames_came(ns, 60, lambda: ns["motors"].send("INJECT fault omega"))
    try:
        with pytest.raises(AxisError, match=r"^omega: .*FAULT"):
            xrdct_480(ns)
    finally:
        injector.kill()
    scan = ns["SCANS"][-1]
    data = check_closed(ns, scan, "FAILURE", ["omega", "x", "pilatus_frame_number"])
    n = len(data["pilatus_frame_number"])
    assert 0 < n < 480 and data["pilatus_frame_number"].tolist() == list(range(n))  # every frame that came
    assert len(data["omega"]) == n and data["pilatus"].shape[0] == n
    assert at_rest(ns, "x", "z") and controller_state(ns, "omega") == "FAULT"


def test_an_axis_stalled_mid_sweep_is_stopped_and_named(remote):
    ns = remote
    after(0.8, lambda: ns["motors"].send("INJECT stall omega"))
    with pytest.raises(AxisError, match=r"^omega: (the sweep stopped short of [\d.]+ \(MOVING|stalled)"):
        xrdct_480(ns)
    check_closed(ns, ns["SCANS"][-1], "FAILURE", ["omega", "x"])
    assert at_rest(ns, "omega", "x", "z")  # the scan's stop released the frozen axis


def test_a_limit_switch_mid_scan_stops_it_where_it_was_hit(remote):
    ns = remote
    ns["motors"].send("INJECT limit x none 15000")  # the switch at 1.5 mm (x: 10000 steps/mm)
    with pytest.raises(AxisError, match=r"^x: .*LIMPOS"):
        ns["ascan"](ns["x"], 0, 3, 30, 0.01, ns["diode1"])
    data = check_closed(ns, ns["SCANS"][-1], "FAILURE", ["x", "diode1"])
    assert data["x"].max() <= 1.5 and len(data["x"]) == 15  # 0 .. 1.4: the point at 1.5 never counted
    assert ns["x"].position == pytest.approx(1.5) and at_rest(ns, "x")


@pytest.mark.parametrize("fault, message", [
    ("silent", r"^x: controller 'remote_stages' at 127\.0\.0\.1:\d+: no reply to \w+ within 0\.5 s"),  # no hang
    ("garble 1", r"^x: .*garbled reply to \w+"),
], ids=["silent controller", "garbled reply"])
def test_a_controller_that_stops_answering_well_fails_the_scan_by_name(remote, fault, message):
    ns = remote
    after(0.3, lambda: ns["motors"].send(f"INJECT {fault}"))
    with pytest.raises(AxisError, match=message):
        ns["ascan"](ns["x"], 0, 2, 40, 0.02, ns["diode1"])
    check_closed(ns, ns["SCANS"][-1], "FAILURE", ["x", "diode1"])


@pytest.mark.parametrize("fault, error, message, frames", [
    ({"stop_after": 100}, RuntimeError, r"silent: no frame for [\d.]+ s|\d+ of 480 frames did not arrive", 100),
    ({"close_after": 50}, DetectorError, r"connection to 127\.0\.0\.1:\d+ (lost|closed)", 51),
], ids=["stops delivering", "hangs up"])
def test_a_detector_failing_mid_scan_is_named_while_the_scan_runs(remote, fault, error, message, frames):
    ns = remote
    ns["pilatus"].inject(**fault)
    with pytest.raises(error, match=rf"^pilatus: ({message})"):
        xrdct_480(ns)
    data = check_closed(ns, ns["SCANS"][-1], "FAILURE", ["pilatus_frame_number"])
    assert data["pilatus_frame_number"].tolist() == list(range(frames))  # every frame sent, none after
    assert at_rest(ns, "omega", "x", "z")


def test_frames_dropped_and_repeated_by_the_remote_detector_are_recorded(remote):
    ns = remote
    ns["pilatus"].inject(drop=[3], twice=[5])
    scan = ns["fscan"](ns["omega"], 0.0, 3.0, 12, 0.01, ns["pilatus"])
    assert scan.end_reason == "SUCCESS"
    data = check_closed(ns, scan, "SUCCESS", ["pilatus_frame_number"])
    assert data["pilatus_frame_number"].tolist() == [0, 1, 2, 4, 5, 5, 6, 7, 8, 9, 10, 11]
    with h5py.File(scan.filename, "r", locking=False) as h5:
        group = h5[f"{scan.entry}/instrument/pilatus"]
        assert (group["frames_dropped"][()], group["frames_duplicated"][()]) == (1, 1)


@pytest.mark.parametrize("fault, message", [
    ({"delay": 1.0}, r"no reply to PREPARE within 0\.5 s"),
    ({"garble": 1}, r"garbled reply to PREPARE"),
])
def test_a_slow_or_garbling_detector_is_refused_before_anything_moves(remote, fault, message):
    ns = remote
    ns["pilatus"].timeout = 0.5
    ns["pilatus"].inject(**fault)
    before = list(ns["SCANS"])  # the scans themselves: SCANS keeps 20, its length stops changing
    with pytest.raises(DetectorError, match=r"^pilatus: " + message):
        ns["fscan"](ns["omega"], 5.0, 3.0, 12, 0.01, ns["pilatus"])
    assert list(ns["SCANS"]) == before and ns["omega"].position == 0.0  # nothing moved, nothing written
    ns["pilatus"].close()
    gevent.sleep(1.0)  # the server finishes its delayed reply to the dropped connection


def test_ctrl_c_mid_sweep_stops_every_axis_within_its_deceleration(remote):
    ns = remote
    omega, main = ns["omega"], gevent.getcurrent()
    pressed = {}

    def ctrl_c():
        pressed["omega"] = float(ns["motors"].send("POS omega").split()[1]) / omega.steps_per_unit
        main.throw(KeyboardInterrupt)

    after(1.0, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        xrdct_480(ns)
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "USER_ABORT"
    check_closed(ns, scan, "USER_ABORT", ["omega", "x", "pilatus_frame_number"])
    assert at_rest(ns, "omega", "x", "z")
    velocity = 3.0 / 0.01  # the sweep's 3 degrees per 10 ms frame
    braking = velocity ** 2 / (2 * omega.acceleration)
    # the stop lands within the braking distance, plus the travel while the key press is handled
    assert abs(omega.position - pressed["omega"]) <= braking + velocity * 0.2


def test_ctrl_c_in_a_relative_scan_returns_and_a_second_one_forces(remote):
    ns = remote
    x, main = ns["x"], gevent.getcurrent()
    ns["mv"](x, 2.0)
    after(0.4, lambda: main.throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        ns["dscan"](x, -1, 1, 40, 0.02, ns["diode1"])
    check_closed(ns, ns["SCANS"][-1], "USER_ABORT", ["x", "diode1"])
    assert x.position == 2.0 and at_rest(ns, "x")  # back where it started

    ns["mv"](x, 10.0)
    x.velocity = 5.0  # a long way back to the start: time for a second Ctrl-C
    last = ns["SCANS"][-1]  # the new scan is the one after it (SCANS keeps 20: its length stops growing)

    def second_ctrl_c():  # once the scan is closed and the return has started
        while not (ns["SCANS"][-1] is not last and ns["SCANS"][-1].state == "CLOSED" and x.is_moving):
            gevent.sleep(0.01)
        gevent.sleep(0.2)
        main.throw(KeyboardInterrupt)

    def first_ctrl_c():
        while not (ns["SCANS"][-1] is not last and ns["SCANS"][-1].data.npoints >= 20):
            gevent.sleep(0.01)
        gevent.spawn(second_ctrl_c)
        main.throw(KeyboardInterrupt)

    gevent.spawn(first_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ns["dscan"](x, 0, 8, 40, 0.01, ns["diode1"])
    scan = ns["SCANS"][-1]
    check_closed(ns, scan, "USER_ABORT", ["x", "diode1"])
    assert at_rest(ns, "x") and 10.0 < x.position < scan.get_data()["x"][-1]  # stopped on its way back


def test_redis_record_of_a_faulted_scan_is_readable_by_clients(remote):
    """A follower sees the faulted scan end: sealed, with every point the file has."""
    ns = remote
    after(0.3, lambda: ns["motors"].send("INJECT fault x"))
    with pytest.raises(AxisError):
        ns["ascan"](ns["x"], 0, 4, 40, 0.02, ns["diode1"], ns["diode2"])
    scan = ns["SCANS"][-1]
    reader = ScanReader(ns["redis"], scan.key)
    followed = {}
    for name, _, points in reader.follow(["diode1", "diode2"], timeout_ms=1000):
        followed.setdefault(name, []).extend(points.tolist())
    assert followed["diode1"] == scan.get_data()["diode1"].tolist()



def test_an_axis_whose_controller_goes_silent_mid_move_is_still_stopped(remote):
    """A state that cannot be read is no proof of rest: the stop is sent anyway (the
    controller executes commands it no longer answers)."""
    ns = remote
    x = ns["x"]
    after(0.3, lambda: ns["motors"].send("INJECT silent"))
    with pytest.raises(AxisError, match=r"^x: .*no reply to \w+ within 0\.5 s"):
        ns["mv"](x, 40)
    ns["motors"].send("INJECT clear")
    assert at_rest(ns, "x")
    assert float(ns["motors"].send("POS x").split()[1]) < 40 * 10000 - 1  # stopped, not arrived


def test_a_move_ending_in_a_fault_returns_once_the_faulted_axis_has_braked(remote):
    """FAULT hides MOVING: the controller brakes a faulted axis to rest, and the move does not
    return while it still runs."""
    ns = remote
    after(0.3, lambda: ns["motors"].send("INJECT fault z"))
    with pytest.raises(AxisError, match=r"^z: .*FAULT"):
        ns["mv"](ns["z"], 15)
    assert at_rest(ns, "z") and controller_state(ns, "z") == "FAULT"
    assert 0 < ns["z"].position < 15


def test_a_garbled_reply_mid_sweep_leaves_nothing_braking_unwatched(remote):
    """Whichever greenlet reads the garbled reply (the sweep's or the move's), the scan returns
    with the sweeping axis at rest: a stop never cuts short the move's own braking."""
    ns = remote
    for delay in (0.3, 0.45, 0.6):
        after(delay, lambda: ns["motors"].send("INJECT garble 1"))
        with pytest.raises(AxisError, match=r"^(omega|x|z): .*garbled|^omega: the sweep stopped short"):
            ns["fscan"](ns["omega"], 0.0, 2.0, 100, 0.01, ns["pilatus"])
        assert at_rest(ns, "omega", "x", "z")
        check_closed(ns, ns["SCANS"][-1], "FAILURE", ["omega", "pilatus_frame_number"])
        ns["pilatus"].close()
