"""End to end in headless Chromium: a session runs scans in its own process, the page of
`bliss-lite view` shows the curve gaining the scan's points and the detector frame appearing.
A screenshot of each page is saved as a test artefact ($BLISS_LITE_TEST_ARTEFACTS, default
test-artefacts/ in the checkout)."""
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from view_helpers import ViewServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
HANG_LOOKS = 2000  # looks at the page before giving up: a hang guard, nothing is timed
ARTEFACTS = Path(os.environ.get("BLISS_LITE_TEST_ARTEFACTS", Path(__file__).resolve().parents[1] / "test-artefacts"))

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


@contextlib.contextmanager
def browser_page(url, viewport=(1400, 1100)):
    """Headless Chromium at `url` (`viewport` (width, height), None for the default); the test
    fails if the page's script raised meanwhile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(**({} if viewport is None else
                                   {"viewport": {"width": viewport[0], "height": viewport[1]}}))
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        yield page
        browser.close()
        assert not errors, errors


@pytest.fixture
def page(scan_session, shared_redis):
    server = ViewServer("--redis", shared_redis)
    with browser_page(server.url) as page:
        page.wait_for_function("() => window.blissView && window.blissView.connected")
        yield page
    server.close()


def session(code, shared_redis):
    """A session in its own process running `code`, as a user's shell would."""
    return subprocess.Popen([sys.executable, "-m", "bliss_lite", "-s", "test", "-c", code],
                            env={**os.environ, "BLISS_LITE_REDIS_URL": shared_redis},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def shot(page, name):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / name), full_page=True)
    assert (ARTEFACTS / name).stat().st_size > 10000


def test_the_curve_gains_the_scans_points_as_they_come(page, shared_redis, data_root):
    snapshots = []  # a page loads a scan once; messages bring the rest (no reload per message)
    page.on("request", lambda r: snapshots.append(r.url) if "/api/scans/" in r.url and r.url.count("/") == 5 else None)
    running = session("plotselect(gauss); ascan(m0, 3, 7, 60, 0.04, gauss, diode1)", shared_redis)
    seen, looks = [], 0
    while running.poll() is None or not seen or seen[-1] < 61:
        looks += 1
        assert looks < HANG_LOOKS, f"hang guard: the page stopped at {seen[-1:]} points"
        # the count of the curve drawn, with the title of the scan it was drawn for (the header
        # may already show a new scan while the curve still shows the previous one's points)
        points = page.evaluate("(blissView.drawnTitle || '').startsWith('ascan m0 3 7 60') ? blissView.points : 0")
        if not seen or points != seen[-1]:
            seen.append(points)
        if running.poll() not in (None, 0):
            pytest.fail(running.stderr.read())
        time.sleep(0.05)
    assert seen == sorted(seen) and seen[-1] == 61
    assert any(0 < n < 61 for n in seen), seen  # the page drew points while the scan ran
    with h5py.File(data_root / "test" / "sample.h5", "r") as h5:
        entry = sorted(h5, key=lambda e: float(e))[-1]
        gauss = h5[f"{entry}/measurement/gauss"][()].tolist()
    assert page.evaluate("blissView.columns.gauss") == gauss
    key = page.evaluate("blissView.shown")
    assert sum(url.endswith("/api/scans/" + key.replace(":", "%3A")) for url in snapshots) == 1, snapshots
    assert page.evaluate("blissView.selected") == ["gauss"]
    page.wait_for_function("() => document.getElementById('markers').textContent.includes('peak at 5.0000')")
    # the end state may come in a message after the last points: the header shows it at the next draw
    page.wait_for_function("() => document.getElementById('scan-state').textContent === 'SUCCESS'")
    shot(page, "view-ascan.png")


def test_the_detector_frame_appears_during_an_xrdct_scan(page, shared_redis, data_root):
    running = session("xrdct(omega, x, z, -1, 1, 8, [0.0], 0.05, n_omega=10, fast_axis='omega', "
                      "hooks={'integration': {'npt': 100}})", shared_redis)
    page.wait_for_function("() => blissView.frames > 0 && blissView.desc.state === 'STARTED'", timeout=60000)
    assert running.wait(120) == 0, running.stderr.read()
    page.wait_for_function("() => blissView.desc.state === 'CLOSED' && blissView.frameIndex === 79", timeout=30000)
    page.wait_for_function("() => document.getElementById('frame-img').naturalWidth === 160")  # the test ROI
    page.wait_for_function("() => blissView.patternCount === 80", timeout=30000)
    assert page.locator("#frame-panel").is_visible() and page.locator("#pattern-panel").is_visible()
    shot(page, "view-xrdct.png")
