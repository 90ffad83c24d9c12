"""Helpers of the queue tests: a queue server as a child process, and waiting for item states."""
import os
import subprocess
import sys
import time

import pytest

from bliss_lite.data.redis_server import connect

SESSION = "test"


@pytest.fixture
def queue_env(shared_redis, data_root, run_dir, monkeypatch):
    """Environment of a queue server on the shared Redis, its queue emptied first."""
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", shared_redis)
    client = connect(shared_redis)
    for key in client.scan_iter(f"bliss_lite:queue:{SESSION}:*"):
        client.delete(key)
    for key in client.scan_iter(f"bliss_lite:session:{SESSION}:axis_lock:*"):
        client.delete(key)
    return client


class Servers:
    def __init__(self, tmp_path):
        self.tmp_path, self.procs = tmp_path, []

    def start(self, client, *extra):
        log = open(self.tmp_path / f"server{len(self.procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "bliss_lite", "queue", "-s", SESSION, *extra],
                                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        me = f":{proc.pid}"
        while not (client.get(f"bliss_lite:queue:{SESSION}:server") or b"").decode().endswith(me):
            assert proc.poll() is None, (self.tmp_path / f"server{len(self.procs) - 1}.log").read_text()
            assert time.monotonic() < deadline, "queue server did not start"
            time.sleep(0.05)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def servers(tmp_path):
    found = Servers(tmp_path)
    yield found
    found.stop_all()


def _wait_state(queue, item_id, states, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        item = queue.item(item_id)
        if item and item["state"] in states:
            return item
        assert time.monotonic() < deadline, f"item {item}: not {states}"
        time.sleep(0.02)


def _wait_scan_begun(queue, item_id, timeout=30):
    """The item running and its scan begun (its entry known): a kill now interrupts a scan."""
    _wait_state(queue, item_id, ("running",), timeout)
    deadline = time.monotonic() + timeout
    while (item := queue.item(item_id))["entry"] is None:
        assert time.monotonic() < deadline, f"item {item}: its scan has not begun"
        time.sleep(0.02)
    return item
