"""Axes and counters behind a real Tango device server (simulators/tango_server.py, no database),
started by the tests in its own process: moves, limits, backlash, groups, Ctrl-C, scans, faults."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

from bliss_lite.controllers.errors import AxisFault, LimitError
from bliss_lite.controllers.group import Group
from tests.conftest import CONFIG_DIR, write_config

tango = pytest.importorskip("tango", reason="pytango is not installed (pip install -e .[test])")

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "simulators" / "tango_server.py"


class TangoServer:
    """The simulated device server as a child process; `restart` brings it back on its port."""

    def __init__(self, port=0):
        self.process = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port),
                                         "--motors", "sim/motor/1,sim/motor/2"],
                                        stdout=subprocess.PIPE, text=True)
        for line in self.process.stdout:
            if line.startswith("LISTENING"):
                self.port = int(line.split()[1])
                return
        self.kill()
        raise RuntimeError("tango_server.py did not start")

    def url(self, device):
        return f"tango://127.0.0.1:{self.port}/{device}#dbase=no"

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()


@pytest.fixture
def server():
    process = TangoServer()
    yield process
    process.kill()


@pytest.fixture
def tango_session(server, tmp_path, shared_redis, data_root, monkeypatch):
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    root = tmp_path / "cfg"
    shutil.copytree(CONFIG_DIR / "test", root / "test")
    write_config(root, {"cs/tango.yml": f"""
- class: tango_motor
  name: tango_ctrl
  timeout: 0.5
  axes:
    - {{name: tmot, device: "{server.url('sim/motor/1')}", steps_per_unit: 1000, velocity: 20, acceleration: 200,
       backlash: 0.5, low_limit: -50, high_limit: 50}}
    - {{name: tmot2, device: "{server.url('sim/motor/2')}", steps_per_unit: 1000, velocity: 10, acceleration: 100}}
- {{name: tcnt, class: tango_attribute_counter, device: "{server.url('sim/counter/1')}", attribute: Value,
   unit: mA, timeout: 0.5}}
""", "sessions/cs.yml": """- name: cs
  class: session
  setup-file: cs_setup.py
  config-objects: [m0, diode1, tmot, tmot2, tcnt]
""", "sessions/cs_setup.py": "# nothing to set up\n"})
    from bliss_lite.shell.runner import open_session

    _, namespace = open_session("cs", root)
    return namespace


def device(server, name):
    proxy = tango.DeviceProxy(server.url(name))
    proxy.set_timeout_millis(2000)
    return proxy


def test_move_reads_back_and_sets_the_device(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(3.0)
    assert tmot.position == pytest.approx(3.0) and tmot.state.READY
    proxy = device(server, "sim/motor/1")
    assert proxy.read_attribute("Position").value == pytest.approx(3.0)
    assert proxy.read_attribute("Velocity").value == 20.0 and proxy.read_attribute("Acceleration").value == 200.0
    tmot.offset = 1.0  # user = dial + 1: the device still gets dial positions
    tmot.move(5.0)
    assert proxy.read_attribute("Position").value == pytest.approx(4.0)


def test_limits_are_refused_before_motion(tango_session, server):
    tmot = tango_session["tmot"]
    with pytest.raises(LimitError, match="tmot"):
        tmot.move(60.0)
    assert device(server, "sim/motor/1").read_attribute("Position").value == 0.0


def test_backlash_approaches_from_below(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(2.0)
    tmot.move(-1.0)  # negative move: overshoots by the backlash and comes back
    assert tmot.position == pytest.approx(-1.0)


def test_group_move_and_ctrl_c_stop_every_device(tango_session, server):
    tmot, tmot2 = tango_session["tmot"], tango_session["tmot2"]
    group = Group(tmot, tmot2)
    group.move({tmot: 2.0, tmot2: -1.0})
    assert (tmot.position, tmot2.position) == pytest.approx((2.0, -1.0))
    main = gevent.getcurrent()
    gevent.spawn_later(0.2, main.throw, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        group.move({tmot: 40.0, tmot2: 30.0})
    for name, axis, target in (("sim/motor/1", tmot, 40.0), ("sim/motor/2", tmot2, 30.0)):
        assert device(server, name).read_attribute("StopCount").value >= 1  # the Stop command arrived
        gevent.sleep(0.3)
        assert axis.state.READY and axis.position < target


def test_dscan_returns_to_start_and_counter_reads(tango_session):
    ns = tango_session
    ns["tmot"].move(1.0)
    scan = ns["dscan"](ns["tmot"], -1, 1, 4, 0.01, ns["tcnt"])
    data = scan.get_data()
    assert data["tmot"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert data["tcnt"] == pytest.approx([100.0] * 5, abs=5)
    assert ns["tmot"].position == pytest.approx(1.0)
    counted = ns["ct"](0.01, ns["tcnt"])
    assert counted.get_data()["tcnt"][0] == pytest.approx(100.0, abs=5)


def test_server_killed_mid_move_is_a_named_failure_then_reconnected(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(40.0, wait=False)
    gevent.sleep(0.2)
    port = server.port
    server.kill()
    start = time.monotonic()
    with gevent.Timeout(10):
        with pytest.raises(AxisFault, match=r"tmot: Tango device tango://127.0.0.1:\d+/sim/motor/1#dbase=no: .* failed"):
            tmot.wait_move()
    assert time.monotonic() - start < 3.0
    again = TangoServer(port)  # the device server comes back on the same port
    try:
        with gevent.Timeout(20):
            while True:  # the client reconnects by itself once the server answers
                try:
                    position = tmot.controller.read_position(tmot)
                    break
                except AxisFault:
                    gevent.sleep(0.2)
        assert position == 0.0  # a fresh simulator
        tmot.sync_hard()
        tmot.move(1.0)
        assert tmot.position == pytest.approx(1.0)
    finally:
        again.kill()
