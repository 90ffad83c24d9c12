"""Devices that fail in the ways a facility's do, against the real simulated servers: a server
that does not answer (stopped with SIGSTOP), a Tango motor in FAULT, a motor record with its
problem and limit-switch bits, writes the device refuses; configurable Tango names, `sign: -1`;
and the shipped session's bounded wait for its servers."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
