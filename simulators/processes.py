"""Start the simulator processes and write a session configuration whose omega/x/z stages and
Pilatus are behind their sockets (used by the fault tests and benchmarks/chaos.py).

    with SimulatorProcess.motor() as motors, SimulatorProcess.pilatus() as pilatus:
        root = write_remote_config(tmp, motors.port, pilatus.port)
        session, namespace = open_session("remote", root)
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


class SimulatorProcess:
    """One simulator script as a child process, on a free port it reports (`LISTENING port`)."""

    def __init__(self, script, *args):
        self.process = subprocess.Popen([sys.executable, str(HERE / script), "--port", "0", *args],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("LISTENING"):
            self.stop()
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.port = int(line.split()[1])

    @classmethod
    def motor(cls):
        return cls("motor_server.py")

    @classmethod
    def pilatus(cls, seed=1):
        return cls("pilatus_server.py", "--seed", str(seed))

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def send(self, line):
        """One command on a connection of its own (the motor server serves many); its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as link:
            link.sendall(f"{line}\n".encode())
            return link.makefile().readline().strip()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


STAGES = """# omega, x and z on the motor controller simulator process (simulators/motor_server.py)
- class: socket_motor
  name: remote_stages
  server: 127.0.0.1:{motor_port}
  timeout: {timeout}
  stall_timeout: {stall_timeout}
  axes:
    - {{name: omega, unit: deg, steps_per_unit: 1000, velocity: 360, acceleration: 3600}}
    - {{name: x, unit: mm, steps_per_unit: 10000, velocity: 20, acceleration: 200, low_limit: -50, high_limit: 50}}
    - {{name: z, unit: mm, steps_per_unit: 10000, velocity: 10, acceleration: 100, low_limit: -20, high_limit: 20}}
"""

DETECTOR = """# the sample on the remote stages, and the Pilatus simulator process (simulators/pilatus_server.py)
- {{name: xrdct_sample, class: xrdct_sample, plugin: bliss, omega: $omega, x: $x, z: $z, poni: pilatus2m.poni,
   flux: 200000, monitor_rate: 1000000, seed: 1}}
- {{name: pilatus, class: pilatus2m, plugin: bliss, sample: $xrdct_sample, server: "127.0.0.1:{pilatus_port}"}}
"""

SESSION = """- name: remote
  class: session
  setup-file: {setup}
  config-objects: [m0, m1, diode1, diode2, diode3, gauss, test_mg, omega, x, z, xrdct_sample, pilatus]
"""


def write_remote_config(root, motor_port, pilatus_port, timeout=1.0, stall_timeout=1.0):
    """A config tree with a `remote` session: the test session's fast mockup axes and counters,
    and the XRD-CT stages and detector behind the simulators' sockets. Returns the root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config" / "test", root / "test", dirs_exist_ok=True)
    (root / "xrdct").mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / "xrdct" / "pilatus2m.poni", root / "xrdct")
    (root / "xrdct" / "stages.yml").write_text(STAGES.format(motor_port=motor_port, timeout=timeout,
                                                             stall_timeout=stall_timeout))
    (root / "xrdct" / "detector.yml").write_text(DETECTOR.format(pilatus_port=pilatus_port))
    (root / "sessions").mkdir(exist_ok=True)
    (root / "sessions" / "remote.yml").write_text(SESSION.format(setup=ROOT / "sessions" / "test_setup.py"))
    return root
