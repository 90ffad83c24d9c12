"""Fuzzing the scan commands' arguments: every call is either a valid scan, or is refused with a
ValueError, TypeError or AxisError that starts with the command and names the argument, before
any axis moves (user, dial and controller positions unchanged) and before any scan or file exists.

`Scan.run` is replaced by a stop: a call that passes every check is recorded there (and its points
compared with what the arguments ask for) instead of running, so huge count times or point counts
cost nothing. An independent oracle says which arguments are wrong; limits are checked point by
point with `check_reachable`. The last test runs small valid scans for real.
"""
from __future__ import annotations

import math
import numbers
import os
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bliss_lite.config.session import is_counter, is_measurement_group
from bliss_lite.controllers.axis import Axis
from bliss_lite.controllers.errors import AxisError, LimitError
from bliss_lite.controllers.motion import check_reachable
from bliss_lite.scans.arguments import MAX_FRAMES, MAX_POINTS
from bliss_lite.scans.scan import Scan

EXAMPLES = int(os.environ.get("BLISS_LITE_FUZZ_EXAMPLES", 100))  # more for a deeper search than CI's
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
AXES = ["m0", "m1", "m2", "m3", "m4", "omega", "x", "z"]

# -- values: mostly valid, so that one bad argument at a time is common --------------------------
def mostly(valid, invalid):
    """`valid` nine times in ten: a call then often has a single bad argument, or none."""
    return st.integers(0, 9).flatmap(lambda k: invalid if k == 0 else valid)


SPECIAL = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1.7e308, 5e-324, -0.0, 10**400, True, False, None, "1",
           "abc", [], [1.0], {}, np.float64("nan"), np.int64(3), np.float32(2.5), Fraction(1, 3), Decimal("1.5"),
           1j, b"1", object()]
num = mostly(st.one_of(st.floats(-120, 120), st.integers(-120, 120)), st.sampled_from(SPECIAL))
count_time = mostly(st.one_of(st.sampled_from([0, 0.0, 1e-4, 0.01, 1e9]), st.floats(0, 1)),
                    st.one_of(st.sampled_from([-1e-9, -1]), st.floats(max_value=-1e-300), st.sampled_from(SPECIAL)))
intervals = mostly(st.one_of(st.integers(1, 6), st.sampled_from([np.int64(3), np.uint8(2), 10**5])),
                   st.one_of(st.integers(-2, 0), st.sampled_from([0.0, 2.0, 2.5, True, None, "3", MAX_POINTS, 10**12,
                                                                   math.nan])))
flag = mostly(st.booleans(), st.sampled_from([np.bool_(True), "no", 0, 1, None]))

class Accepted(Exception):
    """Raised in place of running a scan that passed every check."""


class Session:
    """The namespace, and draws of its objects (valid or not) for a hypothesis `data`."""

    def __init__(self, ns, data):
        self.ns, self.data = ns, data

    def axis(self):
        wrong = ["m0", None, 5, self.ns["diode1"], self.ns["test_mg"]]
        return self.data.draw(mostly(st.sampled_from([self.ns[a] for a in AXES]), st.sampled_from(wrong)))

    def counters(self):
        ns = self.ns
        good = st.lists(st.sampled_from([ns["diode1"], "diode2", ns["gauss"], ns["test_mg"]]), max_size=2)
        bad = st.lists(st.sampled_from(["nope", None, ns["m1"], 5, ns["pilatus"], ns["diode1"]]), min_size=1, max_size=2)
        return self.data.draw(mostly(good, bad))


# -- the oracle --------------------------------------------------------------------------------
def is_number(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def is_whole(v, minimum=1, maximum=None):
    ok = isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v >= minimum
    return ok and (maximum is None or v <= maximum)


def counter_problems(ns, args):
    for arg in args:
        obj = ns.get(arg) if isinstance(arg, str) else arg
        if not (is_counter(obj) or is_measurement_group(obj)):
            return {"counter"}
    return set()


def counting_problems(ns, t, counters, save):
    """What every step scan's count time, counters and save flag may get wrong."""
    problems = counter_problems(ns, counters)
    if not (is_number(t) and t >= 0):
        problems.add("count time")
    if not isinstance(save, (bool, np.bool_)):
        problems.add("save")
    return problems


def unreachable(axes, points):
    """True if a point is not finite or not reachable (checked point by point, not min/max)."""
    points = np.asarray(points, dtype=float).reshape(len(points), len(axes))
    if not np.all(np.isfinite(points)):
        return True
    rows = points if len(points) <= 2000 else np.vstack([points.min(axis=0), points.max(axis=0)])
    try:
        for row in rows:
            for axis, target in zip(axes, row):
                check_reachable(axis, float(target))
    except AxisError:
        return True
    return False


def snapshot(ns):
    return {a: (ns[a].position, ns[a].dial, ns[a].controller.read_position(ns[a])) for a in AXES}


def run_checked(ns, data_root, command, call, problems, expected_points=None, axes=(), physical=()):
    """The property, for one call whose wrong arguments the oracle listed in `problems`."""
    before, scans, files = snapshot(ns), list(ns["SCANS"]), sorted(data_root.rglob("*"))
    try:
        call()
    except Accepted as accepted:
        scan = accepted.args[0]
        event(f"{command}: accepted")
        assert not problems, f"{command} accepted bad arguments: {problems}"
        if expected_points is not None:
            assert not unreachable(axes, expected_points), f"{command} accepted an unreachable point"
            np.testing.assert_array_equal(np.asarray(scan.chain.top.points, dtype=float),
                                          np.asarray(expected_points, dtype=float).reshape(len(expected_points), -1))
    except (ValueError, TypeError, AxisError) as exc:
        message = str(exc)
        event(f"{command}: refused for {'its arguments' if problems else 'limits or physics'}")
        assert message.startswith(f"{command}: "), message
        if problems:
            assert any(p in message for p in problems), (message, problems)
        elif expected_points is not None:
            assert isinstance(exc, LimitError) or "finite" in message, message
            assert unreachable(axes, expected_points), f"refused a reachable scan: {message}"
        else:
            assert isinstance(exc, LimitError) or any(p in message for p in physical), message
    assert snapshot(ns) == before  # nothing moved, not even a step
    # no scan, no file (the list itself: SCANS keeps 20, so once full its length never changes)
    assert list(ns["SCANS"]) == scans and sorted(data_root.rglob("*")) == files


@pytest.fixture
def accepting(scan_session, data_root, monkeypatch):
    """The test session with `Scan.run` stopping every scan that passed its checks."""

    def stop_here(scan):
        raise Accepted(scan)

    monkeypatch.setattr(Scan, "run", stop_here)
    return scan_session, data_root


# -- line scans --------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), command=st.sampled_from(["ascan", "dscan", "a2scan", "d2scan", "anscan", "dnscan"]))
def test_line_scans(accepting, data, command):
    ns, data_root = accepting
    s = Session(ns, data)
    n_axes = {"ascan": 1, "dscan": 1, "a2scan": 2, "d2scan": 2}.get(command) or data.draw(st.integers(1, 3))
    ranges = [(s.axis(), data.draw(num), data.draw(num)) for _ in range(n_axes)]
    n, t, counters, save = data.draw(intervals), data.draw(count_time), s.counters(), data.draw(flag)
    problems = set()
    if not is_whole(n, 1, MAX_POINTS - 1):
        problems.add("intervals")
    axes = [m for m, _, _ in ranges]
    if not all(isinstance(m, Axis) for m in axes):
        problems.add("motor")
    elif len({a.name for a in axes}) < len(axes):
        problems.add("given twice")
    else:
        for m, start, stop in ranges:
            problems |= {f"{m.name} {what}" for what, v in (("start", start), ("stop", stop)) if not is_number(v)}
    problems |= counting_problems(ns, t, counters, save)
    points = None
    if not problems:
        offsets = [m.position if command.startswith("d") else 0.0 for m in axes]
        with np.errstate(over="ignore", invalid="ignore"):
            points = np.linspace([float(a) + o for (_, a, _), o in zip(ranges, offsets)],
                                 [float(b) + o for (_, _, b), o in zip(ranges, offsets)], int(n) + 1)
    flat = [x for r in ranges for x in r]
    call = {"ascan": lambda: ns["ascan"](*flat, n, t, *counters, save=save),
            "dscan": lambda: ns["dscan"](*flat, n, t, *counters, save=save),
            "a2scan": lambda: ns["a2scan"](*flat, n, t, *counters, save=save),
            "d2scan": lambda: ns["d2scan"](*flat, n, t, *counters, save=save),
            "anscan": lambda: ns["anscan"](ranges, n, t, *counters, save=save),
            "dnscan": lambda: ns["dnscan"](ranges, n, t, *counters, save=save)}[command]
    run_checked(ns, data_root, command, call, problems, points, axes)


# -- meshes ------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), command=st.sampled_from(["amesh", "dmesh"]))
def test_meshes(accepting, data, command):
    ns, data_root = accepting
    s = Session(ns, data)
    m1, a1, b1, n1 = s.axis(), data.draw(num), data.draw(num), data.draw(intervals)
    m2, a2, b2, n2 = s.axis(), data.draw(num), data.draw(num), data.draw(intervals)
    t, counters, save, backnforth = data.draw(count_time), s.counters(), data.draw(flag), data.draw(flag)
    problems = set()
    if not (isinstance(m1, Axis) and isinstance(m2, Axis)):
        problems.add("motor")
    elif m1 is m2:
        problems.add("given twice")
    else:
        if not (is_whole(n1) and is_whole(n2)):
            problems.add("intervals")
        elif (int(n1) + 1) * (int(n2) + 1) > MAX_POINTS:
            problems.add("points is more than")
        problems |= {f"{m.name} {w}" for m, w, v in ((m1, "start", a1), (m1, "stop", b1), (m2, "start", a2),
                                                      (m2, "stop", b2)) if not is_number(v)}
    if not isinstance(backnforth, (bool, np.bool_)):
        problems.add("backnforth")
    problems |= counting_problems(ns, t, counters, save)
    points = None
    if not problems:
        o1, o2 = (m1.position, m2.position) if command == "dmesh" else (0.0, 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            fast = np.linspace(float(a1) + o1, float(b1) + o1, int(n1) + 1)
            slow = np.linspace(float(a2) + o2, float(b2) + o2, int(n2) + 1)
        points = [(x, y) for j, y in enumerate(slow) for x in (fast[::-1] if backnforth and j % 2 else fast)]
    call = lambda: ns[command](m1, a1, b1, n1, m2, a2, b2, n2, t, *counters,  # noqa: E731
                               backnforth=backnforth, save=save)
    run_checked(ns, data_root, command, call, problems, points, [m1, m2])


# -- given positions ---------------------------------------------------------------------------
position_lists = st.one_of(st.lists(num, max_size=4), st.lists(st.floats(-150, 150), min_size=1, max_size=4),
                           st.sampled_from([None, "12", 5, [[1, 2], [3]], [[1, 2], [3, 4]], {1: 2},
                                            np.array([1.0, 2.0]), (x for x in [1.0])]))


@FUZZ
@given(data=st.data(), command=st.sampled_from(["lookupscan", "pointscan"]))
def test_position_lists(accepting, data, command):
    ns, data_root = accepting
    s = Session(ns, data)
    n_axes = 1 if command == "pointscan" else data.draw(st.integers(1, 3))
    pairs = [(s.axis(), data.draw(position_lists)) for _ in range(n_axes)]
    t, counters, save = data.draw(count_time), s.counters(), data.draw(flag)
    problems, columns = set(), []
    for motor, positions in pairs:
        if not isinstance(motor, Axis):
            problems.add("motor")
            continue
        try:
            good = np.ndim(positions) == 1 and not isinstance(positions, (str, dict)) and len(positions) > 0
        except ValueError:
            good = False
        if not good:
            problems.add(f"{motor.name}: positions must")
            continue
        bad = [i for i, p in enumerate(positions) if not is_number(p)]
        problems |= {f"{motor.name} position {i}" for i in bad}
        columns.append([float(p) for p in positions] if not bad else None)
    if not problems:
        if len({m.name for m, _ in pairs}) < len(pairs):
            problems.add("given twice")
        elif len({len(c) for c in columns}) > 1:
            problems.add("same number of positions")
    problems |= counting_problems(ns, t, counters, save)
    points = list(zip(*columns)) if not problems else None
    if command == "pointscan":
        call = lambda: ns["pointscan"](pairs[0][0], pairs[0][1], t, *counters, save=save)  # noqa: E731
    else:
        call = lambda: ns["lookupscan"](pairs, t, *counters, save=save)  # noqa: E731
    run_checked(ns, data_root, command, call, problems, points, [m for m, _ in pairs])


# -- counting in time --------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), command=st.sampled_from(["timescan", "loopscan", "ct", "sct"]))
def test_timed_scans(accepting, data, command):
    ns, data_root = accepting
    s = Session(ns, data)
    t, counters, save = data.draw(count_time), s.counters(), data.draw(flag)
    npoints, sleep = data.draw(intervals), data.draw(st.one_of(st.sampled_from([0.0, 0.01]), num))
    problems = set()
    if command in ("timescan", "loopscan") and not is_whole(npoints, 0 if command == "timescan" else 1):
        problems.add("npoints")
    if command in ("timescan", "loopscan") and not (is_number(sleep) and sleep >= 0):
        problems.add("sleep time")
    problems |= counting_problems(ns, t, counters, save)
    call = {"timescan": lambda: ns["timescan"](t, *counters, npoints=npoints, sleep_time=sleep, save=save),
            "loopscan": lambda: ns["loopscan"](npoints, t, *counters, sleep_time=sleep, save=save),
            "ct": lambda: ns["ct"](t, *counters, save=save),
            "sct": lambda: ns["sct"](t, *counters, save=save)}[command]
    run_checked(ns, data_root, command, call, problems)


# -- continuous scans --------------------------------------------------------------------------
PHYSICAL = ("velocity", "limit", "exposure", "too large to count")


@FUZZ
@given(data=st.data())
def test_fscan(accepting, data):
    ns, data_root = accepting
    s = Session(ns, data)
    motor, start, step, npoints = s.axis(), data.draw(num), data.draw(num), data.draw(intervals)
    t, save = data.draw(count_time), data.draw(flag)
    counters = data.draw(st.lists(st.sampled_from([ns["pilatus"], ns["diode1"], "nope", None]), max_size=2))
    problems = set()
    if not isinstance(motor, Axis):
        problems.add("motor")
    if not is_number(start):
        problems.add("start")
    if not is_number(step) or step == 0:
        problems.add("step")
    if not is_whole(npoints, 1, MAX_FRAMES):
        problems.add("npoints")
    if not (is_number(t) and t > 0):
        problems |= {"count time", "acquisition time"}
    if any(c is not ns["pilatus"] for c in counters):
        problems |= counter_problems(ns, [c for c in counters if c is not ns["pilatus"]])
    if not isinstance(save, (bool, np.bool_)):
        problems.add("save")
    call = lambda: ns["fscan"](motor, start, step, npoints, t, *counters, save=save)  # noqa: E731
    run_checked(ns, data_root, "fscan", call, problems, physical=PHYSICAL)


@FUZZ
@given(data=st.data())
def test_xrdct(accepting, data):
    ns, data_root = accepting
    stages = [ns["omega"], ns["x"], ns["z"]]
    omega, x, z = (data.draw(mostly(st.just(stage), st.sampled_from([ns["m4"], stage, "x", None])))
                   for stage in stages)
    x_start, x_stop = (data.draw(mostly(st.floats(-2, 2), num)) for _ in range(2))
    n_x = data.draw(mostly(st.integers(1, 6), intervals))
    n_omega = data.draw(mostly(st.one_of(st.none(), st.integers(1, 8)), intervals))
    zs = data.draw(mostly(st.one_of(st.lists(st.floats(-1, 1), min_size=1, max_size=2), st.floats(-1, 1)),
                          st.one_of(position_lists, num)))
    t = data.draw(mostly(st.sampled_from([0.01, 0.1, 0.2]), count_time))
    omega_range = data.draw(mostly(st.sampled_from([180, 360, 1e-3]), num))
    fast_axis = data.draw(mostly(st.sampled_from(["omega", "x"]), st.sampled_from(["z", None, ["x"]])))
    snake, save = data.draw(flag), data.draw(flag)
    detector = data.draw(mostly(st.sampled_from([None, ns["pilatus"]]), st.sampled_from([ns["diode1"], 5])))
    problems = {f"{what} must be an axis" for what, a in (("omega", omega), ("x", x), ("z", z))
                if not isinstance(a, Axis)}
    if not problems and len({omega.name, x.name, z.name}) < 3:
        problems.add("given twice")
    if not is_number(x_start) or not is_number(x_stop) or float(x_start) == float(x_stop):
        problems |= {"x_start", "x_stop"}
    if not is_whole(n_x, 1, MAX_FRAMES):
        problems.add("n_x")
    if n_omega is not None and not is_whole(n_omega):
        problems.add("n_omega")
    if not is_number(omega_range) or omega_range <= 0:
        problems.add("omega_range")
    z_list = [zs] if isinstance(zs, numbers.Real) else zs
    try:
        z_ok = np.ndim(z_list) == 1 and not isinstance(z_list, (str, dict)) and len(z_list) > 0
    except ValueError:
        z_ok = False
    if not z_ok or not all(is_number(v) for v in z_list):
        problems.add("z_positions")
    if not problems:
        n_om = math.ceil(n_x * math.pi / 2) if n_omega is None else n_omega
        if int(n_x) * int(n_om) * len(z_list) > MAX_FRAMES:
            problems.add("frames is more than")
    if not (is_number(t) and t > 0):
        problems |= {"count time", "acquisition time"}
    if fast_axis not in ("omega", "x"):
        problems.add("fast_axis")
    problems |= {what for what, v in (("snake", snake), ("save", save)) if not isinstance(v, (bool, np.bool_))}
    if detector is not None and detector is not ns["pilatus"]:
        problems.add("detector")
    call = lambda: ns["xrdct"](omega, x, z, x_start, x_stop, n_x, zs, t, n_omega=n_omega, snake=snake,  # noqa: E731
                               omega_range=omega_range, fast_axis=fast_axis, detector=detector, save=save)
    run_checked(ns, data_root, "xrdct", call, problems, physical=PHYSICAL + ("readout",))


# -- valid scans, run for real -----------------------------------------------------------------
@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(["ascan", "dscan", "pointscan", "amesh"]),
       start=st.floats(-5, 5), stop=st.floats(-5, 5), n=st.integers(1, 3))
def test_valid_scans_run_and_visit_the_points_asked(scan_session, command, start, stop, n):
    ns = scan_session
    m4, m0 = ns["m4"], ns["m0"]
    ns["mv"](m4, 1.0)
    if command == "pointscan":
        scan, expected = ns["pointscan"](m4, [start, stop], 0, ns["diode1"]), [start, stop]
    elif command == "amesh":
        scan = ns["amesh"](m4, start, stop, n, m0, 0, 0.001, 1, 0, ns["diode1"], backnforth=True)
        line = np.linspace(start, stop, n + 1)
        expected = np.concatenate([line, line[::-1]])
    else:
        scan = ns[command](m4, start, stop, n, 0, ns["diode1"])
        offset = 1.0 if command == "dscan" else 0.0
        expected = np.linspace(start + offset, stop + offset, n + 1)
    recorded = scan.get_data()["m4"]
    assert recorded == pytest.approx(expected, abs=1e-6)  # m4 counts a million steps per unit
    assert scan.end_reason == "SUCCESS" and len(scan.get_data()["diode1"]) == len(expected)
    assert m4.position == (1.0 if command == "dscan" else pytest.approx(expected[-1], abs=1e-6))


# -- regressions: each bug found, as a plain example -------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    # MemoryError from numpy (and a swapping machine for the mesh's 10**12 rows)
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 10**12, 0), ValueError,
     "ascan: intervals must be at most 9,999,999 (SCAN_LIMITS.max_points - 1), got 1000000000000"),
    (lambda ns: ns["amesh"](ns["m0"], 0, 1, 10**6, ns["m1"], 0, 1, 10**6, 0), ValueError,
     "amesh: 1,000,002,000,001 points is more than 10,000,000 (SCAN_LIMITS.max_points)"),
    (lambda ns: ns["fscan"](ns["omega"], 0, 0.001, 10**12, 0.01), ValueError,
     "fscan: npoints must be at most 2,000,000,000 (SCAN_LIMITS.max_frames), got 1000000000000"),
    (lambda ns: ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 4, [0], 0.1, n_omega=10**12), ValueError,
     "xrdct: 4,000,000,000,000 frames is more than 2,000,000,000 (SCAN_LIMITS.max_frames)"),
    # numpy's "inhomogeneous shape" ValueError, naming neither command nor argument
    (lambda ns: ns["lookupscan"]([(ns["m0"], [[1, 2], [3]])], 0), ValueError,
     "lookupscan: m0: positions must be a non-empty list of numbers, got [[1, 2], [3]]"),
    (lambda ns: ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 4, [[0], [1, 2]], 0.1), ValueError,
     "xrdct: z_positions: positions must be a non-empty list of numbers, got [[0], [1, 2]]"),
    # accepted: 0.0 meant "until Ctrl-C", "no" meant True
    (lambda ns: ns["timescan"](0.1, npoints=0.0), ValueError, "timescan: npoints must be a whole number >= 0, got 0.0"),
    (lambda ns: ns["amesh"](ns["m0"], 0, 1, 1, ns["m1"], 0, 1, 1, 0, backnforth="no"), TypeError,
     "amesh: backnforth must be True or False, got 'no'"),
    (lambda ns: ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 4, [0], 0.1, snake="no"), TypeError,
     "xrdct: snake must be True or False, got 'no'"),
    (lambda ns: ns["ascan"](ns["m0"], 0, 1, 1, 0, save="no"), TypeError, "ascan: save must be True or False, got 'no'"),
    # AttributeError ('int' object has no attribute 'name') after the checks
    (lambda ns: ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 4, [0], 0.1, detector=5), TypeError,
     "xrdct: detector must be a detector such as a Pilatus, got 5"),
    # OverflowError from round(): finite in user units, infinite in steps
    (lambda ns: ns["dscan"](ns["omega"], 1e308, 1.7e308, 4, 0), LimitError,
     "dscan: omega: target 1.7e+308 is too large to count in steps"),
    (lambda ns: ns["umv"](ns["omega"], 1.7e308), LimitError, "omega: target 1.7e+308 is too large to count in steps"),
])
def test_regressions(accepting, call, error, message):
    ns, data_root = accepting
    before = snapshot(ns)
    with pytest.raises(error) as info:
        call(ns)
    assert str(info.value) == message
    assert snapshot(ns) == before and not list(data_root.rglob("*"))
