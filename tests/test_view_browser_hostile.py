"""In headless Chromium: a scan whose title and counter names are HTML shows them as text and
runs none of it (skipped without Debian's chromium, as tests/test_view_browser.py)."""
import shutil
from pathlib import Path

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
    server = ViewServer("--redis", shared_redis)
    try:
        with browser_page(server.url, viewport=None) as page:
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            page.evaluate("document.getElementById('follow').checked = true")
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
    finally:
        server.close()


WINDOWS = {"<img src=x onerror=alert(1)>": [1.5, 1.7], "$\\frac{1}{0}$ & <b>O-O</b>": [2.5, 2.75]}


def hostile_pdf_ct_scan(redis_url, folder, number):
    """view_helpers.pdf_ct_scan with r windows named in HTML and mathtext (the pdf hook's dict keys)."""
    import json

    import h5py
    import numpy as np
    import redis

    from bliss_lite.data.atomic_scattering import averages
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.publisher import ScanPublisher
    from bliss_lite.processing.jobs import call_plugin, load_plugins
    from bliss_lite.processing.nexus_output import write_reconstruction

    n, q = 12, np.linspace(0.3, 30.0, 600)
    f_mean, f2_mean, c_mean = averages({"Si": 1, "O": 2}, q)
    dimer = {d: f2_mean + c_mean + f_mean ** 2 * np.sin(q * d) / (q * d) for d in (1.61, 2.63)}
    x_mm = -1.0 + (np.arange(n) + 0.5) * 2.0 / n
    xx, yy = np.meshgrid(x_mm, x_mm)
    inside = xx ** 2 + yy ** 2 < 0.81
    left = np.clip(0.5 - xx, 0.0, 1.0) * inside
    volume = np.stack([a[..., None] * dimer[1.61] + b[..., None] * dimer[2.63] for a, b in ((left, inside - left),
                                                                                          (inside - left, left))])
    xrdct = {"n_x": n, "n_omega": 10, "z_positions": [0.0, 0.5], "x_start": -1.0, "x_stop": 1.0,
             "omega_range": 180.0, "fast_axis": "x"}
    path = Path(folder) / "pdfct.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("1.1")["scan_info"] = json.dumps({"xrdct": xrdct})
    write_reconstruction(str(path), "1.1", volume.astype(np.float32), x_mm, x_mm, [0.0, 0.5], q, "q_A^-1", {},
                         {"centre_mm": 0.0})
    load_plugins()
    call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {
        "composition": {"Si": 1, "O": 2}, "rmax": 10.0, "windows": WINDOWS}})
    publisher = ScanPublisher(redis.Redis.from_url(redis_url), session="test", number=number, name="xrdct",
                              channels=[ChannelSpec(c) for c in ("omega", "x", "z")],
                              scan_info={"title": "pdf-ct, hostile windows", "npoints": 2, "xrdct": xrdct,
                                         "filename": str(path), "entry": "1.1"})
    publisher.create(then=("PREPARED", "STARTED"))
    publisher.publish({"omega": [5.0, 15.0], "x": [-0.9, -0.7], "z": [0.0, 0.0]})
    publisher.seal("SUCCESS")
    return publisher.key


def test_pdf_window_names_show_as_text_and_run_nothing(shared_redis, tmp_path):
    server = ViewServer("--redis", shared_redis)
    try:
        with browser_page(server.url, viewport=None) as page:
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.wait_for_function("() => window.blissView && window.blissView.connected")
            page.evaluate("document.getElementById('follow').checked = true")
            key = hostile_pdf_ct_scan(shared_redis, tmp_path, number=905)
            page.wait_for_function(f"() => blissView.shown === {key!r} && blissView.pdfMaps >= 1", timeout=30000)
            assert sorted(page.evaluate("Object.keys(blissView.desc.pdf.windows)")) == sorted(WINDOWS)
            names = page.text_content("#pdf-window-names")
            assert all(f"{name} {lo}–{hi}" in names for name, (lo, hi) in WINDOWS.items()), names
            assert page.evaluate("document.getElementById('pdf-window-names').children.length") == 0  # text only
            assert page.evaluate("window.pwned") is None and dialogs == []
            assert page.evaluate("document.querySelectorAll('img[src=x], b, script:not([src])').length") == 0
    finally:
        server.close()
