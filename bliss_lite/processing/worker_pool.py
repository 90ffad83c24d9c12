"""Local integration workers started by the integration hook, one pool per Redis URL.

Workers are separate processes (`python -m bliss_lite.cli worker --redis URL`): integration
is CPU work that must not share the scan process' GIL or its gevent hub. They are started
once and kept for the next scans (starting one costs ~1-2 s of imports), and stopped when
the process that started them exits. Workers on other hosts join the same scans by
themselves (`bliss-lite worker --redis URL`); this pool only looks after its own.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys

_POOLS = {}
logger = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, url):
        self.url = url
        self.processes = []

    def ensure(self, count):
        """At least `count` of our workers alive (dead ones are replaced)."""
        self.processes = [p for p in self.processes if p.poll() is None]
        while len(self.processes) < count:
            # the URL (it may carry a password) in the environment, not on the command line (ps)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "BLISS_LITE_REDIS_URL": self.url}
            name = f"{os.uname().nodename}-{os.getpid()}-w{len(self.processes)}-{os.urandom(2).hex()}"
            # stderr is ours: a worker's warnings reach the session; its log goes to <run dir>/logs/worker.log
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "bliss_lite.cli", "worker", "--name", name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, start_new_session=True))
            logger.info("started integration worker %s (pid %d)", name, self.processes[-1].pid)
        return self.processes

    def stop(self, timeout=5.0):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.info("integration worker pid %d did not stop in %g s: killed", process.pid, timeout)
                process.kill()
                process.wait()
        self.processes = []


def pool(url):
    if url not in _POOLS:
        _POOLS[url] = WorkerPool(url)
    return _POOLS[url]


@atexit.register
def stop_all():
    """Stop the workers this process started (at exit; tests that need no stray worker too)."""
    for p in _POOLS.values():
        p.stop()
