# ruff: noqa: F811 - the fixtures imported from queue_helpers are the arguments of the tests
"""The queue panel in headless Chromium: a queued scan shows up running with its scan number
and its points taken of those expected, the pause button holds it (the points shown are then
those the server reports), resume lets it go on, stop sets the queue stopped and abort ends
the scan."""
import shutil

import pytest
from queue_helpers import SESSION, _wait_state, queue_env, servers  # noqa: F401 - fixtures
from test_view_browser import CHROMIUM, browser_page, shot
from view_helpers import ViewServer

from bliss_lite.data.queue_client import QueueClient

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


def test_the_page_shows_the_running_item_and_its_pause_button_holds_it(queue_env, servers, shared_redis):
    servers.start(queue_env)
    queue = QueueClient(queue_env, SESSION, who="test")
    item_id = queue.add("ascan(m2, 0, 1, 200, 0.05)")["id"]
    view = ViewServer("--redis", shared_redis)
    try:
        url = view.url + ("&" if "?" in view.url else "?") + f"queue={SESSION}"
        with browser_page(url, viewport=(1400, 900)) as page:
            page.wait_for_function("() => document.getElementById('queue-items').textContent.includes('running #')")
            assert "ascan(m2, 0, 1, 200, 0.05)" in page.text_content("#queue-items")
            page.wait_for_function("() => /^running #\\d+ \\d+\\/201 points  ascan\\(m2, /"
                                   ".test(document.getElementById('queue-items').textContent)")
            page.click("#queue-pause")
            page.wait_for_function("() => document.getElementById('queue-mode').textContent === 'paused, holding'")
            assert queue.status()["holding"] and queue.item(item_id)["state"] == "running"
            held = queue.status()["progress"]
            assert held["id"] == item_id and held["expected"] == 201 and held["points"] >= 1
            shown = f"running #{held['scan']} {held['points']}/201 points  ascan(m2, 0, 1, 200, 0.05)"
            page.wait_for_function("(text) => document.getElementById('queue-items').textContent === text", arg=shown)
            shot(page, "queue_paused.png")
            page.click("#queue-resume")
            page.wait_for_function("() => document.getElementById('queue-mode').textContent === 'running'")
            page.click("#queue-stop")  # the scan goes on (stop is "after this item"); nothing follows
            page.wait_for_function("() => document.getElementById('queue-mode').textContent === 'stopped'")
            assert queue.status()["mode"] == "stopped"
            page.click("#queue-abort")
            page.wait_for_function("() => document.getElementById('queue-items').textContent.includes('aborted #')")
            assert queue.item(item_id)["state"] == "aborted"
    finally:
        view.close()
