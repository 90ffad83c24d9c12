# ruff: noqa: F811 - the fixtures imported from queue_helpers are the arguments of the tests
"""The queue over the live view's HTTP server: JSON routes, who asked, and the guards."""
import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from queue_helpers import SESSION, Servers, _wait_state, queue_env  # noqa: F401 - the fixture
from view_helpers import ViewServer

from bliss_lite.data.queue_client import QueueClient
from bliss_lite.view.server import create_app

TOKEN = "t0ken-with-enough-characters"


def _post(view, path, body, content_type="application/json"):
    request = urllib.request.Request(view.base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def test_http_adds_pauses_and_lists_with_who_asked(queue_env, shared_redis, tmp_path):
    servers = Servers(tmp_path)
    view = None
    try:
        servers.start(queue_env)
        view = ViewServer("--redis", shared_redis)
        item = _post(view, f"/api/queue/{SESSION}/add", {"command": "ascan(m1, 0, 1, 20, 0.05)"})["item"]
        queue = QueueClient(queue_env, SESSION)
        _wait_state(queue, item["id"], ("running",))
        _post(view, f"/api/queue/{SESSION}/pause", {})
        state = view.get(f"/api/queue/{SESSION}")
        assert state["status"]["mode"] == "paused"
        assert [i["id"] for i in state["items"]] == [item["id"]]
        assert state["items"][0]["command"] == "ascan(m1, 0, 1, 20, 0.05)"
        assert SESSION in view.get("/api/queues")["sessions"]
        page = view.get("/")
        assert b'id="queue-pause"' in page and b"/static/queue.js" in page
        _post(view, f"/api/queue/{SESSION}/resume", {})
        assert _wait_state(queue, item["id"], ("done",))["state"] == "done"
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(view, f"/api/queue/{SESSION}/add", {"command": "ascan(m1, 0, 1e9, 2, 0.1)"})
        assert refused.value.code == 409 and "beyond high limit" in json.loads(refused.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError) as form:  # a cross-site form cannot send JSON
            _post(view, f"/api/queue/{SESSION}/abort", {}, content_type="application/x-www-form-urlencoded")
        assert form.value.code == 415
        log = [f for _, f in queue_env.xrange(f"bliss_lite:queue:{SESSION}:log") if f[b"op"] != b"finished"]
        assert [f[b"op"] for f in log] == [b"add", b"pause", b"resume", b"add"]
        assert all(f[b"who"] == b"http 127.0.0.1 (loopback)" for f in log)
    finally:
        if view is not None:
            view.close()
        servers.stop_all()


def _call(app, method, path, client_host, headers=()):
    """(status, body) of one request handed straight to the ASGI app, from `client_host`."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8765"), *headers], "client": (client_host, 40000),
             "server": ("127.0.0.1", 8765), "scheme": "http", "http_version": "1.1", "root_path": ""}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_http_changes_from_another_host_need_the_token():
    watcher = SimpleNamespace(client=None)
    json_type = [(b"content-type", b"application/json")]
    status, body = _call(create_app(watcher), "POST", f"/api/queue/{SESSION}/abort", "10.1.2.3", json_type)
    assert status == 403 and b"needs the view's token" in body
    guarded = create_app(watcher, token=TOKEN, loopback=False)
    status, _ = _call(guarded, "POST", f"/api/queue/{SESSION}/abort", "10.1.2.3", json_type)
    assert status == 401
    status, _ = _call(guarded, "GET", f"/api/queue/{SESSION}", "10.1.2.3")
    assert status == 401


def _held_state(view):
    """GET /api/queue/SESSION once the running scan holds and its progress no longer changes."""
    deadline = time.monotonic() + 30
    last = None
    while True:
        state = view.get(f"/api/queue/{SESSION}")
        running = [i for i in state["items"] if i["state"] == "running"]
        now = (state["status"]["holding"], running and running[0]["points"])
        if now[0] and now == last:
            return state
        assert time.monotonic() < deadline, state
        last = now
        time.sleep(0.3)


def test_http_shows_the_running_scans_points_of_expected(queue_env, shared_redis, tmp_path):
    import h5py

    servers = Servers(tmp_path)
    view = None
    try:
        servers.start(queue_env)
        view = ViewServer("--redis", shared_redis)
        item = _post(view, f"/api/queue/{SESSION}/add", {"command": "ascan(m1, 0, 1, 200, 0.02)"})["item"]
        after = _post(view, f"/api/queue/{SESSION}/add", {"command": "ct(0.001)"})["item"]
        queue = QueueClient(queue_env, SESSION)
        _wait_state(queue, item["id"], ("running",))
        queued = view.get(f"/api/queue/{SESSION}")["items"][-1]
        assert queued["id"] == after["id"] and queued["points"] is None and queued["expected"] is None
        _post(view, f"/api/queue/{SESSION}/pause", {})
        state = _held_state(view)
        shown = state["items"][0]
        assert shown["id"] == item["id"] and shown["expected"] == 201
        assert 1 <= shown["points"] < 201
        assert state["status"]["progress"] == {"id": item["id"], "scan": shown["scan"], "points": shown["points"],
                                               "expected": 201}
        _post(view, f"/api/queue/{SESSION}/abort", {})
        ended = _wait_state(queue, item["id"], ("aborted",))
        with h5py.File(ended["filename"], "r", locking=False) as h5:
            in_file = len(h5[f"{ended['entry']}/measurement/m1"])
        assert ended["points"] == shown["points"] == in_file  # held: no point taken after what was shown
        listed = view.get(f"/api/queue/{SESSION}")
        assert [(i["points"], i["expected"]) for i in listed["items"]] == [(in_file, 201), (None, None)]
        assert listed["status"]["progress"] is None
        _post(view, f"/api/queue/{SESSION}/resume", {})
        _wait_state(queue, after["id"], ("done",))
        assert [(i["points"], i["expected"]) for i in view.get(f"/api/queue/{SESSION}")["items"]] \
            == [(in_file, 201), (1, 1)]
    finally:
        if view is not None:
            view.close()
        servers.stop_all()



def test_http_change_from_another_host_with_the_token_is_accepted(queue_env, tmp_path, caplog):
    servers = Servers(tmp_path)
    try:
        servers.start(queue_env)
        queue = QueueClient(queue_env, SESSION)
        app = create_app(SimpleNamespace(client=queue_env), token=TOKEN, loopback=False)
        json_type = (b"content-type", b"application/json")
        wrong = [json_type, (b"authorization", b"Bearer " + TOKEN.upper().encode())]
        status, _ = _call(app, "POST", f"/api/queue/{SESSION}/pause", "10.1.2.3", wrong)
        assert status == 401 and queue.status()["mode"] == "running"
        bearer = [json_type, (b"authorization", f"Bearer {TOKEN}".encode())]
        with caplog.at_level("INFO", logger="bliss_lite.view.queue_routes"):
            status, body = _call(app, "POST", f"/api/queue/{SESSION}/pause", "10.1.2.3", bearer)
        assert status == 200 and json.loads(body) == {"ok": True}
        assert queue.status()["mode"] == "paused"
        assert f"queue {SESSION}: pause {{}} asked by http 10.1.2.3 (token)" in caplog.messages
        status, body = _call(app, "GET", f"/api/queue/{SESSION}", "10.1.2.3", bearer)
        assert status == 200 and json.loads(body)["status"]["mode"] == "paused"
        log = [(f[b"op"], f[b"who"], f[b"result"]) for _, f in queue_env.xrange(f"bliss_lite:queue:{SESSION}:log")]
        assert log == [(b"pause", b"http 10.1.2.3 (token)", b"ok")]  # the refused one never reached it
    finally:
        servers.stop_all()


def test_the_queue_panel_script_has_no_html_sink():
    from test_view_hostile import SINKS, STATIC

    script = (STATIC / "queue.js").read_text()
    assert "textContent" in script and not SINKS.findall(script)


@pytest.mark.skipif(not shutil.which("node"), reason="no node to run the panel's script")
def test_the_queue_panel_shows_items_as_text_and_pause_posts_json():
    from test_view_hostile import STATIC

    here = Path(__file__).parent
    out = subprocess.run(["node", str(here / "queue_panel_stub.js"), str(STATIC / "queue.js")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    shown = json.loads(out)
    assert shown["session"] == "test" and shown["mode"] == "running" and shown["hidden"] is False
    assert [r["text"] for r in shown["rows"]] == ["done #3 1/1 points  ct(0.1)",
                                                  "running #4 12/200 points  <img src=x onerror=alert(1)>",
                                                  "running #5 7 points  timescan(0.1)", "queued  ct(0.2)"]
    assert [r["cls"] for r in shown["rows"]] == ["queue-done", "queue-running", "queue-running", "queue-queued"]
    assert shown["posts"] == [{"url": "/api/queue/test/pause", "type": "application/json", "body": "{}"}]
