"""In headless Chromium: a PDF-CT scan's panel shows the map of an r window, a click on a voxel
draws that voxel's G(r) (r in A, G in A^-2), new window bounds redraw the map and a bad window
shows the server's refusal as text (skipped without Debian's chromium, as
tests/test_view_browser.py)."""
import shutil

import h5py
import numpy as np
import pytest
from test_view_browser import CHROMIUM, browser_page, shot
from view_helpers import ViewServer, pdf_ct_scan

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


def test_clicking_a_voxel_shows_its_gr_and_the_window_redraws_the_map(shared_redis, tmp_path):
    server = ViewServer("--redis", shared_redis)
    try:
        with browser_page(server.url) as page:
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            key, path = pdf_ct_scan(shared_redis, tmp_path, number=904)
            page.wait_for_function(f"() => blissView.shown === {key!r} && blissView.pdfMaps >= 1", timeout=30000)
            assert page.locator("#pdf-panel").is_visible()
            assert page.input_value("#pdf-rmin") == "2.5" and page.input_value("#pdf-rmax") == "2.75"  # the first window
            assert "O-O 2.5–2.75, Si-O 1.5–1.7" in page.text_content("#pdf-window-names")
            page.wait_for_function("() => document.getElementById('pdf-map-caption').textContent.includes('Å⁻²')")

            page.locator("#pdf-map-img").scroll_into_view_if_needed()  # below the fold with a long scan list
            box = page.locator("#pdf-map-img").bounding_box()
            row, col = 6, 2
            page.mouse.click(box["x"] + (col + 0.5) * box["width"] / 12, box["y"] + (row + 0.5) * box["height"] / 12)
            page.wait_for_function("() => blissView.pdfCurve && blissView.pdfCurve.col === 2")
            curve = page.evaluate("blissView.pdfCurve")
            with h5py.File(path.with_name("pdfct_scan0001") / "pdf.h5", "r") as h5:
                expected, r = h5["gr"][0, row, col].astype(float), h5["r"][()]
            assert (curve["z"], curve["row"]) == (0, row) and curve["labels"] == ["r (Å)", "G(r) (Å⁻²)"]
            np.testing.assert_array_equal(curve["G"], expected)
            np.testing.assert_array_equal(curve["r"], r)
            assert "row 6, column 2" in page.text_content("#pdf-curve-caption")

            maps = page.evaluate("blissView.pdfMaps")
            page.fill("#pdf-rmin", "3")
            page.fill("#pdf-rmax", "2")
            page.dispatch_event("#pdf-rmax", "change")
            page.wait_for_function("() => document.getElementById('pdf-error').textContent.startsWith('r_max=2')")
            assert page.evaluate("blissView.pdfMaps") == maps  # refused: no map drawn
            page.fill("#pdf-rmax", "1.7")
            page.dispatch_event("#pdf-rmax", "change")  # [3, 1.7]: still upside down
            page.fill("#pdf-rmin", "1.5")
            page.dispatch_event("#pdf-rmin", "change")
            page.wait_for_function(f"() => blissView.pdfMaps > {maps}")
            page.wait_for_function("() => document.getElementById('pdf-map-caption').textContent.includes('r 1.5–1.7 Å')")
            assert page.text_content("#pdf-error") == ""

            page.select_option("#pdf-z", "1")  # another height: the map and the voxel's G(r) follow
            page.wait_for_function("() => blissView.pdfCurve.z === 1")
            with h5py.File(path.with_name("pdfct_scan0001") / "pdf.h5", "r") as h5:
                np.testing.assert_array_equal(page.evaluate("blissView.pdfCurve.G"), h5["gr"][1, row, col].astype(float))
            shot(page, "view-pdfct.png")
            assert page.evaluate("window.pwned") is None
    finally:
        server.close()
