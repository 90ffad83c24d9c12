"""In headless Chromium: a scan whose title and counter names are HTML shows them as text and
runs none of it (skipped without Debian's chromium, as tests/test_view_browser.py)."""
import shutil
from contextlib import contextmanager

import pytest
from test_view_browser import CHROMIUM, browser_page
from test_view_hostile import HOSTILE, publish_hostile_scan
from view_helpers import ViewServer, pdf_ct_scan

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


@contextmanager
def following_page(shared_redis):
    """A view server and its page in Chromium, following the newest scan; every dialog a
    script would open is recorded (and dismissed): (page, dialogs)."""
    server = ViewServer("--redis", shared_redis)
    try:
        with browser_page(server.url, viewport=None) as page:
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            page.evaluate("document.getElementById('follow').checked = true")
            yield page, dialogs
    finally:
        server.close()


PHASES = ["<img src=x onerror=alert(1)>", "$\\frac{1}{0}$", "a\"><svg onload=window.pwned=3>"]


def test_an_xrdct_scan_with_hostile_phase_names_shows_them_as_text(scan_session, shared_redis, data_root):
    """The reported vector: a reconstruction hook's phase names (its dict keys) reach the page's
    map chooser, caption and map image as text; no script runs, no dialog opens."""
    import os
    import subprocess
    import sys

    phases = {name: material for name, material in zip(PHASES, ["CeO2", "LaB6", "CeO2"])}
    code = ("xrdct(omega, x, z, -0.5, 0.5, 4, [0.0], 0.02, n_omega=4, fast_axis='x', "
            f"hooks={{'integration': {{'npt': 50, 'workers': 0}}, 'reconstruction': {{'phases': {phases!r}}}}})")
    with following_page(shared_redis) as (page, dialogs):
        run = subprocess.run([sys.executable, "-m", "bliss_lite", "-s", "test", "-c", code], timeout=300,
                             env={**os.environ, "BLISS_LITE_REDIS_URL": shared_redis}, capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stderr
        page.wait_for_function("() => blissView.desc && blissView.desc.state === 'CLOSED' "
                               "&& blissView.desc.phases.length === 3", timeout=60000)
        shown = page.evaluate("blissView.desc.phases")
        assert sorted(shown) == sorted(PHASES)  # unchanged, in the order the file keeps them
        options = page.eval_on_selector_all("#recon-what option", "os => os.map(o => [o.value, o.textContent])")
        assert [o for o in options if o[0].startswith("phase:")] == [[f"phase:{p}", f"phase {p}"] for p in shown]
        for name in PHASES:
            page.select_option("#recon-what", f"phase:{name}")
            page.wait_for_function("([name, caption]) => { const img = document.getElementById('recon-img'); "
                                   "return img.src.includes('phase=' + encodeURIComponent(name)) && "
                                   "img.dataset.busy === '0' && img.naturalWidth > 0 && "
                                   "document.getElementById('recon-caption').textContent === caption; }",
                                   arg=[name, f"phase {name}, z 0"], timeout=30000)  # the map drawn
        assert page.evaluate("window.pwned") is None and dialogs == []
        assert page.evaluate("document.querySelectorAll('img[src=x], svg[onload], script:not([src])').length") == 0


WINDOWS = {"<img src=x onerror=alert(1)>": [1.5, 1.7], "$\\frac{1}{0}$ & <b>O-O</b>": [2.5, 2.75]}


def test_pdf_window_names_show_as_text_and_run_nothing(shared_redis, tmp_path):
    with following_page(shared_redis) as (page, dialogs):
        key, _ = pdf_ct_scan(shared_redis, tmp_path, number=905, windows=WINDOWS, title="pdf-ct, hostile windows")
        page.wait_for_function(f"() => blissView.shown === {key!r} && blissView.pdfMaps >= 1", timeout=30000)
        assert sorted(page.evaluate("Object.keys(blissView.desc.pdf.windows)")) == sorted(WINDOWS)
        names = page.text_content("#pdf-window-names")
        assert all(f"{name} {lo}–{hi}" in names for name, (lo, hi) in WINDOWS.items()), names
        assert page.evaluate("document.getElementById('pdf-window-names').children.length") == 0  # text only
        assert page.evaluate("window.pwned") is None and dialogs == []
        assert page.evaluate("document.querySelectorAll('img[src=x], b, script:not([src])').length") == 0
