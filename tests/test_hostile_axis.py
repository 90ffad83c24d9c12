"""Extreme numbers in every axis field: refused where they enter, or every motion stays finite.

hypothesis writes axes whose fields take values from 1e-300 to 1e300 (finite, so the YAML
checks for NaN and infinity let them through), and targets as extreme: loading refuses a field
with a ConfigError naming it, or the axis is built and every move planned to any target is
either refused before anything moves or has a finite duration and path within the limits.
Run-time setters (velocity, acceleration, acctime, limits, offset) hold the same bounds, and
no move planned lasts longer than a week (MAX_MOVE_S).
"""
from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.errors import AxisError, LimitError
from bliss_lite.controllers.motion import plan_motion
from bliss_lite.controllers.motion_bounds import MAX_MOVE_S
from bliss_lite.controllers.trajectory import Trajectory

EXTREME = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([1e-300, 1e300, -1e300, 1e-12, 1e15, 1e17, 2.0**53, 1e-6, 5e-7]))
POSITIVE = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([1e-300, 1e300, 1e-7, 1e16]))


@st.composite
def axis_node(draw):
    node = {"name": "ax", "steps_per_unit": draw(st.one_of(EXTREME.filter(lambda v: v != 0), st.just(1000.0))),
            "velocity": draw(POSITIVE), "acceleration": draw(POSITIVE)}
    for key in ("backlash", "tolerance", "low_limit", "high_limit", "position"):  # position: the mockup's start
        if draw(st.booleans()):
            node[key] = draw(EXTREME)
    if draw(st.booleans()):
        node["sign"] = draw(st.sampled_from([1, -1, 0, 2]))
    if "low_limit" in node and "high_limit" in node:
        node["low_limit"], node["high_limit"] = sorted((node["low_limit"], node["high_limit"]))
    return node


def build(node, tmp):
    root = Path(tmp) / "config"
    root.mkdir(exist_ok=True)
    (root / "motors.yml").write_text(yaml.safe_dump([{"class": "mockup", "name": "ctl", "axes": [node]}]))
    return Config(root, SettingsStore(Path(tmp) / "run")).get("ax")


def assert_finite_plan(axis, target):
    try:
        plan = plan_motion(axis, target)
    except (ValueError, LimitError, AxisError) as exc:  # refused before anything moves, naming the axis
        assert str(exc).startswith("ax: ") and "\n" not in str(exc)
        return
    velocity, acceleration = (abs(v * axis.steps_per_unit) for v in (axis.velocity, axis.acceleration))
    start = float(axis.controller.read_position(axis))
    low, high = axis.dial_limits
    for steps in plan.legs:
        trajectory = Trajectory.point_to_point(0.0, start, float(steps), velocity, acceleration)
        assert math.isfinite(trajectory.duration) and trajectory.duration <= MAX_MOVE_S
        for t in (0.0, trajectory.duration / 3, trajectory.duration / 2, trajectory.duration):
            assert math.isfinite(trajectory.position(t)) and math.isfinite(trajectory.velocity(t))
        assert low - 1e-6 <= steps / axis.steps_per_unit <= high + 1e-6
        start = float(steps)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=axis_node(), targets=st.lists(EXTREME, min_size=1, max_size=3))
def test_extreme_axis_fields_are_refused_or_every_move_is_finite(node, targets):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            axis = build(node, tmp)
        except ConfigError as exc:
            message = str(exc)
            assert "motors.yml" in message and "axis 'ax'" in message and "\n" not in message
            return
        for target in targets:
            assert_finite_plan(axis, target)


def test_the_overflows_once_seen_are_refused_where_they_enter(tmp_path):
    for field, value, says in [("velocity", 1e300, "velocity 1e+300 is 1e+303 steps/s"),
                               ("acceleration", 1e-300, "acceleration 1e-300 is 1e-297 steps/s^2"),
                               ("high_limit", 1e300, "high_limit 1e+300 is 1e+303 steps"),
                               ("position", 1e300, "position 1e+300 is 1e+303 steps")]:  # the mockup's start
        node = {"name": "ax", "steps_per_unit": 1000, "velocity": 10, "acceleration": 100, field: value}
        with pytest.raises(ConfigError, match=re.escape(f"axis 'ax': {says}")):
            build(node, tmp_path)


@pytest.mark.parametrize("setter, value", [("velocity", 1e300), ("velocity", 1e-300), ("acceleration", 1e300),
                                           ("acceleration", 1e-300), ("acctime", 1e-300), ("acctime", 1e300),
                                           ("limits", (-1e300, 1e300)), ("offset", 1e300)])
def test_run_time_setters_hold_the_same_bounds(tmp_path, setter, value):
    axis = build({"name": "ax", "steps_per_unit": 1000, "velocity": 10, "acceleration": 100,
                  "low_limit": -50, "high_limit": 50}, tmp_path)
    before = (axis.velocity, axis.acceleration, axis.limits, axis.offset)
    with pytest.raises(ValueError, match=r"^ax: "):
        setattr(axis, setter, value)
    assert (axis.velocity, axis.acceleration, axis.limits, axis.offset) == before
    axis.move(1.0)  # nothing else stopped: the axis still moves
    assert axis.position == 1.0


def test_a_move_that_would_take_longer_than_a_week_is_refused_before_anything_moves(tmp_path):
    """The lowest speed over the largest distance once planned a move of ~9e21 s."""
    axis = build({"name": "ax", "steps_per_unit": 1, "velocity": 1e-6, "acceleration": 1e-6, "position": 0.0}, tmp_path)
    with pytest.raises(AxisError) as error:
        axis.move(2.0**52)
    message = str(error.value)
    assert message.startswith("ax: move to 4.5036e+15 refused: it would take ") and "\n" not in message
    assert "over the 604800 s (a week) a move may last" in message
    assert "distance 4.5036e+15 steps at velocity 1e-06 steps/s" in message
    assert axis.position == 0.0  # nothing moved
    assert axis.controller.read_position(axis) == 0.0
    axis.velocity, axis.acceleration = 100.0, 1000.0  # nothing else stopped: a short move is made
    axis.move(3.0)
    assert axis.position == 3.0
