"""Axes and counters behind a real Tango device server (simulators/tango_server.py, no database)
and a real Channel Access IOC (simulators/epics_ioc.py, caproto), each started by the tests in
its own process: moves, limits, backlash, groups, Ctrl-C, scans, servers killed and restarted."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gevent
import pytest

from bliss_lite.controllers.errors import AxisFault, LimitError
from bliss_lite.controllers.group import Group
from tests.conftest import CONFIG_DIR, write_config

tango = pytest.importorskip("tango", reason="pytango is not installed (pip install -e .[test])")
pytest.importorskip("caproto", reason="caproto is not installed (pip install -e .[test])")
epics = pytest.importorskip("epics", reason="pyepics is not installed (pip install -e .[test])")

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "simulators" / "tango_server.py"
IOC = ROOT / "simulators" / "epics_ioc.py"


IOC_PVS = [f"SIM:m1{f}" for f in (".RBV", ".VAL", ".DMOV", ".MSTA", ".STOP", ".LLM", ".HLM", ".VELO", ".ACCL",
                                   ":STOPCOUNT")] + ["SIM:cnt", "SIM:ramp"]  # every channel the tests open on the IOC
ECA_DISCONN = 24 << 3  # libca's status 'Virtual circuit disconnect' (caerr.h), which pyepics does not name
RECONNECT_S = 20  # libca reconnects the channels of a restarted IOC after 8-10 s (its disconnect governor)


def free_port(udp=False):
    """A port free on 127.0.0.1 now (for TCP, and for UDP too when asked: Channel Access serves both)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if not udp:
                return port
            try:
                with socket.socket(type=socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


_CA_ENV = {}


def ca_environment():
    """This process's Channel Access settings: a private port, searched on this host only. libca
    reads them once, when the process first uses it, so they are chosen once, when the IOC
    fixture first runs: not at import, as a port chosen at collection may be taken by the time
    the module runs, minutes later in the full suite."""
    if not _CA_ENV:
        port = free_port(udp=True)
        _CA_ENV.update(EPICS_CA_SERVER_PORT=str(port), EPICS_CA_ADDR_LIST=f"127.0.0.1:{port}",
                       EPICS_CA_AUTO_ADDR_LIST="NO", EPICS_CA_REPEATER_PORT=str(free_port(udp=True)))
    return _CA_ENV


class TangoServer:
    """The simulated device server as a child process; `restart` brings it back on its port."""

    ARGS = ("--motors", "sim/motor/1,sim/motor/2")

    def __init__(self):
        self.port = 0
        self.restart()

    def restart(self):
        self.process = subprocess.Popen([sys.executable, str(SERVER), "--port", str(self.port), *self.ARGS],
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


class Ioc:
    """The simulated IOC as a child process on the module's Channel Access port."""

    PREFIX = "SIM:"

    def __init__(self):
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen([sys.executable, str(IOC), "--prefix", self.PREFIX], stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, **ca_environment()))
        for line in self.process.stdout:
            if line.startswith("LISTENING"):
                return
        self.kill()
        raise RuntimeError("epics_ioc.py did not start")

    def alive(self):
        return self.process.poll() is None

    kill = TangoServer.kill


_probes = {}


def wait_connected(names, timeout):
    """Wait until this process's channels to these PVs are connected (opened here if new)."""
    deadline = time.monotonic() + timeout
    for name in names:
        pv = _probes.get(name) or _probes.setdefault(name, epics.PV(name, auto_monitor=False))
        if not pv.wait_for_connection(timeout=max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"IOC channel {name} not connected within {timeout} s")


def ioc_fixtures(ioc_class, pvs):
    """The module's `ioc_process` and `ioc` fixtures for an IOC of `ioc_class` whose tests use
    the channels `pvs` (each test module its own IOC, on this process's one Channel Access port)."""

    @pytest.fixture(scope="module")
    def ioc_process():
        """One IOC for the module, its Channel Access settings in the environment while the
        module runs: set before this process first uses libca, undone after (other tests' children)."""
        settings = pytest.MonkeyPatch()
        for key, value in ca_environment().items():
            settings.setenv(key, value)
        process = ioc_class()
        yield process
        process.kill()
        settings.undo()

    @pytest.fixture
    def ioc(ioc_process):
        """The module's IOC, answering when the test starts: started again if an earlier test
        killed it and failed before restarting it, and every channel of the tests connected
        (reached over Channel Access, not only listening), so one test's failure never cascades
        into the next."""
        if not ioc_process.alive():
            ioc_process.start()
        wait_connected(pvs, RECONNECT_S)
        return ioc_process

    return ioc_process, ioc


ioc_process, ioc = ioc_fixtures(Ioc, IOC_PVS)


@pytest.fixture
def server():
    process = TangoServer()
    yield process
    process.kill()


@pytest.fixture
def tango_session(server, ioc, tmp_path, run_dir, shared_redis, data_root, monkeypatch):
    """The test's session: both servers' axes and counters, its settings (offsets) its own."""
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
- {{name: tramp, class: tango_attribute_counter, device: "{server.url('sim/counter/1')}", attribute: Ramp,
   mode: STATS, timeout: 0.5}}
""", "cs/epics.yml": """
- class: epics_motor
  name: epics_ctrl
  timeout: 0.5
  axes:
    - {name: emot, prefix: "SIM:m1", steps_per_unit: 1000, velocity: 20, acceleration: 200, backlash: 0.5}
- {name: ecnt, class: epics_counter, pv: "SIM:cnt", unit: mA, timeout: 0.5}
- {name: eramp, class: epics_counter, pv: "SIM:ramp", mode: STATS, timeout: 0.5}
""", "sessions/cs.yml": """- name: cs
  class: session
  setup-file: cs_setup.py
  config-objects: [m0, diode1, tmot, tmot2, tcnt, tramp, emot, ecnt, eramp]
""", "sessions/cs_setup.py": "# nothing to set up\n"})
    from bliss_lite.shell.runner import open_session

    _, namespace = open_session("cs", root)
    return namespace


def device(server, name):
    proxy = tango.DeviceProxy(server.url(name))
    proxy.set_timeout_millis(2000)
    return proxy


def tango_read(server, name, attribute):
    """An attribute of a simulated device, read by a client of its own (not the axis's)."""
    return device(server, name).read_attribute(attribute).value


def caget(name):
    """A PV read now (not a monitor's cache)."""
    return epics.caget(name, use_monitor=False)


def ctrl_c_after(seconds):
    """Ctrl-C in this greenlet after `seconds`, as the shell gets it."""
    gevent.spawn_later(seconds, gevent.getcurrent().throw, KeyboardInterrupt)


def group_move_then_ctrl_c(first, far):
    """Two axes moved together to `first` ({axis: target}), then towards `far` with Ctrl-C
    after 0.2 s: the interrupted group move raises KeyboardInterrupt."""
    group = Group(*first)
    group.move(first)
    assert [axis.position for axis in first] == pytest.approx(list(first.values()))
    ctrl_c_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        group.move(far)


def wait_reconnected(axis, timeout=RECONNECT_S):
    """The axis's position once its controller reaches the device again (it reconnects by itself)."""
    with gevent.Timeout(timeout):
        while True:
            try:
                return axis.controller.read_position(axis)
            except AxisFault:
                gevent.sleep(0.2)


def test_move_reads_back_and_sets_the_device(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(3.0)
    assert tmot.position == pytest.approx(3.0) and tmot.state.READY
    assert tango_read(server, "sim/motor/1", "Position") == pytest.approx(3.0)
    assert tango_read(server, "sim/motor/1", "Velocity") == 20.0
    assert tango_read(server, "sim/motor/1", "Acceleration") == 200.0
    tmot.offset = 1.0  # user = dial + 1: the device still gets dial positions
    tmot.move(5.0)
    assert tango_read(server, "sim/motor/1", "Position") == pytest.approx(4.0)


def test_user_position_is_an_offset_and_the_dial_is_refused(tango_session, server):
    """As for every axis, setting the user position changes only the offset (the mockup's axes
    too); redefining the dial would rewrite the device's position: refused, naming both."""
    devices = {"tmot": ("Tango device tango://.*/sim/motor/1#dbase=no", lambda: tango_read(server, "sim/motor/1",
                                                                                         "Position")),
               "emot": ("EPICS record SIM:m1", lambda: caget("SIM:m1.RBV"))}
    for name, (device_text, read_device) in devices.items():
        axis = tango_session[name]
        axis.move(1.0)
        axis.position = 10.0
        assert (axis.position, axis.offset, axis.dial) == pytest.approx((10.0, 9.0, 1.0))
        assert read_device() == pytest.approx(1.0)  # the device was not written
        axis.move(11.0)  # user 11 is dial 2
        assert read_device() == pytest.approx(2.0)
        with pytest.raises(AxisFault, match=rf"{name}: {device_text}: the dial is the device's own position .* "
                                            rf"\({name}\.position = value changes only the offset\)"):
            axis.dial = 5.0
        assert read_device() == pytest.approx(2.0) and axis.position == pytest.approx(11.0)


def test_limits_are_refused_before_motion(tango_session, server):
    tmot = tango_session["tmot"]
    with pytest.raises(LimitError, match="tmot"):
        tmot.move(60.0)
    assert tango_read(server, "sim/motor/1", "Position") == 0.0


def test_backlash_approaches_from_below(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(2.0)
    tmot.move(-1.0)  # negative move: overshoots by the backlash and comes back
    assert tmot.position == pytest.approx(-1.0)


def test_group_move_and_ctrl_c_stop_every_device(tango_session, server):
    tmot, tmot2 = tango_session["tmot"], tango_session["tmot2"]
    group_move_then_ctrl_c({tmot: 2.0, tmot2: -1.0}, {tmot: 40.0, tmot2: 30.0})
    for name, axis, target in (("sim/motor/1", tmot, 40.0), ("sim/motor/2", tmot2, 30.0)):
        assert tango_read(server, name, "StopCount") >= 1  # the Stop command arrived
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


def stats(data, name, i=0):
    """(N, min, max, mean) of a STATS counter's point i."""
    return data[f"{name}_N"][i], data[f"{name}_min"][i], data[f"{name}_max"][i], data[name][i]


@pytest.mark.parametrize("name", ["tramp", "eramp"])
def test_a_counter_samples_the_device_during_the_count(tango_session, name):
    """As BLISS's SamplingCounter: read again and again during the count time, then reduced by
    its mode. Ramp grows by 1000 a second, so a 0.2 s count's readings span ~200 and their mean
    is in the middle, where one reading at the end would be the top."""
    ns = tango_session
    n, low, high, mean = stats(ns["ct"](0.2, ns[name]).get_data(), name)
    assert n >= 5 and 150 <= high - low <= 500
    assert mean == pytest.approx((low + high) / 2, abs=0.15 * (high - low))
    # outside a scan, a read samples for its count time there and then
    values = ns[name].read_channels(0.1)
    assert values[f"{name}_N"] >= 3 and values[f"{name}_max"] - values[f"{name}_min"] >= 70
    # in a step scan, only during each point's count: not while the axis moves between points
    data = ns["ascan"](ns["emot"], 0, 2, 2, 0.05, ns[name]).get_data()
    points = [stats(data, name, i) for i in range(3)]
    assert all(n >= 2 for n, *_ in points)
    assert all(later[1] - earlier[2] > 50 for earlier, later in zip(points, points[1:]))  # the moves' ~0.1 s


def test_server_killed_mid_move_is_a_named_failure_then_reconnected(tango_session, server):
    tmot = tango_session["tmot"]
    tmot.move(40.0, wait=False)
    gevent.sleep(0.2)
    server.kill()
    with gevent.Timeout(3.0, AssertionError("tmot: no named failure within 3 s of the server's death")):
        with pytest.raises(AxisFault, match=r"tmot: Tango device tango://127.0.0.1:\d+/sim/motor/1#dbase=no: .* failed"):
            tmot.wait_move()
    server.restart()  # on the same port
    assert wait_reconnected(tmot) == 0.0  # a fresh simulator
    tmot.sync_hard()
    tmot.move(1.0)
    assert tmot.position == pytest.approx(1.0)


def test_epics_move_limits_and_backlash(tango_session):
    emot = tango_session["emot"]
    emot.move(0.0)  # the module's IOC: from where the last test left it
    emot.move(3.0)
    assert emot.position == pytest.approx(3.0) and emot.state.READY
    assert caget("SIM:m1.RBV") == pytest.approx(3.0)
    assert caget("SIM:m1.VELO") == 20.0
    assert caget("SIM:m1.ACCL") == pytest.approx(0.1)
    emot.move(-1.0)  # backlash: past the target and back
    assert emot.position == pytest.approx(-1.0)
    with pytest.raises(LimitError, match=r"emot: dial 150 beyond the limits \[-100, 100\] of EPICS record SIM:m1"):
        emot.move(150.0)
    assert emot.position == pytest.approx(-1.0)


def test_group_of_a_tango_and_an_epics_axis_and_ctrl_c(tango_session, server):
    tmot, emot = tango_session["tmot"], tango_session["emot"]
    group_move_then_ctrl_c({tmot: 2.0, emot: -2.0}, {tmot: 40.0, emot: 40.0})
    assert tango_read(server, "sim/motor/1", "StopCount") >= 1
    assert caget("SIM:m1:STOPCOUNT") >= 1  # .STOP reached the record
    gevent.sleep(0.3)
    assert tmot.state.READY and emot.state.READY and tmot.position < 40.0 and emot.position < 40.0


def test_epics_dscan_and_counter_in_ct(tango_session):
    ns = tango_session
    ns["emot"].move(1.0)
    data = ns["dscan"](ns["emot"], -1, 1, 4, 0.01, ns["ecnt"], ns["tcnt"]).get_data()
    assert data["emot"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert data["ecnt"] == pytest.approx([100.0] * 5, abs=5)
    assert ns["emot"].position == pytest.approx(1.0)
    assert ns["ct"](0.01, ns["ecnt"]).get_data()["ecnt"][0] == pytest.approx(100.0, abs=5)


def test_ioc_killed_mid_scan_names_the_axis_then_reconnects(tango_session, ioc):
    ns = tango_session
    emot = ns["emot"]
    gevent.spawn_later(0.3, ioc.kill)
    with gevent.Timeout(5.0, AssertionError("emot: the scan did not end with a named failure within 5 s")):
        with pytest.raises(AxisFault, match=r"emot: EPICS PV SIM:m1\.\w+: .*(not connected|no value|failed)"):
            ns["ascan"](emot, 0, 20, 4, 0.01, ns["ecnt"])
    mark_gets_pending("SIM:m1.DMOV")  # as a get refused while the circuit went down leaves it
    ioc.start()  # the module's IOC from now on, stopped at the end
    assert wait_reconnected(emot) == 0.0  # a fresh IOC
    emot.sync_hard()
    emot.move(1.0)
    assert emot.position == pytest.approx(1.0)


def mark_gets_pending(name):
    """Leave pyepics' cache entry of the channel as a refused get request leaves it: every kind
    of get already made marked pending, no request out."""
    entry = epics.ca.get_cache(name)
    assert entry.get_results, f"{name}: no get made yet"
    for ftype in list(entry.get_results):
        entry.get_results[ftype] = [epics.ca.GET_PENDING]


def test_a_get_refused_by_libca_is_named_and_the_next_one_reads(tango_session, ioc, monkeypatch):
    """libca refuses a get request when the circuit has just gone down; pyepics has marked the
    get pending already and keeps waiting for it. The refusal is an AxisFault naming the PV, and
    the next read asks the IOC again rather than waiting for an answer never asked for."""
    emot = tango_session["emot"]
    assert emot.controller.state(emot).READY  # every channel of the axis connected and read
    ask = epics.ca.libca.ca_array_get_callback
    refusals = []

    def refuse_once(*args):
        if refusals:
            return ask(*args)
        refusals.append(args)
        return ECA_DISCONN

    monkeypatch.setattr(epics.ca.libca, "ca_array_get_callback", refuse_once)
    with pytest.raises(AxisFault, match=r"emot: EPICS PV SIM:m1\.DMOV: get of SIM:m1\.DMOV failed: .*disconnect"):
        emot.controller.state(emot)
    assert emot.controller.state(emot).READY
    assert len(refusals) == 1


def test_ioc_killed_during_reads_is_always_a_named_fault(tango_session, ioc):
    """Reads back to back while the IOC dies: a read in flight when it goes fails inside pyepics
    (its own exceptions), one after finds the channel down; both are an AxisFault naming axis
    and PV, within the timeout (the next test's fixture brings the IOC back)."""
    emot = tango_session["emot"]
    emot.controller.state(emot)
    killer = threading.Timer(0.2, ioc.kill)
    killer.start()
    # reads stop 3 s after the kill: a named fault comes within a connection wait (timeout 0.5 s),
    # with room for a loaded machine; none by then and pytest.raises fails (a hang guard, no timing)
    deadline = time.monotonic() + 0.2 + 3.0
    try:
        with pytest.raises(AxisFault, match=r"emot: EPICS PV SIM:m1\.\w+: "):
            while time.monotonic() < deadline:
                emot.controller.state(emot)  # .DMOV and .MSTA, back to back
    finally:
        killer.join()


def test_the_shipped_session_starts_and_stops_its_servers(tmp_path, shared_redis, data_root, monkeypatch):
    """Run in a child process patched by gevent as the shell is, without this module's Channel
    Access settings (the session sets its own port)."""
    script = f"""
from gevent import monkey
monkey.patch_all()
import sys
sys.path.insert(0, {str(ROOT)!r})
from bliss_lite.shell.runner import open_session
_, ns = open_session("controlsystems", {str(ROOT / 'config')!r})
pids = [p.pid for p in ns["SIMULATED_SERVERS"]]
ns["mv"](ns["tmot"], 1.0, ns["emot"], -1.0)
data = ns["ascan"](ns["tmot"], 0, 1, 2, 0.01, ns["tcnt"], ns["ecnt"]).get_data()
print("PIDS", *pids)
print("RESULT", ns["tmot"].position, ns["emot"].position, len(data["tcnt"]), abs(data["ecnt"][0] - 100) < 5)
"""
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    env = {key: value for key, value in os.environ.items() if not key.startswith("EPICS_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line[:4] in ("PIDS", "RESU")}
    assert lines.get("RESULT") == ["1.0", "-1.0", "3", "True"], done.stdout[-2000:] + done.stderr[-2000:]
    for pid in lines["PIDS"]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_tango_server_killed_mid_group_move_stops_the_epics_axis(tango_session, server):
    tmot, emot = tango_session["tmot"], tango_session["emot"]
    emot.move(0.0)
    stops = caget("SIM:m1:STOPCOUNT")
    gevent.spawn_later(0.2, server.kill)
    with gevent.Timeout(10):
        with pytest.raises(AxisFault, match=r"tmot: Tango device .*sim/motor/1#dbase=no: .* failed"):
            Group(tmot, emot).move({tmot: 40.0, emot: 40.0})
    assert caget("SIM:m1:STOPCOUNT") == stops + 1  # the other axis was stopped
    gevent.sleep(0.3)
    assert emot.state.READY and 0 < emot.position < 40.0
