"""Hostile names in the live view: shown as text, never run; a strict CSP on every answer.

A counter, phase or scan title can carry HTML (from the session YAML, a scan's hooks argument
or anyone who writes to Redis). The page builds its elements with textContent (checked here
statically), the server sends a Content-Security-Policy that allows no inline script (checked
on real answers), and the names travel through the API unchanged. In a browser:
tests/test_view_browser_hostile.py.
"""
from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import redis
from view_helpers import ViewServer

from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.view.headers import CSP

STATIC = Path(__file__).parents[1] / "bliss_lite" / "view" / "static"
HOSTILE = ["<img src=x onerror=\"window.pwned=1\">", "</option><script>window.pwned=2</script>",
           "a\"><svg onload=window.pwned=3>", "$\\alpha$ & <b>bold</b>"]
SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                   r"setTimeout\(\s*[\"'`]|setInterval\(\s*[\"'`]|createContextualFragment|DOMParser")


def test_the_page_script_has_no_html_sink():
    script = (STATIC / "view.js").read_text()
    assert not SINKS.findall(script)
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style (the CSP refuses it)"


def test_the_policy_allows_no_inline_script_nor_eval():
    rules = dict(rule.strip().split(" ", 1) for rule in CSP.split(";"))
    assert rules["default-src"] == "'none'" and rules["script-src"] == "'self'" and rules["style-src"] == "'self'"
    assert "unsafe" not in CSP and rules["frame-ancestors"] == "'none'" and rules["base-uri"] == "'none'"


def publish_hostile_scan(url):
    """A scan whose title and counters are HTML, as anyone who can write to Redis may publish."""
    client = redis.Redis.from_url(url)
    counters = [ChannelSpec(name) for name in HOSTILE]
    publisher = ScanPublisher(client, session="test", number=1, name="ascan", channels=counters,
                              scan_info={"title": HOSTILE[1], "counters": HOSTILE, "npoints": 3})
    publisher.create(then=("PREPARED", "STARTED"))
    publisher.publish({name: np.arange(3.0) for name in HOSTILE})
    publisher.seal("SUCCESS")
    return publisher.key


def headers_of(server, path, **request_headers):
    request = urllib.request.Request(server.base + path, headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


@pytest.fixture(scope="module")
def server(shared_redis):
    view = ViewServer("--redis", shared_redis)
    yield view
    view.close()


def test_every_answer_carries_the_policy(server, shared_redis):
    key = publish_hostile_scan(shared_redis)
    for path, status in [("/", 200), ("/static/view.js", 200), ("/api/scans", 200), (f"/api/scans/{key}", 200),
                         ("/api/scans/bliss_lite:scan:none", 404), ("/nothing", 404)]:
        code, headers = headers_of(server, path)
        assert code == status, path
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff"
    code, headers = headers_of(server, "/", Host="evil.example")  # refused by the host check: still covered
    assert code == 400 and headers["Content-Security-Policy"] == CSP


def test_hostile_names_travel_unchanged_as_data(server, shared_redis):
    key = publish_hostile_scan(shared_redis)
    scan = server.get(f"/api/scans/{key}")
    assert scan["title"] == HOSTILE[1]
    assert scan["counters"] == HOSTILE
    assert {name: scan["columns"][name] for name in HOSTILE} == {name: [0.0, 1.0, 2.0] for name in HOSTILE}
