# ruff: noqa: F811 - the fixtures imported from queue_helpers are the arguments of the tests
"""Changing the queue (issue 23): move, remove, clear and stop through the Python client and the
`bliss-lite queue` command line, each against a real queue server process; and a queue item
refused while a shell of the session holds its axis."""
import json
import os
import socket
import subprocess
import sys
import time

import h5py
import pytest
from queue_helpers import SESSION, _wait_state, queue_env, servers  # noqa: F401 - fixtures

from bliss_lite.data.queue_client import QueueClient, QueueError


def _order(queue):
    return [(i["id"], i["state"]) for i in queue.items()]


def _still(queue, item_id, state, seconds=0.5):
    """The item is still `state` after the server had `seconds` to start it (it would have)."""
    time.sleep(seconds)
    assert queue.item(item_id)["state"] == state


def test_move_reorders_queued_items_and_clear_drops_only_them(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    queue.pause()  # nothing starts: the items stay queued while they are moved
    long_id = queue.add("ascan(m1, 0, 1, 200, 0.05)")["id"]
    a, b, c = (queue.add(text)["id"] for text in ("ct(0.001)", "sleep(0.001)", "mv(m0, 0.5)"))
    assert _order(queue) == [(long_id, "queued"), (a, "queued"), (b, "queued"), (c, "queued")]
    queue.move(c, 0)
    assert [i for i, _ in _order(queue)] == [c, long_id, a, b]
    queue.move(long_id, 0)
    queue.move(a, 99)  # past the end: last
    queue.move(b, -3)  # before the start: first
    assert [i for i, _ in _order(queue)] == [b, long_id, c, a]
    queue.move(b, 1)
    assert [i for i, _ in _order(queue)] == [long_id, b, c, a]
    for bad in ("1", 1.5, True, None):
        with pytest.raises(QueueError, match=f"^ValueError: move: position must be a whole number, got {bad!r}$"):
            queue.move(a, bad)
    for bad in ("1", 1.5, True, "x"):  # refused before the command is checked: nothing queued
        with pytest.raises(QueueError, match=f"^ValueError: add: position must be a whole number, got {bad!r}$"):
            queue.add("ct(0.001)", position=bad)
    with pytest.raises(QueueError, match="^ValueError: item nosuch is not queued$"):
        queue.move("nosuch", 0)
    assert [i for i, _ in _order(queue)] == [long_id, b, c, a]  # nothing moved by the refusals

    queue.resume()
    _wait_state(queue, long_id, ("running",))
    with pytest.raises(QueueError, match=f"^ValueError: item {long_id} is not queued \\(it is running\\)$"):
        queue.move(long_id, 2)
    with pytest.raises(QueueError, match=f"^ValueError: item {long_id} is not queued \\(it is running\\)$"):
        queue.remove(long_id)
    assert queue.clear() == {"ok": True, "removed": 3}
    assert _order(queue) == [(long_id, "running")]  # the running item is not a queued one
    assert all(queue.item(i) is None for i in (a, b, c))
    assert queue.clear() == {"ok": True, "removed": 0}
    assert queue.abort()["aborted"] == long_id
    _wait_state(queue, long_id, ("aborted",))
    assert _order(queue) == [(long_id, "aborted")]
    log = [(f[b"op"], f[b"result"]) for _, f in queue_env.xrange(f"bliss_lite:queue:{SESSION}:log")]
    assert (b"move", b"ValueError: item nosuch is not queued") in log and (b"clear", b"ok") in log


def test_stop_lets_the_running_scan_finish_and_starts_nothing_more(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    scan_id = queue.add("ascan(m2, 0, 1, 20, 0.05)")["id"]
    after, dropped = queue.add("ct(0.001)")["id"], queue.add("ct(0.002)")["id"]
    _wait_state(queue, scan_id, ("running",))
    assert queue.remove(dropped) == {"ok": True}
    assert queue.item(dropped) is None
    assert _order(queue) == [(scan_id, "running"), (after, "queued")]
    with pytest.raises(QueueError, match=f"^ValueError: item {dropped} is not queued$"):
        queue.remove(dropped)
    queue.pause()  # stop on a holding scan lets it go on to its end
    deadline = time.monotonic() + 10
    while not queue.status()["holding"]:
        assert time.monotonic() < deadline, "the scan did not hold"
        time.sleep(0.02)
    queue.stop()
    assert queue.status()["mode"] == "stopped"
    done = _wait_state(queue, scan_id, ("done", "failed", "aborted"))
    assert done["state"] == "done" and done["error"] is None
    assert done["points"] == done["expected"] == 21  # every point of the scan was taken
    with h5py.File(done["filename"], "r", locking=False) as h5:
        assert h5[f"{done['entry']}/end_reason"][()] == b"SUCCESS"
    _still(queue, after, "queued")
    assert queue.status()["mode"] == "stopped"
    queue.resume()
    assert _wait_state(queue, after, ("done", "failed"))["state"] == "done"
    assert [i for i, _ in _order(queue)] == [scan_id, after]


def _cli(*args):
    """(exit status, stdout, stderr) of `bliss-lite queue -s SESSION ARGS` as its own process."""
    run = subprocess.run([sys.executable, "-m", "bliss_lite", "queue", "-s", SESSION, *args], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ))
    return run.returncode, run.stdout, run.stderr


def _listed():
    status, out, err = _cli("list", "--json")
    assert status == 0, err
    return [(i["id"], i["state"]) for i in json.loads(out)]


def test_the_command_line_changes_the_queue_end_to_end(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    assert _cli("pause")[0] == 0
    assert queue.status()["mode"] == "paused"
    ids = []
    for text in ("ct(0.001)", "ascan(m3, 0, 1, 100, 0.05)", "sleep(0.001)"):
        status, out, err = _cli("add", text)
        assert status == 0, err
        ids.append(out.strip())
    first, scan_id, last = ids
    status, out, _ = _cli("add", "ct(0.003)", "--position", "0")
    assert status == 0
    dropped = out.strip()
    assert _listed() == [(dropped, "queued"), (first, "queued"), (scan_id, "queued"), (last, "queued")]
    assert queue.item(first)["who"].endswith("(cli)")

    status, out, err = _cli("add", "ascan(m3, 0, 1e9, 5, 0.1)")
    assert status == 1 and out == "" and "beyond high limit" in err and err.startswith("bliss-lite queue: ")
    assert _cli("remove", dropped)[0] == 0
    assert _cli("move", scan_id, "0")[0] == 0
    assert _listed() == [(scan_id, "queued"), (first, "queued"), (last, "queued")]
    status, _, err = _cli("move", "nosuch", "0")
    assert status == 1 and err == "bliss-lite queue: ValueError: item nosuch is not queued\n"
    status, _, err = _cli("remove", "nosuch")
    assert status == 1 and err == "bliss-lite queue: ValueError: item nosuch is not queued\n"

    status, out, _ = _cli("list")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("queue: paused; server ") and not lines[0].endswith("not running")
    assert [line.split()[:3] for line in lines[1:]] == [[scan_id, "queued", "ascan(m3,"], [first, "queued", "ct(0.001)"],
                                                        [last, "queued", "sleep(0.001)"]]

    assert _cli("resume")[0] == 0
    _wait_state(queue, scan_id, ("running",))
    assert _cli("pause")[0] == 0  # held, the scan is surely still running when stop comes
    deadline = time.monotonic() + 10
    while not queue.status()["holding"]:
        assert time.monotonic() < deadline, "the scan did not hold"
        time.sleep(0.02)
    assert _cli("stop")[0] == 0
    assert queue.status()["mode"] == "stopped"
    assert _wait_state(queue, scan_id, ("done", "failed", "aborted"))["state"] == "done"
    _still(queue, first, "queued")
    status, out, _ = _cli("list")
    assert f"{scan_id}  done        ascan(m3, 0, 1, 100, 0.05) scan " in out and " 101/101 points" in out
    assert _cli("clear")[0] == 0
    assert _listed() == [(scan_id, "done")]
    log = [(f[b"op"], f[b"who"].decode()) for _, f in queue_env.xrange(f"bliss_lite:queue:{SESSION}:log")
           if f[b"op"] != b"finished"]
    assert [op for op, _ in log] == [b"pause", b"add", b"add", b"add", b"add", b"add", b"remove", b"move",
                                     b"move", b"remove", b"resume", b"pause", b"stop", b"clear"]
    assert all(who.endswith("(cli)") for _, who in log)


def test_an_item_is_refused_while_a_shell_holds_its_axis(queue_env, servers, scan_session):
    import gevent

    from bliss_lite.controllers import axis_lease

    def wait(item_id):  # gevent.sleep: this shell's lease is renewed meanwhile
        deadline = time.monotonic() + 30
        while (item := queue.item(item_id))["state"] not in ("done", "failed", "aborted"):
            assert time.monotonic() < deadline, item
            gevent.sleep(0.02)
        return item

    def m4_in(item):
        with h5py.File(item["filename"], "r", locking=False) as h5:
            return float(h5[f"{item['entry']}/instrument/positioners/m4"][()])

    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    before = wait(queue.add("sct(0.001)")["id"])  # saved: its file has the positions
    held = axis_lease.hold(["m4"], "move")  # the shell moves m4
    try:
        holder = f"a shell's move on {socket.gethostname()}:{os.getpid()}"
        moved = wait(queue.add("mv(m4, 2)")["id"])
        assert moved["state"] == "failed" and moved["error"] == f"AxisLocked: m4 is moving in {holder}"
        scanned = wait(queue.add("ascan(m4, 0, 1, 5, 0.01)")["id"])
        assert scanned["state"] == "failed" and scanned["error"] == f"AxisLocked: m4 is moving in {holder}"
        assert scanned["points"] == 0  # refused before its first point
        other = wait(queue.add("mv(m0, 0.25)")["id"])  # another axis moves freely
        assert other["state"] == "done"
    finally:
        axis_lease.free(held)
    after = wait(queue.add("sct(0.001)")["id"])
    assert after["state"] == "done" and m4_in(after) == m4_in(before)  # the refused items moved nothing
    assert wait(queue.add("mv(m4, 0.5)")["id"])["state"] == "done"  # free again: the queue moves it
    assert m4_in(wait(queue.add("sct(0.001)")["id"])) == pytest.approx(0.5)
