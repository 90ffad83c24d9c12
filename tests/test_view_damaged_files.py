"""The live view reports a damaged file at once, naming it; a file not there yet stays silent.

Real HDF5 files cut short (a disk that filled, a copy cut short) or overwritten with garbage:
the scan's reconstructed.h5 (older heights' maps, read from it once the view let them go) and
the PDF-CT results (pdf.h5 and the master file). The view's own server runs in this process,
so that it holds one map only, against the shared Redis.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
import redis
from view_helpers import pdf_ct_scan

from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.model import reconstruction_live_key as live_key
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.safe_open import DamagedFile
from bliss_lite.data.scan_files import reduction_file
from bliss_lite.view import live_scan
from bliss_lite.view.live_scan import LiveScan

MAP = np.arange(4, dtype=np.float32).reshape(2, 2)
XRDCT = {"n_x": 2, "n_omega": 2, "x_start": -1.0, "x_stop": 1.0, "omega_range": 180.0, "z_positions": [0.0, 0.5]}


@contextmanager
def view_server(client, started=False):
    """The view's app over a Watcher of `client` (`started`: its thread polls for the pages
    that listen), served by uvicorn in a thread; its base URL."""
    import uvicorn

    from bliss_lite.view.server import _bind, create_app
    from bliss_lite.view.watcher import Watcher

    sock, watcher = _bind("127.0.0.1", 0), Watcher(client)
    if started:
        watcher.start()
    server = uvicorn.Server(uvicorn.Config(create_app(watcher), log_level="warning", access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(200):  # a hang guard, not a timing: serving once started
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        watcher.stop()
        if started:
            watcher._thread.join(10)
    assert not thread.is_alive() and not (started and watcher._thread.is_alive())


def get(url):
    """(status, body): JSON decoded, text as text, PNG as bytes."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            body, kind = reply.read(), reply.headers["Content-Type"]
            status = reply.status
    except urllib.error.HTTPError as error:
        body, kind, status = error.read(), error.headers["Content-Type"], error.code
    if kind.startswith("application/json"):
        return status, json.loads(body)
    return status, body.decode() if kind.startswith("text/") else body


def cut_short(path):
    """Keep the first half of the file: as a disk that filled or a copy cut short leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return data


def maps_scan(client, master, number):
    """A closed XRD-CT scan of two heights whose final maps of phase A went to Redis; (its
    publisher, where its reconstructed.h5 goes)."""
    publisher = ScanPublisher(client, session="damaged", number=number, name="xrdct",
                              channels=[ChannelSpec("x"), ChannelSpec("pilatus", "int32", (2, 3))],
                              scan_info={"title": "maps in a file", "npoints": 8, "xrdct": XRDCT,
                                         "filename": str(master), "entry": "1.1"})
    publisher.create(then=("PREPARED", "STARTED"))
    for z in (0, 1):
        client.xadd(live_key(publisher.key), {"z_index": z, "phase": "A", "shape": "[2, 2]",
                                              "data": (MAP + z).tobytes(), "complete": 1})
    publisher.seal("SUCCESS")
    return publisher, reduction_file(str(master), "1.1", "reconstructed")


def write_maps(reconstructed):
    reconstructed.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(reconstructed, "w") as h5:
        h5["reconstructed"] = [True, True]
        h5["maps/A"] = np.stack([MAP, MAP + 1])
        h5["padding"] = np.zeros(50_000)  # so that a cut lands after the superblock


def test_a_damaged_reconstructed_h5_is_named_where_a_missing_one_is_silent(shared_redis, tmp_path, monkeypatch):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    publisher, reconstructed = maps_scan(client, tmp_path / "maps.h5", 1)
    monkeypatch.setattr(live_scan, "VIEW_MAPS_BYTES", MAP.nbytes)  # one map held: height 0 is read from the file
    try:
        with view_server(client) as base:
            url = f"{base}/api/scans/{publisher.key}/map.png?phase=A&z=0"
            status, text = get(url)  # not there (yet, or not reachable from here): no error, no file named
            assert status == 404 and "cannot be read from here" in text and "damaged" not in text
            write_maps(reconstructed)
            status, png = get(url)
            assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
            live = LiveScan(client, publisher.key)
            while live.poll():
                pass
            np.testing.assert_array_equal(live.map_image(0, "A"), MAP)
            cut_short(reconstructed)
            status, text = get(url)
            assert status == 409 and text.startswith(f"{reconstructed}: truncated HDF5 file"), text
            with pytest.raises(DamagedFile, match="truncated HDF5 file") as damaged:
                live.map_image(0, "A")
            assert str(reconstructed) in str(damaged.value)
            np.testing.assert_array_equal(live.map_image(1, "A"), MAP + 1)  # the held map is still shown
            reconstructed.write_bytes(b"\x00 not HDF5 at all " * 100)
            status, text = get(url)
            assert status == 409 and text.startswith(f"{reconstructed}: not an HDF5 file"), text
    finally:
        client.delete(publisher.key, live_key(publisher.key))


def test_damaged_pdf_results_are_named_to_the_page_where_missing_ones_are_silent(shared_redis, tmp_path,
                                                                                   monkeypatch):
    key, master = pdf_ct_scan(shared_redis, tmp_path, number=905)
    results = master.with_name("pdfct_scan0001") / "pdf.h5"
    whole = cut_short(results)
    monkeypatch.setattr(live_scan, "PDF_LOOK_S", 0.0)
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    live = LiveScan(client, key)
    while live.poll():
        pass
    assert live.pdf is None and live.describe()["pdf"] is None
    assert live.describe()["pdf_error"].startswith(f"{results}: truncated HDF5 file")
    with view_server(client) as base:
        for _ in range(10):  # each request reads on (nobody listens); the same damage twice is said
            status, snap = get(f"{base}/api/scans/{key}")
            if snap["pdf_error"]:
                break
        assert status == 200 and snap["pdf"] is None
        assert snap["pdf_error"].startswith(f"{results}: truncated HDF5 file")
        status, text = get(f"{base}/api/scans/{key}/gr?z=0&row=0&col=0")
        assert status == 409 and str(results) in text and "truncated HDF5 file" in text
        results.unlink()  # not there (a pdf job not run yet): silent again
        status, snap = get(f"{base}/api/scans/{key}")
        assert snap["pdf"] is None and snap["pdf_error"] is None
        status, text = get(f"{base}/api/scans/{key}/gr?z=0&row=0&col=0")
        assert status == 404 and "no PDF-CT results" in text
        results.write_bytes(whole)  # written whole again: shown, no error
        status, snap = get(f"{base}/api/scans/{key}")
        assert snap["pdf"]["nz"] == 2 and snap["pdf_error"] is None
        assert get(f"{base}/api/scans/{key}/gr?z=0&row=0&col=0")[0] == 200
    cut_short(master)  # the master file, whose entry says where the results are, cut short
    while live.poll():
        pass
    assert live.pdf is None and live.pdf_error.startswith(f"{master}: truncated HDF5 file")
