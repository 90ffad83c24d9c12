"""In headless Chromium: a scan whose title and counter names are HTML shows them as text and
runs none of it (skipped without Debian's chromium, as tests/test_view_browser.py)."""
import shutil

import pytest
from test_view_browser import CHROMIUM, browser_page
from test_view_hostile import HOSTILE, publish_hostile_scan
from view_helpers import ViewServer

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


def test_hostile_names_show_as_text_and_run_nothing(shared_redis):
    server = ViewServer("--redis", shared_redis)
    try:
        with browser_page(server.url, viewport=None) as page:
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            key = publish_hostile_scan(shared_redis)
            page.evaluate("document.getElementById('follow').checked = true")
            page.wait_for_function(f"() => window.blissView.shown === {key!r} && window.blissView.desc", timeout=20000)
            page.wait_for_function("() => document.querySelectorAll('#counter-choice label').length === 4", timeout=20000)
            labels = page.eval_on_selector_all("#counter-choice label", "ls => ls.map(l => l.textContent.trim())")
            assert labels == HOSTILE
            listed = page.eval_on_selector_all("#scan-list li", "ls => ls.map(l => l.textContent)")
            assert any(HOSTILE[1] in text for text in listed), listed
            assert page.evaluate("window.pwned") is None
            assert page.evaluate("document.querySelectorAll('img[src=x], svg[onload], script:not([src])').length") == 0
    finally:
        server.close()
