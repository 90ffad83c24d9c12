"""run=False: every scan comes back unrun with its estimate; scan limits are settings."""
import math
import time

import numpy as np
import pytest
from conftest import write_config

from bliss_lite.config import ConfigError
from bliss_lite.controllers.trajectory import ideal_move_time
from bliss_lite.data import bslz4
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE
from bliss_lite.scans.continuous import runup


def test_the_seed_scan_is_accepted_with_run_false_and_its_estimate_is_right(scan_session, data_root):
    """400 positions x 629 angles (Nyquist) x 400 heights: 100,640,000 frames, nothing moves."""
    ns = scan_session
    omega, x, z, pilatus = ns["omega"], ns["x"], ns["z"], ns["pilatus"]
    heights = list(np.linspace(-2.0, 2.0, 400))
    scan = ns["xrdct"](omega, x, z, -0.25, 0.25, 400, heights, 0.008, fast_axis="x", run=False)
    estimate = scan.estimate
    frames = 400 * 629 * 400
    assert scan.state == "IDLE" and (omega.position, x.position, z.position) == (0.0, 0.0, 0.0)
    assert not data_root.exists() or not any(data_root.rglob("*.h5"))  # nothing written
    assert len(ns["SCANS"]) == 0  # a scan that never ran is no scan of the session
    assert estimate.points == estimate.frames == frames
    rows, columns = pilatus.shape
    assert estimate.bytes_raw == frames * rows * columns * 4  # int32
    measured = estimate.details["per_frame_bytes"]["pilatus"]["stored"]
    assert estimate.compression_measured and estimate.bytes_frames == frames * measured
    again = len(bslz4.compress(pilatus.render(time.monotonic(), 0.008 - pilatus.min_latency)))  # stages stand still
    assert measured == pytest.approx(again, rel=0.05)  # another Poisson draw of the same frame
    assert estimate.data_files == math.ceil(frames / getattr(pilatus, "frames_per_file", DEFAULT_FRAMES_PER_FILE))
    scalars = 6 * 8 * frames  # omega, x, z, elapsed_time, i0, it as float64
    assert estimate.bytes_scalars == scalars + 9 * frames  # and the detector's frame numbers (int64), valid flags (bool)
    assert estimate.bytes_total >= estimate.bytes_frames + estimate.bytes_scalars
    assert estimate.disk_holds == (estimate.bytes_total <= estimate.disk_free_bytes)
    # acquisition at the detector's period, plus each line's run-up and the stepping moves
    assert frames * 0.008 < estimate.duration_s < frames * 0.008 * 1.5
    assert "100,640,000" in estimate.__info__() and "data files" in estimate.__info__()


def test_a_step_scan_estimate_adds_its_moves_and_then_runs_as_planned(scan_session):
    ns = scan_session
    m0 = ns["m0"]
    scan = ns["ascan"](m0, 1, 2, 10, 0.01, ns["diode1"], run=False)
    assert m0.position == 0.0 and scan.state == "IDLE" and scan.estimate.points == 11
    moves = ideal_move_time(1.0, m0.velocity, m0.acceleration) + 10 * ideal_move_time(0.1, m0.velocity, m0.acceleration)
    assert scan.estimate.duration_s == pytest.approx(moves + 11 * 0.01)
    assert scan.estimate.frames == 0 and scan.estimate.bytes_scalars == 11 * 8 * 4  # m0, diode1, elapsed, epoch
    scan.run()
    assert scan.end_reason == "SUCCESS" and len(scan.get_data()["diode1"]) == 11 and m0.position == 2.0
    assert ns["SCANS"][-1] is scan


def test_every_scan_command_takes_run_false(scan_session):
    ns = scan_session
    m0, m1, d = ns["m0"], ns["m1"], ns["diode1"]
    calls = {
        "ct": lambda: ns["ct"](0.01, d, run=False), "sct": lambda: ns["sct"](0.01, d, run=False),
        "ascan": lambda: ns["ascan"](m0, 0, 1, 2, 0, d, run=False),
        "a2scan": lambda: ns["a2scan"](m0, 0, 1, m1, 0, 1, 2, 0, d, run=False),
        "anscan": lambda: ns["anscan"]([(m0, 0, 1)], 2, 0, d, run=False),
        "dscan": lambda: ns["dscan"](m0, 0, 1, 2, 0, d, run=False),
        "d2scan": lambda: ns["d2scan"](m0, 0, 1, m1, 0, 1, 2, 0, d, run=False),
        "dnscan": lambda: ns["dnscan"]([(m0, 0, 1)], 2, 0, d, run=False),
        "amesh": lambda: ns["amesh"](m0, 0, 1, 2, m1, 0, 1, 2, 0, d, run=False),
        "dmesh": lambda: ns["dmesh"](m0, 0, 1, 2, m1, 0, 1, 2, 0, d, run=False),
        "lookupscan": lambda: ns["lookupscan"]([(m0, [0, 1, 2])], 0, d, run=False),
        "pointscan": lambda: ns["pointscan"](m0, [0, 1, 2], 0, d, run=False),
        "timescan": lambda: ns["timescan"](0.01, d, npoints=5, run=False),
        "loopscan": lambda: ns["loopscan"](5, 0.01, d, run=False),
        "fscan": lambda: ns["fscan"](ns["omega"], 0, 1, 20, 0.01, ns["pilatus"], run=False),
    }
    expected_points = {"ct": 1, "sct": 1, "amesh": 9, "dmesh": 9, "timescan": 5, "loopscan": 5, "fscan": 20}
    for name, call in calls.items():
        scan = call()
        assert scan.state == "IDLE" and scan.estimate.points == expected_points.get(name, 3), name
        assert scan.estimate.duration_s > 0, name
    assert (m0.position, m1.position, ns["omega"].position) == (0.0, 0.0, 0.0) and len(ns["SCANS"]) == 0
    with pytest.raises(TypeError, match="ascan: run must be True or False, got 'no'"):
        ns["ascan"](m0, 0, 1, 2, 0, d, run="no")
    assert ns["timescan"](0.01, d, run=False).estimate.duration_s is None  # until Ctrl-C


def test_fscan_planned_then_run_reports_its_frames(scan_session):
    ns = scan_session
    omega = ns["omega"]
    scan = ns["fscan"](omega, 0, 2, 12, 0.01, ns["pilatus"], run=False)
    velocity = 2 / 0.01
    distance = runup(omega, velocity)
    expected = ideal_move_time(distance, omega.velocity, omega.acceleration) + \
        ideal_move_time(2 * distance + 24, velocity, omega.acceleration)
    assert scan.estimate.duration_s == pytest.approx(expected) and "frames" not in scan.scan_info
    scan.run()
    assert scan.scan_info["frames"]["pilatus"] == {"frames": 12, "dropped": 0, "duplicated": 0}
    assert scan.scan_info["sweep"]["handled_rate_hz"] > 0


def test_scan_limits_are_settings_named_in_the_message(scan_session):
    ns = scan_session
    limits = ns["SCAN_LIMITS"]
    assert (limits.max_frames, limits.max_points) == (2_000_000_000, 10_000_000)
    limits.max_frames = 30
    with pytest.raises(ValueError, match=r"xrdct: 42 frames is more than 30 \(SCAN_LIMITS.max_frames\)"):
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 7, [0.0], 0.008, n_omega=6, fast_axis="x", run=False)
    assert ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 5, [0.0], 0.008, n_omega=6, fast_axis="x",
                       run=False).estimate.frames == 30
    limits.max_points = 5
    with pytest.raises(ValueError, match=r"amesh: 9 points is more than 5 \(SCAN_LIMITS.max_points\)"):
        ns["amesh"](ns["m0"], 0, 1, 2, ns["m1"], 0, 1, 2, 0, run=False)
    with pytest.raises(ValueError, match=r"SCAN_LIMITS.max_frames must be a whole number >= 1, got 0"):
        limits.max_frames = 0
    with pytest.raises(AttributeError, match="SCAN_LIMITS has no setting 'max_lines'"):
        limits.max_lines = 3


def test_scan_limits_from_the_session_yaml(tmp_path, run_dir):
    from bliss_lite.shell.runner import open_session

    root = write_config(tmp_path / "cfg", {
        "m.yml": "- class: mockup\n  axes:\n    - name: m0\n      steps_per_unit: 100\n      velocity: 10\n"
                 "      acceleration: 100\n",
        "s.yml": "- name: s\n  class: session\n  scan_limits:\n    max_points: 4\n",
        "t.yml": "- name: t\n  class: session\n  scan_limits:\n    max_points: -3\n",
    })
    session, ns = open_session("s", root)
    assert ns["SCAN_LIMITS"].max_points == 4 and ns["SCAN_LIMITS"].max_frames == 2_000_000_000
    with pytest.raises(ValueError, match=r"intervals must be at most 3 \(SCAN_LIMITS.max_points - 1\)"):
        ns["ascan"](ns["m0"], 0, 1, 4, 0, run=False)
    session.close()
    with pytest.raises(ConfigError, match=r"t.yml:3: session 't': scan_limits: max_points must be a whole number "
                                          r">= 1, got -3"):
        open_session("t", root)


def test_the_hooks_say_what_the_reduction_writes_and_holds(scan_session, monkeypatch):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 40, [0.0, 0.1, 0.2], 0.008, n_omega=63,
                       fast_axis="x", hooks={"integration": {"workers": 0, "npt": 300},
                                             "reconstruction": {"phases": {"ceria": "CeO2", "lab6": "LaB6"}}},
                       run=False)
    frames, n = 40 * 63 * 3, 40
    hooks = scan.estimate.details["hooks"]
    assert hooks["integration"]["patterns_bytes"] == frames * 300 * 4
    volume, maps = 3 * n * n * 300 * 4, 3 * n * n * 4 * 3  # two phases and the decomposition's residual
    assert hooks["reconstruction"]["volume_bytes"] == volume and hooks["reconstruction"]["maps_bytes"] == maps
    assert hooks["reconstruction"]["maps_held_bytes"] == maps  # small: every height's maps kept
    assert scan.estimate.bytes_reduction == frames * 300 * 4 + frames + volume + maps
    height = 63 * 40 * 300 * 4
    assert scan.estimate.reduction_peak_bytes >= 2 * height  # two heights of sinograms at once, never all
    assert scan.estimate.reduction_peak_bytes < 3 * 4 * height + 2 * 2**26
    assert "reduction:" in scan.estimate.__info__()
    from bliss_lite.processing import reconstruction_hook

    monkeypatch.setattr(reconstruction_hook, "KEEP_MAPS_BYTES", 0)  # too large to keep: the heights in flight only
    monkeypatch.setattr(reconstruction_hook, "KEEP_DONE_HEIGHTS", 0)
    capped = scan.hook("reconstruction").estimate(frames, scan.scan_info, hooks)
    assert capped["maps_bytes"] == maps and capped["maps_held_bytes"] == 2 * n * n * 4 * 3  # two heights held
    assert capped["peak_memory_bytes"] == hooks["reconstruction"]["peak_memory_bytes"] - n * n * 4 * 3
