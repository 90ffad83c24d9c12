"""A server that accepts connections and never answers: every network client says so within
seconds, naming it, and exits; none hangs.

The listener is plain TCP (what a hung Redis, a firewall that swallows packets after the
handshake, or a wrong port on a busy host looks like).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from bliss_lite.data.redis_server import connect

LIMIT_S = 15  # seconds a client may take to give up: its socket timeout (5 s) and retries


@pytest.fixture
def silent_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


CLIENTS = {  # name -> arguments of `bliss-lite`, given the URL
    "worker": lambda url: ["worker", "--redis", url],
    "view": lambda url: ["view", "--port", "0", "--redis", url],
    "job-server": lambda url: ["job-server", "--url", url],
    "follow": lambda url: ["follow", "--count", "1"],  # its Redis from BLISS_LITE_REDIS_URL
    "queue list": lambda url: ["queue", "-s", "demo", "list"],  # the same
    "queue add": lambda url: ["queue", "-s", "demo", "add", "sleep(1)"],
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_every_client_reports_a_silent_server_within_seconds(silent_server, client, tmp_path):
    env = {**os.environ, "BLISS_LITE_REDIS_URL": silent_server, "BLISS_LITE_RUN_DIR": str(tmp_path / "run")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bliss_lite", *CLIENTS[client](silent_server)], env=env,
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    port = silent_server.rsplit(":", 1)[1].split("/")[0]
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0, said
    assert took < LIMIT_S, said
    assert "Traceback" not in said
    assert [line for line in said.splitlines() if port in line and "imeout" in line], said


def test_a_job_submitter_reports_a_silent_server_within_seconds(silent_server):
    from bliss_lite.processing import job_server

    client = connect(silent_server)
    started = time.monotonic()
    with pytest.raises(Exception) as error:
        job_server.submit_remote(client, "dummy", {})
    assert time.monotonic() - started < LIMIT_S
    assert "imeout" in f"{type(error.value).__name__} {error.value}"


@pytest.mark.parametrize("action", ["items", "status", "add"])
def test_a_queue_client_reports_a_silent_server_within_seconds(silent_server, action):
    from bliss_lite.data.queue_client import QueueClient

    queue = QueueClient(connect(silent_server), "demo", who="test")
    call = {"items": queue.items, "status": queue.status, "add": lambda: queue.add("sleep(1)")}[action]
    started = time.monotonic()
    with pytest.raises(Exception) as error:
        call()
    assert time.monotonic() - started < LIMIT_S
    port = silent_server.rsplit(":", 1)[1].split("/")[0]
    assert "imeout" in f"{type(error.value).__name__} {error.value}" and port in str(error.value), repr(error.value)
