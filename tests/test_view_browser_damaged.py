"""In headless Chromium: the page says what the server could not read, as text. A phase map
whose reconstructed.h5 is cut short shows the server's line naming the file in its caption,
undecodable Redis entries are counted in the header, and a PDF-CT scan whose pdf.h5 is cut
short shows its panel with the line naming that file (skipped without Debian's chromium, as
tests/test_view_browser.py)."""
import shutil

import pytest
import redis
from test_view_browser import CHROMIUM, browser_page, shot
from test_view_damaged_files import cut_short, maps_scan, view_server, write_maps
from view_helpers import pdf_ct_scan

from bliss_lite.data.model import reconstruction_live_key as live_key
from bliss_lite.view import live_scan

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


def test_the_page_names_a_damaged_file_and_counts_bad_entries(shared_redis, tmp_path, monkeypatch):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    monkeypatch.setattr(live_scan, "VIEW_MAPS_BYTES", 16)  # one 2 x 2 map held: height 0 is read from the file
    publisher, reconstructed = maps_scan(client, tmp_path / "maps.h5", 2)
    write_maps(reconstructed)
    cut_short(reconstructed)
    client.xadd(live_key(publisher.key), {"z_index": 0, "phase": "A", "shape": "{not json", "data": b"", "complete": 1})
    try:
        with view_server(client, started=True) as base, browser_page(base + "/") as page:
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            page.wait_for_function(f"() => blissView.shown === {publisher.key!r}")
            page.wait_for_function("() => document.getElementById('recon-caption').textContent.includes('truncated')")
            assert page.text_content("#recon-caption").startswith(f"{reconstructed}: truncated HDF5 file")
            page.wait_for_function("() => document.getElementById('bad-entries').textContent !== ''")
            assert page.text_content("#bad-entries") == "1 Redis entry left out (undecodable)"
            assert page.get_attribute("#bad-entries", "title").startswith(f"{live_key(publisher.key)} entry ")
            shot(page, "view-damaged-map.png")

            key, master = pdf_ct_scan(shared_redis, tmp_path, number=906)  # the newest scan: the page follows
            results = master.with_name("pdfct_scan0001") / "pdf.h5"
            cut_short(results)
            page.wait_for_function(f"() => blissView.shown === {key!r}")
            page.wait_for_function("() => document.getElementById('pdf-error').textContent.includes('truncated')",
                                   timeout=30000)
            assert page.locator("#pdf-panel").is_visible()
            assert page.text_content("#pdf-error").startswith(f"{results}: truncated HDF5 file")
            assert page.text_content("#bad-entries") == ""
            shot(page, "view-damaged-pdf.png")
            assert page.evaluate("window.pwned") is None
    finally:
        client.delete(publisher.key, live_key(publisher.key))
