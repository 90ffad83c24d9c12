"""Setup of the `controlsystems` session: its Tango device server (port 20000) and its IOC (CA
port 15064) are started when nothing answers there, and the ones started here stop at exit.

A server that prints nothing, or exits, before `LISTENING` is killed and named in the error
after START_TIMEOUT seconds at most (the wait does not depend on its output); its stdout is
read to the end by a thread, so a chatty server never blocks on a full pipe. Imported as a
module (the tests), this file only defines its functions; the session runs it as a script."""
import atexit
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SIMULATORS = Path(__file__).resolve().parents[1] / "simulators"
TANGO_PORT, CA_PORT = 20000, 15064
START_TIMEOUT = 30.0  # s for a server to print LISTENING
for key, value in {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
                   "EPICS_CA_SERVER_PORT": str(CA_PORT)}.items():
    os.environ.setdefault(key, value)  # before Channel Access starts (at the first EPICS read)


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _drain(stream, lines):
    """Hand the stream's lines over, then read it to its end (the child never blocks on it)."""
    for line in stream:
        if lines is not None:
            lines.put(line)
            if line.startswith("LISTENING"):
                lines = None
    if lines is not None:
        lines.put(None)  # end of output before LISTENING


def _start(script, *args, timeout=START_TIMEOUT):
    """The simulator `script` (in simulators/, or a path) as a child process, once it printed
    LISTENING; a RuntimeError naming it when it exits or stays silent `timeout` s first."""
    path = SIMULATORS / script
    process = subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, EPICS_CA_SERVER_PORT=str(CA_PORT)))
    atexit.register(_stop, process)
    lines = queue.Queue()
    threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True,
                     name=f"stdout of {path.name}").start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"simulated server {path} exited before it listened "
                                   f"(exit status {process.wait(10)})")
            if line.startswith("LISTENING"):
                return process
    except queue.Empty:
        _stop(process)
        raise RuntimeError(f"simulated server {path} did not print LISTENING within {timeout:g} s: "
                           "killed") from None
    except BaseException:
        _stop(process)
        raise


if __name__ in ("builtins", "__main__"):  # run as the session's setup (exec'd) or as a script
    SIMULATED_SERVERS = []
    if not _answers(TANGO_PORT):
        SIMULATED_SERVERS.append(_start("tango_server.py", "--port", str(TANGO_PORT)))
    if not _answers(CA_PORT):
        SIMULATED_SERVERS.append(_start("epics_ioc.py", "--prefix", "SIM:"))
