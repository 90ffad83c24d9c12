# ruff: noqa: F811 - the fixtures imported from queue_helpers are the arguments of the tests
"""The queue server (issue 23): items run in order, survive kill -9, pause, abort, refusals,
and axis leases between processes. Each test starts its own server process and stops it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from queue_helpers import SESSION, Servers, _wait_scan_begun, _wait_state, queue_env, servers  # noqa: F401 - fixtures

from bliss_lite.data import axis_locks
from bliss_lite.data.queue_client import QueueClient, QueueError
from bliss_lite.data.queue_items import ItemError, Ref, parse


def test_parse_accepts_literals_and_names_only():
    call = parse("ascan(m0, 0, -1.5, 10, 0.1, diode1, save=False)")
    assert call.name == "ascan"
    assert call.args == (Ref("m0"), 0, -1.5, 10, 0.1, Ref("diode1"))
    assert call.kwargs == (("save", False),)
    assert call.text == "ascan(m0, 0, -1.5, 10, 0.1, diode1, save=False)"
    assert parse("anscan([(m0, 0, 1), (m1, 0, 2)], 4, 0.1)").text == "anscan([(m0, 0, 1), (m1, 0, 2)], 4, 0.1)"
    for hostile in ('__import__("os").system("id")', "ct(open('/etc/passwd'))", "ct(1 + 1)", "ct(*x)",
                    "ct(**x)", "m0.position", "ct(0.1); ct(1)", "ct(x.y)", "ct(lambda: 1)", "", "ct(f'{x}')"):
        with pytest.raises(ItemError):
            parse(hostile)


def test_items_run_in_order_listed_as_json(queue_env, servers, capsys):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    ids = [queue.add(text)["id"] for text in ("ct(0.001)", "ascan(m0, 0, 1, 3, 0.001)", "sleep(0.01)",
                                              "mv(m0, 0.5)", "ct(0.001)")]
    _wait_state(queue, ids[-1], ("done",))
    from bliss_lite.cli import main

    assert main(["queue", "-s", SESSION, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in listed] == ids
    assert [i["state"] for i in listed] == ["done"] * 5
    assert set(listed[0]) == {"id", "command", "state", "scan", "filename", "entry", "error"}
    assert listed[1]["command"] == "ascan(m0, 0, 1, 3, 0.001)"
    assert listed[1]["scan"] == listed[0]["scan"] + 1 == listed[4]["scan"] - 1
    assert listed[1]["entry"] == f"{listed[1]['scan']}.1" and listed[1]["filename"].endswith(".h5")
    started = [queue.item(i)["started"] for i in ids]
    assert started == sorted(started)


def test_bad_item_refused_with_reason(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    for text, reason in (("ascan(m0, 0, 1e9, 5, 0.1)", "beyond high limit"),
                         ("ascan(nosuch, 0, 1, 5, 0.1)", "'nosuch' is not an object"),
                         ("ascan(m0, 0, 1, 0, 0.1)", "intervals"),
                         ("exec('x')", "cannot be queued"),
                         ("ct(0.1, run=True)", "does not take run="),
                         ("script('../etc/passwd')", "file name"),
                         ("ct(__import__('os'))", "only numbers, strings")):
        with pytest.raises(QueueError) as refused:
            queue.add(text)
        assert reason in str(refused.value), (text, str(refused.value))
    assert queue.items() == []
    log = queue_env.xrange(f"bliss_lite:queue:{SESSION}:log")
    assert len(log) == 7 and all(fields[b"who"] == b"test" for _, fields in log), log


def test_kill_9_marks_running_interrupted_rest_stays_queued(queue_env, servers):
    first = servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    long_id = queue.add("ascan(m1, 0, 1, 100, 0.05)")["id"]
    next_id = queue.add("ct(0.001)")["id"]
    _wait_scan_begun(queue, long_id)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert queue.item(long_id)["state"] == "running"  # nobody has looked yet
    assert queue.item(next_id)["state"] == "queued"
    servers.start(queue_env)  # takes over at once: the dead server's pid is gone
    interrupted = _wait_state(queue, long_id, ("interrupted",), timeout=5)
    assert "stopped while it ran" in interrupted["error"]
    assert interrupted["entry"] is not None  # where it was, for resume_scan
    assert _wait_state(queue, next_id, ("done",))["state"] == "done"
    assert [i["id"] for i in queue.items()] == [long_id, next_id]


def test_pause_holds_between_points_then_resume(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    scan_id = queue.add("ascan(m2, 0, 1, 30, 0.05)")["id"]
    after = queue.add("ct(0.001)")["id"]
    _wait_state(queue, scan_id, ("running",))
    time.sleep(0.3)
    asked = time.monotonic()
    queue.pause()
    while not queue.status()["holding"]:
        assert time.monotonic() - asked < 2, "the scan did not hold"
        time.sleep(0.01)
    assert queue.status()["mode"] == "paused"
    time.sleep(1.0)
    assert queue.item(scan_id)["state"] == "running" and queue.status()["holding"]
    queue.resume()
    assert _wait_state(queue, scan_id, ("done",))["error"] is None
    assert _wait_state(queue, after, ("done",))["state"] == "done"
    assert not queue.status()["holding"]


def test_abort_within_a_second_then_stopped(queue_env, servers):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    scan_id = queue.add("ascan(m3, 0, 1, 100, 0.1)")["id"]
    after = queue.add("ct(0.001)")["id"]
    _wait_state(queue, scan_id, ("running",))
    time.sleep(0.3)
    asked = time.monotonic()
    assert queue.abort()["aborted"] == scan_id
    aborted = _wait_state(queue, scan_id, ("aborted",), timeout=1.0)
    assert time.monotonic() - asked < 1.0
    assert aborted["error"] == "aborted on request"
    time.sleep(0.3)
    assert queue.item(after)["state"] == "queued" and queue.status()["mode"] == "stopped"
    queue.remove(after)
    assert queue.item(after) is None


def test_second_process_refused_while_queue_moves_axis(queue_env, servers, scan_session):
    import gevent

    from bliss_lite.controllers.axis_lease import AxisLocked

    server = servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    scan_id = queue.add("ascan(m4, 0, 1, 100, 0.05)")["id"]
    item = _wait_state(queue, scan_id, ("running",))
    while item["scan"] is None:
        gevent.sleep(0.02)
        item = queue.item(scan_id)
    with pytest.raises(AxisLocked) as refused:
        scan_session["mv"](scan_session["m4"], 2)
    assert str(refused.value).startswith(f"m4 is moving in the queue server's scan {item['scan']} on ")
    assert str(refused.value).endswith(f":{server.pid}")
    scan_session["mv"](scan_session["m0"], 0.25)  # another axis moves freely
    queue.abort()
    _wait_state(queue, scan_id, ("aborted",), timeout=5)
    deadline = time.monotonic() + 5
    while axis_locks.holder_of(queue_env, SESSION, "m4") is not None:  # released once the scan cleaned up
        assert time.monotonic() < deadline
        gevent.sleep(0.05)
    scan_session["mv"](scan_session["m4"], 0.5)
    assert scan_session["m4"].position == pytest.approx(0.5)


def test_lease_of_a_killed_process_expires(queue_env, tmp_path):
    code = ("import sys, gevent; from bliss_lite.controllers import axis_lease;"
            "from bliss_lite.data.redis_server import connect; c = connect(sys.argv[1]);"
            "s = axis_lease.LeaseService('test', lambda: c, 'a shell'); s.hold(['m3'], 'move');"
            "print('held', flush=True); gevent.sleep(600)")
    url = os.environ["BLISS_LITE_REDIS_URL"]
    child = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        time.sleep(axis_locks.TTL_MS / 1000 + 0.5)  # renewed past its first TTL
        ok, refused = axis_locks.acquire(queue_env, SESSION, ["m3"], "me")
        assert not ok and refused[0] == "m3" and refused[1].endswith(f":{child.pid}")
        assert refused[1].startswith("a shell's move on ")
        child.kill()
        child.wait(timeout=10)
        killed = time.monotonic()
        while not axis_locks.acquire(queue_env, SESSION, ["m3"], "me")[0]:
            assert time.monotonic() - killed < axis_locks.TTL_MS / 1000 + 1
            time.sleep(0.05)
        axis_locks.release(queue_env, SESSION, ["m3"], "me")
        assert axis_locks.holder_of(queue_env, SESSION, "m3") is None
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        child.stdout.close()


def test_renewal_takes_back_an_expired_lease_but_reports_one_taken(queue_env):
    """A holder too busy to renew within the TTL keeps its axis if nobody took it meanwhile."""
    assert axis_locks.acquire(queue_env, SESSION, ["m3"], "me", ttl_ms=50)[0]
    time.sleep(0.2)  # expired: nobody else wanted the axis
    assert axis_locks.holder_of(queue_env, SESSION, "m3") is None
    assert axis_locks.renew(queue_env, SESSION, ["m3"], "me") == []
    assert axis_locks.holder_of(queue_env, SESSION, "m3") == "me"
    assert 0 < queue_env.pttl(axis_locks.axis_lock_key(SESSION, "m3")) <= axis_locks.TTL_MS
    axis_locks.release(queue_env, SESSION, ["m3"], "me")
    assert axis_locks.acquire(queue_env, SESSION, ["m3"], "other")[0]
    assert axis_locks.renew(queue_env, SESSION, ["m3"], "me") == ["m3"]  # another holds it: lost
    assert axis_locks.holder_of(queue_env, SESSION, "m3") == "other"
    axis_locks.release(queue_env, SESSION, ["m3"], "other")


def test_shell_queue_text_from_objects(test_session):
    from bliss_lite.shell.queue_shell import as_text

    ns = test_session
    assert as_text(ns["ascan"], ns["m0"], 0, 1, 10, 0.1, ns["diode1"]) == "ascan(m0, 0, 1, 10, 0.1, diode1)"
    assert as_text("ct(0.1)") == "ct(0.1)"
    assert as_text(ns["anscan"], [(ns["m0"], 0, 1)], 4, 0.1, save=False) == "anscan([(m0, 0, 1)], 4, 0.1, save=False)"


def test_lease_of_a_dead_process_of_this_host_is_taken_at_once(queue_env):
    import socket

    from bliss_lite.controllers import axis_lease

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    key = f"bliss_lite:session:{SESSION}:axis_lock:m2"
    queue_env.set(key, f"a shell's move on {socket.gethostname()}:{int(dead.stdout)}", px=60000)
    service = axis_lease.LeaseService(SESSION, lambda: queue_env, "a shell")
    held = service.hold(["m2"], "move")
    assert queue_env.get(key).decode().endswith(f":{os.getpid()}")
    service.free(held)
    assert queue_env.get(key) is None
    queue_env.set(key, f"a shell's move on {socket.gethostname()}:1", px=60000)  # alive (init), not ours
    with pytest.raises(axis_lease.AxisLocked, match=r"^m2 is moving in a shell's move on .*:1$"):
        service.hold(["m2"], "move")
    assert service.counts == {}
    queue_env.delete(key)


def test_sigterm_ends_the_server_marking_the_running_item_interrupted(queue_env, servers):
    server = servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    scan_id = queue.add("ascan(m1, 0, 1, 100, 0.05)")["id"]
    next_id = queue.add("ct(0.001)")["id"]
    _wait_state(queue, scan_id, ("running",))
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    item = queue.item(scan_id)
    assert item["state"] == "interrupted" and item["error"] == "the queue server was stopped while it ran"
    assert queue.item(next_id)["state"] == "queued"
    assert queue_env.get(f"bliss_lite:queue:{SESSION}:server") is None  # the next server starts at once
    assert queue_env.get(f"bliss_lite:queue:{SESSION}:running") is None


def test_the_shell_queues_by_object_and_reads_the_queue(queue_env, servers, scan_session):
    servers.start(queue_env)
    ns = scan_session
    item_id = ns["queue"].add(ns["ascan"], ns["m0"], 0, 1, 2, 0.001, ns["diode1"])
    done = ns["queue"].wait(item_id, timeout=30)
    assert done["command"] == "ascan(m0, 0, 1, 2, 0.001, diode1)" and done["state"] == "done"
    assert done["who"].endswith("(shell)")
    assert f"{item_id}  done" in repr(ns["queue"])
    with pytest.raises(QueueError, match="beyond high limit"):
        ns["queue"].add("ascan(m0, 0, 1e6, 2, 0.1)")


def test_a_script_of_the_configured_folder_runs_and_no_other(queue_env, servers, tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "align.py").write_text("mv(m0, 0.75)\nALIGNED = m0.position\n")
    servers.start(queue_env, "--scripts", str(folder))
    queue = QueueClient(queue_env, SESSION, who="test")
    done = queue.wait(queue.add("script('align.py')")["id"], timeout=30)
    assert done["state"] == "done" and done["command"] == "script('align.py')"
    for name, reason in (("missing.py", "no missing.py in"), ("../align.py", "file name"), ("align", "file name")):
        with pytest.raises(QueueError, match=reason):
            queue.add(f"script({name!r})")
    failing = folder / "fails.py"
    failing.write_text("raise RuntimeError('beam lost')\n")
    failed = queue.wait(queue.add("script('fails.py')")["id"], timeout=30)
    assert failed["state"] == "failed" and failed["error"] == "RuntimeError: beam lost"


def test_an_xrdct_scan_killed_with_its_server_is_resumed_first_from_its_file(queue_env, servers):
    import h5py

    first = servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    # checking an XRD-CT item loads the detector geometry (pyFAI): 10 s and more on a loaded host
    scan_id = queue.add("xrdct(omega, x, z, -1, 1, 8, [0.0], 0.03, n_omega=8, fast_axis='x')", timeout=120)["id"]
    after = queue.add("ct(0.001)")["id"]
    _wait_scan_begun(queue, scan_id)
    time.sleep(1.0)  # a few lines measured and flushed
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    servers.start(queue_env)
    # marked interrupted once its resume_scan is checked and queued first: the geometry again
    interrupted = _wait_state(queue, scan_id, ("interrupted",), timeout=120)
    assert "resumed_by" in interrupted, (interrupted, queue_env.xrange(f"bliss_lite:queue:{SESSION}:log"))
    resumed = queue.wait(interrupted["resumed_by"], timeout=60)
    assert resumed["command"] == f"resume_scan({interrupted['filename']!r}, '{interrupted['scan']}.1')"
    assert resumed["state"] == "done", resumed["error"]
    assert resumed["entry"] == f"{interrupted['scan']}.2" and resumed["filename"] == interrupted["filename"]
    assert queue.wait(after, timeout=30)["state"] == "done"
    assert [i["id"] for i in queue.items()] == [scan_id, resumed["id"], after]  # the resume ran first
    with h5py.File(interrupted["filename"], "r", locking=False) as h5:
        assert h5[f"{resumed['entry']}/end_reason"][()] == b"SUCCESS"


def test_serve_option_runs_the_queue_server(queue_env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bliss_lite", "-s", SESSION, "--serve"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        queue = QueueClient(queue_env, SESSION, who="test")
        deadline = time.monotonic() + 30
        while queue.status()["server"] is None or not queue.status()["server"].endswith(f":{proc.pid}"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert queue.wait(queue.add("ct(0.001)")["id"], timeout=30)["state"] == "done"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
