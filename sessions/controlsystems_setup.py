"""Setup of the `controlsystems` session: its Tango device server (port 20000) and its IOC (CA
port 15064) are started when nothing answers there, and the ones started here stop at exit."""
import atexit
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SIMULATORS = Path(__file__).resolve().parents[1] / "simulators"
TANGO_PORT, CA_PORT = 20000, 15064
for key, value in {"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
                   "EPICS_CA_SERVER_PORT": str(CA_PORT)}.items():
    os.environ.setdefault(key, value)  # before Channel Access starts (at the first EPICS read)


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(script, *args):
    process = subprocess.Popen([sys.executable, str(SIMULATORS / script), *args], stdout=subprocess.PIPE,
                               text=True, env=dict(os.environ, EPICS_CA_SERVER_PORT=str(CA_PORT)))
    atexit.register(lambda: (process.kill(), process.wait(10)))
    deadline = time.monotonic() + 30
    for line in process.stdout:
        if line.startswith("LISTENING") or time.monotonic() > deadline:
            break
    return process


SIMULATED_SERVERS = []
if not _answers(TANGO_PORT):
    SIMULATED_SERVERS.append(_start("tango_server.py", "--port", str(TANGO_PORT)))
if not _answers(CA_PORT):
    SIMULATED_SERVERS.append(_start("epics_ioc.py", "--prefix", "SIM:"))
