"""Axes on the mockup controller: user/dial, limits, steps, backlash, states, groups, stop."""
import time

import gevent
import pytest
from conftest import CONFIG_DIR

from bliss_lite.config import Config
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.errors import AxisError, AxisFault, LimitError
from bliss_lite.controllers.group import Group


def test_user_is_sign_dial_plus_offset(config):
    m0 = config.get("m0")
    m0.move(2.0)
    m0.position = 10.0  # SPEC's `set`: the offset changes, nothing moves
    assert m0.offset == pytest.approx(8.0) and m0.dial == pytest.approx(2.0)
    m0.sign = -1  # the user position is kept, the offset follows
    assert m0.position == pytest.approx(10.0) and m0.offset == pytest.approx(12.0)
    m0.move(11.0)  # user +1 is dial -1 with sign -1
    assert m0.dial == pytest.approx(1.0)
    assert m0.position == pytest.approx(-1 * m0.dial + m0.offset)


def test_limits_are_dial_and_shown_in_user_units(config):
    m0 = config.get("m0")  # dial limits -100..100
    m0.position = 5.0  # offset 5
    assert m0.limits == pytest.approx((-95.0, 105.0))
    m0.sign = -1  # user = -dial + 5: limits swap
    assert m0.limits == pytest.approx((-95.0, 105.0))
    assert m0.dial_limits == (-100.0, 100.0)
    m0.limits = (-10, 20)
    assert m0.limits == pytest.approx((-10.0, 20.0))
    assert m0.dial_limits == pytest.approx((-15.0, 15.0))


def test_move_beyond_limit_is_refused_before_motion(config):
    m0 = config.get("m0")
    with pytest.raises(LimitError, match=r"^m0: target 150 beyond high limit 100$"):
        m0.move(150)
    with pytest.raises(LimitError, match=r"^m0: target -101 beyond low limit -100$"):
        m0.move(-101)
    assert m0.position == 0.0 and m0.state.READY and not m0.is_moving


def test_backlash_approach_counts_in_the_limit_check(config):
    m2 = config.get("m2")  # backlash 0.5: final approach always positive
    with pytest.raises(LimitError, match="backlash approach from -100.3, beyond low limit -100"):
        m2.move(-99.8)
    assert m2.position == 0.0


def legs_of(axis, target):
    """Run a move and return the trajectories (steps) the controller executed, in order."""
    seen, asked = [], time.monotonic()
    axis.move(target, wait=False)
    while axis.is_moving:
        trajectory = axis.controller._trajectories[axis]
        if not seen or seen[-1] is not trajectory:
            seen.append(trajectory)
        gevent.sleep(0.001)
    return [t for t in seen if t.segments and t.start >= asked]


def test_backlash_is_a_second_move_from_the_same_side(config):
    m2 = config.get("m2")  # backlash 0.5, 1000 steps/unit: final approach always positive
    m2.velocity, m2.acceleration = 20.0, 400.0
    first, second = legs_of(m2, -1.0)
    assert first.end_position == -1500 and second.end_position == -1000  # overshoot, then back up
    assert second.position(second.start) == -1500
    assert all(seg.v0 >= 0 for seg in second.segments[1:]) and second.segments[0].a > 0
    assert second.start >= first.end
    assert m2.position == -1.0
    (only,) = legs_of(m2, 1.0)  # a positive move needs no second leg
    assert only.end_position == 1000 and m2.position == 1.0
    assert m2.sign == 1
    m2.sign = -1  # backlash is mechanical (dial side): user +1 is dial -1, still approached from below
    first, second = legs_of(m2, m2.position + 1.0)
    assert second.end_position - first.end_position == 500


def test_targets_are_rounded_to_whole_steps(config):
    m3 = config.get("m3")  # steps_per_unit -500 (a negative value is allowed)
    m3.move(0.1234)
    assert m3.dial == pytest.approx(0.124)  # 61.7 steps -> 62
    assert m3.controller.read_position(m3) == pytest.approx(-62)
    assert m3.position == pytest.approx(0.124)


def test_position_during_a_move_is_the_analytic_profile(config):
    m1 = config.get("m1")  # 1000 steps/unit
    m1.velocity, m1.acceleration = 10.0, 100.0  # 0.1 s ramps of 0.5, then 10 units/s
    m1.move(3.0, wait=False)
    gevent.sleep(0.05)
    trajectory = m1.controller._trajectories[m1]
    assert trajectory.duration == pytest.approx(0.1 + 2.0 / 10.0 + 0.1)
    for _ in range(5):
        t1 = time.monotonic()
        position = m1.position
        t2 = time.monotonic()
        formula = [_ramp_cruise(t - trajectory.start) for t in (t1, t2)]
        assert formula[0] - 1e-9 <= position <= formula[1] + 1e-9
        assert m1.state.MOVING
        gevent.sleep(0.02)
    m1.wait_move()
    assert m1.position == 3.0 and m1.state.READY


def _ramp_cruise(t, a=100.0, v=10.0):
    """Textbook position of the move above (units) t seconds after its start, before braking."""
    t_acc = v / a
    return 0.5 * a * t * t if t <= t_acc else 0.5 * a * t_acc**2 + v * (t - t_acc)


def test_stop_decelerates_with_the_acceleration(config):
    m1 = config.get("m1")
    m1.velocity, m1.acceleration = 10.0, 50.0  # 0.2 s to full speed
    m1.move(50.0, wait=False)
    gevent.sleep(0.5)  # cruising by now
    m1.stop()
    braking = m1.controller._trajectories[m1]
    (segment,) = braking.segments
    assert segment.v0 == pytest.approx(10_000.0)  # steps/s: it was cruising at 10 units/s
    assert segment.a == pytest.approx(-50_000.0)  # braking with the configured acceleration
    assert braking.duration == pytest.approx(0.2)  # v / a
    assert braking.end_position == round(segment.x0 + 10_000.0**2 / (2 * 50_000.0))  # x + v^2/2a, whole step
    assert m1.state.READY and not m1.is_moving
    assert m1.position == braking.end_position / 1000


def test_group_moves_start_and_stop_together(config):
    m0, m1 = config.get("m0"), config.get("m1")
    group = Group(m0, m1)
    group.move({m0: 3.0, m1: -2.0})
    assert (m0.position, m1.position) == (3.0, -2.0)
    with pytest.raises(LimitError):  # checked for every axis before anything moves
        group.move({m0: 4.0, m1: 500.0})
    assert (m0.position, m1.position) == (3.0, -2.0)
    m0.velocity = m1.velocity = 5.0
    m0.acceleration = m1.acceleration = 50.0
    group.move({m0: 40.0, m1: -40.0}, wait=False)
    gevent.sleep(0.3)
    trajectories = [m0.controller._trajectories[a] for a in (m0, m1)]
    assert trajectories[0].start == trajectories[1].start  # started together
    m1.stop()  # stopping one member stops the group move
    assert not m0.is_moving and not m1.is_moving
    stops = [m0.controller._trajectories[a] for a in (m0, m1)]
    assert stops[0].start == stops[1].start  # braked together
    assert 0 < m0.position < 40 and -40 < m1.position < 0


def test_fault_on_one_axis_stops_the_group(config):
    m0, m1 = config.get("m0"), config.get("m1")
    for axis in (m0, m1):
        axis.velocity, axis.acceleration = 5.0, 50.0
    m1.acceleration = 10.0  # m1 brakes for 0.5 s: the order below has room on a loaded machine
    group = Group(m0, m1)
    group.move({m0: 30.0, m1: 30.0}, wait=False)
    gevent.sleep(0.6)  # both at full speed
    m0.controller.set_fault(m1)
    m1_braking = m0.controller._trajectories[m1]
    with pytest.raises(AxisFault, match="m1: FAULT"):
        group.wait_move()
    braking = m0.controller._trajectories[m0]
    # m0 braked as soon as the fault was seen, not after m1's own braking ended
    assert m1_braking.start <= braking.start < m1_braking.end
    assert braking.segments and braking.segments[0].v0 == pytest.approx(5000.0)
    assert not m0.is_moving and m0.position < 30.0 and m0.state.READY
    assert m1.state.FAULT
    with pytest.raises(AxisFault, match="m1: controller reports FAULT"):
        m1.move(0)
    m0.controller.set_fault(m1, False)
    m1.move(0)
    assert m1.position == 0


def test_limit_switch_gives_limpos(config):
    m0 = config.get("m0")
    m0.controller.set_hw_limits(m0, -5, 5)
    with pytest.raises(AxisFault, match="LIMPOS"):
        m0.move(8)
    assert m0.dial == pytest.approx(5.0)
    assert m0.state.LIMPOS and m0.state.READY
    m0.move(0)
    assert m0.state.READY and not m0.state.LIMPOS


def test_disabled_axis_refuses_to_move(config):
    m0 = config.get("m0")
    m0.disable()
    assert m0.state.DISABLED
    with pytest.raises(AxisError, match="m0: axis is disabled"):
        m0.move(1)
    m0.enable()
    m0.move(1)
    assert m0.position == 1


def test_bad_arguments(config):
    m0 = config.get("m0")
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValueError, match="m0: target must be a finite number"):
            m0.move(bad)
    with pytest.raises(ValueError, match="m0: velocity must be > 0"):
        m0.velocity = 0
    m0.move(1, wait=False)
    with pytest.raises(AxisError, match="m0: already moving|cannot set the position while moving"):
        m0.move(2)
    m0.wait_move()


def test_settings_survive_a_restart(run_dir):
    first = Config(CONFIG_DIR, SettingsStore(run_dir))
    m0, m1 = first.get("m0"), first.get("m1")
    m0.move(7.5)
    m1.position = 20.0  # offset 20
    m1.sign = -1
    m1.limits = (-30, 30)
    again = Config(CONFIG_DIR, SettingsStore(run_dir))
    m0b, m1b = again.get("m0"), again.get("m1")
    assert m0b.position == 7.5  # the mockup's position
    assert (m1b.sign, m1b.offset, m1b.position) == (-1, 20.0, 20.0)
    assert m1b.limits == pytest.approx((-30.0, 30.0))


def test_position_outside_tolerance_is_a_fault(config):
    m1 = config.get("m1")  # tolerance 1e-4, 1000 steps/unit
    m1.controller.lose_steps(m1, 3)
    with pytest.raises(AxisFault, match=r"m1: did not reach its target: dial 1.997 instead of 2 \(tolerance 0.0001\)"):
        m1.move(2.0)
    m1.move(2.0)  # the next move gets there
    assert m1.position == 2.0


def test_active_measurement_group_persists_per_session(run_dir, tmp_path):
    from conftest import write_config

    from bliss_lite.shell.runner import open_session

    root = write_config(tmp_path / "cfg", {
        "c.yml": "- name: d1\n  class: simulation_diode\n"
                 "- name: g1\n  class: measurement_group\n  counters: [$d1]\n"
                 "- name: g2\n  class: measurement_group\n  counters: [$d1]\n"
                 "- name: s\n  class: session\n  config-objects: [d1, g1, g2]\n",
    })
    _, ns = open_session("s", root)
    assert ns["g1"].is_active  # the first group by default
    ns["g2"].set_active()
    _, ns = open_session("s", root)
    assert ns["g2"].is_active and not ns["g1"].is_active


def test_numpy_numbers_are_positions(config):
    import numpy as np

    m0 = config.get("m0")
    for target in (np.int64(2), np.float32(1.5), np.float64(-0.25)):
        m0.move(target)
        assert m0.position == float(target)
    m0.rmove(np.int32(1))
    assert m0.position == 0.75
    with pytest.raises(ValueError, match="m0: target must be a finite number"):
        m0.move(np.float64("nan"))
