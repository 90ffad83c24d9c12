"""Devices that fail in the ways a facility's do, against the real simulated servers: a server
that does not answer (stopped with SIGSTOP), a Tango motor in FAULT, a motor record with its
problem and limit-switch bits, writes the device refuses; configurable Tango names, `sign: -1`;
and the shipped session's bounded wait for its servers."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import gevent
import pytest

from bliss_lite.controllers.errors import AxisFault
from tests.conftest import CONFIG_DIR, write_config

tango = pytest.importorskip("tango", reason="pytango is not installed (pip install -e .[test])")
pytest.importorskip("caproto", reason="caproto is not installed (pip install -e .[test])")
epics = pytest.importorskip("epics", reason="pyepics is not installed (pip install -e .[test])")

# the module as pytest imported it (tests/ on sys.path), not a second copy as tests.test_tango_epics:
# its Channel Access settings, chosen once for this process, are the ones libca already has
import test_tango_epics as base  # noqa: E402 - after the skips
from test_tango_epics import TangoServer, caget, ctrl_c_after, tango_read, wait_reconnected  # noqa: E402


class Ioc(base.Ioc):
    """This module's IOC, on the same Channel Access port as test_tango_epics.py's (libca takes
    its settings once per process) but another prefix: its channels are new ones, found by a
    search, not the other module's waiting for libca to reconnect them to a new IOC."""

    PREFIX = "FLT:"


IOC_PVS = [f"FLT:m{m}{f}" for m in (1, 2) for f in (".RBV", ".VAL", ".DMOV", ".MSTA", ".STOP", ".LLM", ".HLM",
                                                     ".VELO", ".ACCL")]


ioc_process, ioc = base.ioc_fixtures(Ioc, IOC_PVS)

ROOT = Path(__file__).resolve().parents[1]
HANG_BOUND = 15.0  # s: far beyond the 0.5 s timeouts and Tango's ~3 s reconnection wait, far below a hang
MOVE_BOUND = 40.0  # s: a move ended by a silent Tango server: its wait, state read, stop and wait each fail


def controlsystems_setup():
    """sessions/controlsystems_setup.py imported as a module: its functions, no server started."""
    spec = importlib.util.spec_from_file_location("controlsystems_setup", ROOT / "sessions" / "controlsystems_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("body, error", [
    ("import time\ntime.sleep(600)\n", r"silent\.py did not print LISTENING within 1 s: killed"),
    ("import sys, time\nfor i in range(10**6):\n    print('starting', i, flush=True)\n    time.sleep(0.001)\n",
     r"silent\.py did not print LISTENING within 1 s: killed"),
    ("print('no luck', flush=True)\nraise SystemExit(3)\n", r"silent\.py exited before it listened \(exit status 3\)"),
])
def test_a_server_that_never_listens_is_killed_and_named(tmp_path, monkeypatch, body, error):
    """Silent, chatty without LISTENING, or dead: the session's wait ends with the server named."""
    setup = controlsystems_setup()
    script = tmp_path / "silent.py"
    script.write_text(body)
    started = []  # what the session would stop at exit
    monkeypatch.setattr(setup, "atexit", SimpleNamespace(register=lambda stop, process: started.append(process)))
    with pytest.raises(RuntimeError, match=error):
        setup._start(script, timeout=1.0)
    assert len(started) == 1 and started[0].poll() is not None  # killed (or exited), not left running


class Server(TangoServer):
    ARGS = ("--motors", "sim/motor/1,sim/motor/2", "--renamed-motors", "sim/rmotor/1")


@pytest.fixture
def server():
    process = Server()
    yield process
    process.kill()


@pytest.fixture
def session(server, ioc, tmp_path, run_dir, shared_redis, data_root, monkeypatch):
    """Axes on both servers: tmot (Tango), rmot (a device of other names), tneg and eneg
    (`sign: -1`), emot (EPICS)."""
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    root = tmp_path / "cfg"
    shutil.copytree(CONFIG_DIR / "test", root / "test")
    write_config(root, {"cs/tango.yml": f"""
- class: tango_motor
  name: tango_ctrl
  timeout: 0.5
  axes:
    - {{name: tmot, device: "{server.url('sim/motor/1')}", steps_per_unit: 1000, velocity: 20, acceleration: 200}}
    - {{name: tneg, device: "{server.url('sim/motor/2')}", steps_per_unit: 1000, velocity: 20, acceleration: 200,
       sign: -1}}
- class: tango_motor
  name: renamed_ctrl
  timeout: 0.5
  position_attribute: DialPosition
  velocity_attribute: Speed
  acceleration_attribute: Accel
  stop_command: Abort
  state_attribute: MotorState
  axes:
    - {{name: rmot, device: "{server.url('sim/rmotor/1')}", steps_per_unit: 1000, velocity: 20, acceleration: 200}}
""", "cs/epics.yml": """
- class: epics_motor
  name: epics_ctrl
  timeout: 0.5
  axes:
    - {name: emot, prefix: "FLT:m1", steps_per_unit: 1000, velocity: 20, acceleration: 200}
    - {name: eneg, prefix: "FLT:m2", steps_per_unit: 1000, velocity: 20, acceleration: 200, sign: -1}
""", "sessions/cs.yml": """- name: cs
  class: session
  setup-file: cs_setup.py
  config-objects: [tmot, tneg, rmot, emot, eneg]
""", "sessions/cs_setup.py": "# nothing to set up\n"})
    from bliss_lite.shell.runner import open_session

    _, namespace = open_session("cs", root)
    namespace["emot"].move(0.0)  # the module's IOC: from where the last test left it
    namespace["eneg"].move(0.0)
    return namespace


def tango_write(server, name, attribute, value):
    proxy = tango.DeviceProxy(server.url(name))
    proxy.set_timeout_millis(2000)
    proxy.write_attribute(attribute, value)


def caput(name, value):
    assert epics.caput(name, value, wait=True, timeout=5) == 1, f"caput {name} {value} failed"


@contextmanager
def epics_hooks(**values):
    """The IOC's test hooks (FLT:m1:SIM_...) set, and cleared again whatever happens."""
    try:
        for hook, value in values.items():
            caput(f"FLT:m1:SIM_{hook}", value)
        yield
    finally:
        for hook in values:
            caput(f"FLT:m1:SIM_{hook}", 0)


@contextmanager
def frozen(process):
    """The server process stopped (SIGSTOP): connected, but it answers nothing; SIGCONT at the end."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        tasks = Path(f"/proc/{process.pid}/task")
        with gevent.Timeout(5, AssertionError(f"pid {process.pid} not stopped within 5 s")):
            while not all(stopped(task) for task in tasks.iterdir()):  # every thread: no answer in flight
                gevent.sleep(0.01)
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def stopped(task):
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in "tT"
    except FileNotFoundError:  # a thread that ended
        return True


def bounded(call, error, bound=HANG_BOUND):
    """call() raises an AxisFault matching `error`, long before a hang would end it."""
    start = time.monotonic()
    with gevent.Timeout(bound, AssertionError(f"no AxisFault within {bound} s")):
        with pytest.raises(AxisFault, match=error):
            call()
    assert time.monotonic() - start < bound  # a C call blocking the thread escapes gevent's Timeout


TMOT = r"tmot: Tango device tango://127\.0\.0\.1:\d+/sim/motor/1#dbase=no"


EMOT = r"emot: EPICS PV FLT:m1"


@pytest.mark.filterwarnings("ignore:ca.get.*timed out:UserWarning")  # pyepics' own word for what is tested
@pytest.mark.parametrize("name, device, read_error, move_error, wait_error, wait_bound", [
    ("tmot", "server", rf"{TMOT}: read Position failed: .*", rf"{TMOT}: read Position failed",
     rf"{TMOT}: read State failed", MOVE_BOUND),
    ("emot", "ioc", rf"{EMOT}\.RBV: no value of FLT:m1\.RBV within 0\.5 s", rf"{EMOT}\.RBV: no value",
     rf"{EMOT}\.(DMOV|MSTA): no value of FLT:m1\.(DMOV|MSTA) within", HANG_BOUND),
], ids=["tango", "epics"])
def test_a_server_that_does_not_answer_is_a_named_timeout(session, server, ioc, name, device, read_error,
                                                          move_error, wait_error, wait_bound):
    """Stopped (SIGSTOP) at rest, then mid-move: a read, a move and the move's wait each end in a
    named fault (the stop the wait sends cannot arrive), and the axis moves again once it answers."""
    axis, process = session[name], {"server": server, "ioc": ioc}[device].process
    axis.move(1.0)
    with frozen(process):
        bounded(lambda: axis.position, read_error)
        bounded(lambda: axis.move(2.0), move_error)
    task = axis.move(20.0, wait=False)
    gevent.sleep(0.1)
    with frozen(process):
        bounded(task.wait, wait_error, wait_bound)
        assert not axis.is_moving
    wait_reconnected(axis)  # answers again (its motion, simulated in time, may have ended meanwhile)
    axis.sync_hard()
    axis.move(2.0)
    assert axis.position == pytest.approx(2.0)


def test_a_tango_motor_in_fault_is_not_moved(session, server):
    tmot = session["tmot"]
    tango_write(server, "sim/motor/1", "SimFault", True)
    assert "FAULT" in tmot.state
    with pytest.raises(AxisFault, match=rf"{TMOT} is in FAULT: move refused \(simulated fault: drive tripped\)"):
        tmot.move(2.0)
    assert tango_read(server, "sim/motor/1", "Position") == 0.0  # never written
    tango_write(server, "sim/motor/1", "SimFault", False)
    tmot.move(20.0, wait=False)  # a fault during the move ends it, naming the device
    gevent.sleep(0.2)
    tango_write(server, "sim/motor/1", "SimFault", True)
    with pytest.raises(AxisFault, match=rf"{TMOT} in FAULT after the move"):
        tmot.wait_move()
    assert 0 < tango_read(server, "sim/motor/1", "Position") < 20.0
    tango_write(server, "sim/motor/1", "SimFault", False)
    tmot.move(1.0)
    assert tmot.position == pytest.approx(1.0) and tmot.state.READY


def test_a_motor_record_with_its_problem_bit_is_not_moved(session):
    emot = session["emot"]
    with epics_hooks(FAULT=1):
        assert "FAULT" in emot.state
        with pytest.raises(AxisFault, match=r"emot: EPICS record FLT:m1 reports a problem \(MSTA 0x202\): "
                                            r"move refused"):
            emot.move(2.0)
        assert caget("FLT:m1.RBV") == 0.0
    assert emot.state.READY
    emot.move(1.0)
    assert emot.position == pytest.approx(1.0)


@pytest.mark.parametrize("hooks, flags", [({"HLS": 1}, {"LIMPOS"}), ({"LLS": 1}, {"LIMNEG"}),
                                          ({"HLS": 1, "LLS": 1}, {"LIMPOS", "LIMNEG"})])
def test_limit_switch_bits_are_limit_states(session, hooks, flags):
    emot = session["emot"]
    with epics_hooks(**hooks):
        state = emot.state
        assert {"LIMPOS", "LIMNEG"} & set(state) == flags and "FAULT" not in state
    state = emot.state
    assert state.READY and not {"LIMPOS", "LIMNEG"} & set(state)


def test_a_write_the_tango_device_refuses_is_named(session, server):
    tmot = session["tmot"]
    tmot.move(1.0)
    tango_write(server, "sim/motor/1", "SimRefuseWrites", True)
    with pytest.raises(AxisFault, match=rf"{TMOT}: write Position failed: .*simulated refusal: position not written"):
        tmot.move(2.0)
    assert not tmot.is_moving and tango_read(server, "sim/motor/1", "Position") == pytest.approx(1.0)
    tmot.velocity = 15.0  # written before the next move
    with pytest.raises(AxisFault, match=rf"{TMOT}: write Velocity failed: .*simulated refusal: velocity not written"):
        tmot.move(2.0)
    tango_write(server, "sim/motor/1", "SimRefuseWrites", False)
    tmot.move(2.0)
    assert tmot.position == pytest.approx(2.0) and tango_read(server, "sim/motor/1", "Velocity") == 15.0


def test_a_put_the_ioc_refuses_is_named(session):
    emot = session["emot"]
    emot.move(1.0)
    with epics_hooks(REFUSE=1):
        with pytest.raises(AxisFault, match=r"emot: EPICS PV FLT:m1\.VAL: put of 2\.0 to FLT:m1\.VAL refused: "):
            emot.move(2.0)
        assert not emot.is_moving and caget("FLT:m1.RBV") == pytest.approx(1.0)
        emot.velocity = 15.0  # put before the next move
        with pytest.raises(AxisFault, match=r"emot: EPICS PV FLT:m1\.VELO: put of 15\.0 to FLT:m1\.VELO refused: "):
            emot.move(2.0)
    emot.move(2.0)
    assert emot.position == pytest.approx(2.0) and caget("FLT:m1.VELO") == 15.0


def test_configured_tango_names_are_the_ones_used(session, server):
    """The renamed device's own State stays ON: only its MotorState says MOVING, so a move that
    reaches its target waited on the configured state attribute."""
    rmot = session["rmot"]
    rmot.move(3.0)
    assert rmot.position == pytest.approx(3.0) and rmot.state.READY
    assert tango_read(server, "sim/rmotor/1", "DialPosition") == pytest.approx(3.0)
    assert tango_read(server, "sim/rmotor/1", "Speed") == 20.0
    assert tango_read(server, "sim/rmotor/1", "Accel") == 200.0
    ctrl_c_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        rmot.move(40.0)
    assert tango_read(server, "sim/rmotor/1", "StopCount") == 1  # the Abort command
    gevent.sleep(0.3)
    assert rmot.state.READY and 3.0 < rmot.position < 40.0
    tango_write(server, "sim/rmotor/1", "SimFault", True)  # seen in MotorState, not State
    assert "FAULT" in rmot.state
    with pytest.raises(AxisFault, match=r"rmot: Tango device .*/sim/rmotor/1#dbase=no is in FAULT: move refused"):
        rmot.move(1.0)


@pytest.mark.parametrize("name, read_dial", [("tneg", None), ("eneg", lambda: caget("FLT:m2.RBV"))])
def test_sign_minus_one_gives_the_device_dial_positions(session, server, name, read_dial):
    """user = sign * dial + offset: the device gets and reports dial positions."""
    read_dial = read_dial or (lambda: tango_read(server, "sim/motor/2", "Position"))
    axis = session[name]
    axis.move(3.0)
    assert (axis.position, axis.dial) == pytest.approx((3.0, -3.0))
    assert read_dial() == pytest.approx(-3.0)
    axis.offset = 1.0
    axis.move(5.0)  # dial (5 - 1) / -1
    assert read_dial() == pytest.approx(-4.0) and axis.position == pytest.approx(5.0)
    axis.position = 0.0  # the offset follows; the device is not written
    assert axis.offset == pytest.approx(-4.0) and read_dial() == pytest.approx(-4.0)
    axis.move(-1.0)  # dial (-1 + 4) / -1
    assert read_dial() == pytest.approx(-3.0)
