"""Axes behind a real socket: the motor controller simulator process and its driver, with faults."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import gevent
import pytest

from bliss_lite.config import Config
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.errors import AxisFault
from tests.conftest import write_config

SERVER = Path(__file__).resolve().parents[1] / "simulators" / "motor_server.py"


@pytest.fixture
def motor_server():
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("LISTENING"), line
    yield process, int(line.split()[1])
    process.kill()
    process.wait(10)


def inject(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as link:
        link.sendall(f"INJECT {line}\n".encode())
        assert link.makefile().readline().startswith("OK")


@pytest.fixture
def axes(motor_server, tmp_path):
    _, port = motor_server
    root = write_config(tmp_path / "cfg", {"motors.yml": f"""
- class: socket_motor
  name: remote_ctrl
  server: 127.0.0.1:{port}
  timeout: 0.5
  stall_timeout: 0.3
  axes:
    - {{name: sx, steps_per_unit: 1000, velocity: 20, acceleration: 200, low_limit: -50, high_limit: 50}}
    - {{name: sy, steps_per_unit: -500, velocity: 10, acceleration: 100, position: 1.5}}
"""})
    config = Config(root, SettingsStore(tmp_path / "run"))
    return config.get("sx"), config.get("sy"), port


def test_axes_move_read_and_stop_over_the_socket(axes):
    sx, sy, _ = axes
    assert sy.dial == pytest.approx(1.5)  # its initial position went to the controller
    sx.move(2.0)
    assert sx.position == pytest.approx(2.0) and sx.state.READY
    sx.move(40.0, wait=False)
    gevent.sleep(0.3)
    during = sx.position
    assert 2.0 < during < 40.0 and sx.state.MOVING
    sx.stop()
    stopped = sx.position
    assert stopped < 40.0 and sx.state.READY
    gevent.sleep(0.1)
    assert sx.position == stopped  # it braked to rest and stays there
    sy.move(-1.0)
    assert sy.position == pytest.approx(-1.0)


def test_a_dropped_link_is_reconnected_for_queries(axes):
    sx, _, port = axes
    sx.move(1.0)
    inject(port, "drop")
    assert sx.position == pytest.approx(1.0)  # the query is retried on a fresh connection


def test_a_silent_controller_is_a_named_fault_not_a_hang(axes):
    sx, _, port = axes
    _ = sx.position  # the controller answers: connected
    inject(port, "delay 2")
    with gevent.Timeout(5):  # a hang guard
        with pytest.raises(AxisFault, match=r"sx: controller 'remote_ctrl' at 127.0.0.1:\d+: no reply to POS within 0.5 s"):
            sx.controller.read_position(sx)
    inject(port, "clear")
    assert sx.controller.read_position(sx) == pytest.approx(0.0)


def test_a_garbled_reply_is_named(axes):
    sx, _, port = axes
    _ = sx.position  # the controller answers: connected
    inject(port, "garble 1")
    with pytest.raises(AxisFault, match="sx: .*garbled reply to POS"):
        sx.controller.read_position(sx)
    assert sx.controller.read_position(sx) == pytest.approx(0.0)  # back in step afterwards


def test_an_axis_stalled_mid_move_is_stopped_and_reported(axes):
    sx, _, port = axes
    sx.move(30.0, wait=False)
    gevent.sleep(0.2)
    inject(port, "stall sx")
    with gevent.Timeout(10):
        with pytest.raises(AxisFault, match=r"sx: stalled at dial [\d.]+: MOVING but no motion for 0.3 s"):
            sx.wait_move()
    assert sx.state.READY and 0 < sx.position < 30.0


def test_limit_switch_and_fault_stop_the_move_with_a_message(axes):
    sx, _, port = axes
    _ = sx.position  # the axis exists on the controller once the driver has announced it
    inject(port, "limit sx none 5000")  # a switch at dial 5
    with pytest.raises(AxisFault, match="sx: .*LIMPOS.* at 5"):
        sx.move(10.0)
    inject(port, "clear")
    sx.move(0.0)
    inject(port, "fault sx")
    with pytest.raises(AxisFault, match="sx: .*MOVE refused: axis in FAULT"):
        sx.move(1.0)


def test_a_dead_controller_is_reported_at_once(axes, motor_server):
    sx, _, _ = axes
    _ = sx.position  # the controller answers: connected
    process, _ = motor_server
    process.kill()
    process.wait(10)
    with gevent.Timeout(5):
        with pytest.raises(AxisFault, match=r"sx: (cannot reach|controller 'remote_ctrl' .*link lost)"):
            sx.controller.read_position(sx)


def test_a_controller_dying_mid_move_is_the_error_reported(axes, motor_server):
    sx, _, _ = axes
    sx.move(40.0, wait=False)
    gevent.sleep(0.2)
    process, _ = motor_server
    process.kill()
    process.wait(10)
    with gevent.Timeout(10):
        with pytest.raises(AxisFault, match=r"sx: (cannot reach controller 'remote_ctrl'|controller 'remote_ctrl' .*link lost)"):
            sx.wait_move()
