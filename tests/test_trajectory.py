"""The mockup's motion profiles against the textbook formulas."""
import math

import pytest

from bliss_lite.controllers.trajectory import Trajectory, ideal_move_time


def test_trapezoid_matches_formulas():
    # srot: 5 deg at 5 deg/s, 20 deg/s^2 -> 0.25 s ramps of 0.625 deg, 0.75 s cruise: 1.25 s
    v, a, d = 5.0, 20.0, 5.0
    t = Trajectory.point_to_point(10.0, 0.0, d, v, a)
    assert t.duration == pytest.approx(1.25)
    assert t.end == pytest.approx(11.25)
    t_acc = v / a
    for dt in (0.0, 0.1, 0.25):  # accelerating: x = a t^2 / 2
        assert t.position(10 + dt) == pytest.approx(0.5 * a * dt * dt)
        assert t.velocity(10 + dt) == pytest.approx(a * dt)
    for dt in (0.3, 0.6, 0.99):  # cruising
        assert t.position(10 + dt) == pytest.approx(0.5 * a * t_acc**2 + v * (dt - t_acc))
        assert t.velocity(10 + dt) == pytest.approx(v)
    for dt in (1.0, 1.1, 1.25):  # decelerating, symmetric to the start
        remaining = 1.25 - dt
        assert t.position(10 + dt) == pytest.approx(d - 0.5 * a * remaining**2)
    assert t.position(20.0) == d and t.velocity(20.0) == 0.0
    assert t.position(9.0) == 0.0  # before the start


def test_triangle_for_short_moves():
    v, a, d = 5.0, 20.0, 0.5  # 2 * v^2 / 2a = 1.25 > 0.5: v is never reached
    t = Trajectory.point_to_point(0.0, 1.0, 1.0 - d, v, a)
    peak = math.sqrt(d * a)
    assert t.duration == pytest.approx(2 * peak / a)
    assert t.position(peak / a) == pytest.approx(1.0 - d / 2)
    assert t.velocity(peak / a - 1e-9) == pytest.approx(-peak, rel=1e-6)
    assert max(abs(t.velocity(x * t.duration / 50)) for x in range(51)) <= peak + 1e-9


def test_deceleration_brakes_with_the_acceleration():
    t = Trajectory.deceleration(2.0, 3.0, -4.0, 8.0)
    assert t.duration == pytest.approx(0.5)  # v / a
    assert t.end_position == pytest.approx(3.0 - 16.0 / 16.0)  # x - v^2 / 2a
    assert t.velocity(2.25) == pytest.approx(-2.0)


def test_truncated_and_crossing():
    t = Trajectory.point_to_point(0.0, 0.0, 10.0, 5.0, 20.0)
    hit = t.first_crossing(4.0)
    assert t.position(hit) == pytest.approx(4.0)
    cut = t.truncated(hit)
    assert cut.end == pytest.approx(hit) and cut.end_position == pytest.approx(4.0)
    assert t.first_crossing(11.0) is None


def test_ideal_move_time():
    assert ideal_move_time(5, 5, 20) == pytest.approx(1.25)
    assert ideal_move_time(-5, 5, 20) == pytest.approx(1.25)
    assert ideal_move_time(0, 5, 20) == 0.0
