"""The live view server (`bliss-lite view`) against real scans in a real Redis: what it serves
equals what the scans published, images are what the data say, and access is guarded."""
import base64
import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from view_helpers import ViewServer, read_events

from bliss_lite.controllers.detectors.pilatus_geometry import GAP_VALUE, gap_mask
from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.redis_server import connect
from bliss_lite.view import images
from bliss_lite.view.live_scan import LiveScan


@pytest.fixture
def view(scan_session, shared_redis):
    server = ViewServer("--redis", shared_redis)
    yield server
    server.close()


def png_pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_view_serves_the_points_markers_and_plotselect_of_a_scan(view, scan_session, shared_redis):
    ns = scan_session
    ns["plotselect"](ns["gauss"], "diode1")
    assert json.loads(connect(shared_redis).get("bliss_lite:session:test:plotselect")) == ["gauss", "diode1"]
    scan = ns["ascan"](ns["m0"], 3, 7, 40, 0.001, ns["gauss"], ns["diode1"])
    scans = view.get("/api/scans")
    assert scans["current"] == scan.key and scans["scans"][0]["number"] == scan.number
    snap = view.get(f"/api/scans/{scan.key}")
    data = scan.get_data()
    for name in ("m0", "gauss", "diode1"):
        np.testing.assert_array_equal(snap["columns"][name], data[name])
    assert snap["points"] == snap["expected"] == 41 and snap["state"] == "CLOSED" and snap["end_reason"] == "SUCCESS"
    assert snap["plotselect"] == ["gauss", "diode1"] and snap["counters"] == ["gauss", "diode1"]
    assert snap["filename"] == scan.filename and snap["entry"] == scan.entry
    marks = snap["markers"]["gauss"]
    assert marks["peak"] == pytest.approx(5.0) and marks["cen"] == pytest.approx(5.0, abs=1e-9)
    assert marks["fwhm"] == pytest.approx(ns["fwhm"](), abs=1e-12)
    with pytest.raises(urllib.error.HTTPError) as missing:
        view.get("/api/scans/bliss_lite:scan:nosuchscan")
    assert missing.value.code == 404


def test_event_stream_sends_every_point_once_in_order(view, scan_session):
    ns = scan_session
    ns["ascan"](ns["m0"], 0, 1, 2, 0, ns["diode1"])  # a scan before: the stream must follow the next one
    messages = []
    last = lambda m: m["title"].startswith("ascan m0 0 10 150") and m["state"] == "CLOSED"  # noqa: E731
    reader = threading.Thread(target=read_events, args=(view.base, last, messages), daemon=True)
    reader.start()
    assert _wait(lambda: view.get("/api/health")["viewers"] == 1)
    scan = ns["ascan"](ns["m0"], 0, 10, 150, 0.01, ns["gauss"], ns["diode1"])  # ~1.6 s: several messages
    reader.join(30)
    messages = [m for m in messages if m["key"] == scan.key]
    assert len(messages) >= 3 and messages[-1]["state"] == "CLOSED"  # the points came in several messages
    columns = {}
    for message in messages:
        for name, delta in message.get("deltas", {}).items():
            column = columns.setdefault(name, [])
            assert delta["start"] == len(column)  # no gap, no repeat
            column.extend(np.frombuffer(base64.b64decode(delta["b64"]), "<" + delta["type"]))
    data = scan.get_data()
    assert sorted(columns) == ["diode1", "gauss", "m0"]  # what a page can draw: counters and axis
    for name in ("m0", "gauss", "diode1"):
        np.testing.assert_array_equal(columns[name], data[name])


def _wait(condition, tries=200):
    import time

    for _ in range(tries):
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("backnforth", [False, True])
def test_mesh_image_puts_each_point_where_the_motors_were(view, scan_session, backnforth):
    ns = scan_session
    scan = ns["amesh"](ns["m0"], 0, 4, 4, ns["m1"], 0, 2, 2, 0.001, ns["gauss"], backnforth=backnforth)
    data = scan.get_data()
    from bliss_lite.view.live_scan import LiveScan

    live = LiveScan(connect(os.environ["BLISS_LITE_REDIS_URL"]), scan.key)
    live.poll()
    image = live.mesh_image("gauss")
    assert image.shape == (3, 5)
    # pixel (row, column) is where m1 was the row's value and m0 the column's
    placed = live.points["m0"].values
    grid = np.full((3, 5), np.nan)
    for k in range(15):
        row, column = k // 5, k % 5
        if backnforth and row % 2:
            column = 4 - column
        grid[row, column] = placed[k]
    np.testing.assert_allclose(grid, np.tile(np.linspace(0, 4, 5), (3, 1)))  # columns follow m0
    expected = np.empty((3, 5))
    for k in range(15):
        row = k // 5
        column = int(round(data["m0"][k]))
        expected[row, column] = data["gauss"][k]
    np.testing.assert_array_equal(image, expected)
    pixels = png_pixels(view.get(f"/api/scans/{scan.key}/mesh.png?counter=gauss"))
    scale = 256 // 5
    assert pixels.shape == (3 * scale, 5 * scale, 3)
    top = np.unravel_index(np.argmax(expected), expected.shape)
    assert tuple(pixels[top[0] * scale, top[1] * scale]) == tuple(images.colormap()[255])


def test_frame_image_keeps_single_hot_pixels_and_greys_only_whole_gap_blocks():
    frame = np.zeros((1679, 1475), np.int32)
    gaps = gap_mask()
    frame[gaps] = GAP_VALUE
    frame[1000, 701] = 5000  # a single hot pixel: a block maximum keeps it
    levels, grey = images.frame_levels(frame)
    block = images.decimation(frame.shape)
    assert block == 4 and levels.shape == (420, 369)
    assert levels[1000 // 4, 701 // 4] == pytest.approx(np.log10(5001))
    assert levels.max() == levels[1000 // 4, 701 // 4]
    padded = np.pad(gaps, ((0, 1), (0, 1)), constant_values=True)
    whole = padded.reshape(420, 4, 369, 4).all(axis=(1, 3))
    np.testing.assert_array_equal(grey, whole)
    rgb = png_pixels(images.frame_png(frame))
    assert rgb.shape == (420, 369, 3)
    assert np.all(rgb[grey] == images.GAP_RGB)
    assert tuple(rgb[250, 175]) == tuple(images.colormap()[255])


def test_render_cache_renders_each_image_once_for_pages_asking_together_and_keeps_no_lock():
    from bliss_lite.view.server import RenderCache
    cache, started, release, calls = RenderCache(size=2), threading.Event(), threading.Event(), []

    def render():
        calls.append(1)
        started.set()
        release.wait(10)
        return b"png"

    results = []
    pages = [threading.Thread(target=lambda: results.append(cache.get(("scan", "frame", 3, 7), render)))
             for _ in range(4)]
    pages[0].start()
    assert started.wait(10)
    for page in pages[1:]:
        page.start()
    release.set()
    for page in pages:
        page.join(10)
    assert results == [b"png"] * 4 and len(calls) == 1 and cache.renders == 1
    for version in range(5):  # newer versions push the oldest out; the size holds
        cache.get(("scan", "frame", 3, version), lambda version=version: b"v%d" % version)
    assert list(cache.items) == [("scan", "frame", 3, 3), ("scan", "frame", 3, 4)]
    assert cache.locks == {}  # no lock outlives its renders (a server runs for weeks of scans)
    with pytest.raises(ZeroDivisionError):  # a failed render leaves no lock and no image
        cache.get(("scan", "map", 1), lambda: 1 / 0)
    assert cache.locks == {} and ("scan", "map", 1) not in cache.items


@pytest.mark.parametrize("values, code", [
    ([0, 1, -128, 127], "i1"), ([0, 300, -32768], "i2"), ([70000, -3], "i4"), ([2.0**40], "f4"),
    ([0.5, -1.25, float("nan")], "f4"), ([0.1, 3.0], "f8"), ([1.0, float("inf")], "f4"), ([], "i1")])
def test_packed_points_take_the_smallest_exact_type_and_decode_to_the_same_values(values, code):
    from bliss_lite.view.live_scan import pack

    packed = pack(values)
    assert packed["type"] == code
    back = np.frombuffer(base64.b64decode(packed["b64"]), "<" + code).astype(float)
    np.testing.assert_array_equal(back, np.asarray(values, float))  # NaN equal to NaN here


def test_xrdct_patterns_sinograms_and_maps(view, scan_session, shared_redis):
    from bliss_lite.processing.fbp import fbp
    from bliss_lite.processing.sinogram import assemble, estimate_centre, normalise
    from bliss_lite.view.routes import reconstruct_bin

    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [0.0], 0.06, n_omega=10, fast_axis="omega",
                       hooks={"integration": {"npt": 120}, "reconstruction": {
                           "phases": {"CeO2": "CeO2", "LaB6": "LaB6"}, "live_period_s": 0.3}})
    client = connect(shared_redis)
    entries = client.xrange(f"{scan.key}:processing:integration")
    patterns = {}
    for _, fields in entries:
        patterns[int(fields[b"index"])] = np.frombuffer(fields[b"data"], "<f4")
    stacked = np.stack([patterns[i] for i in range(80)])
    assert _wait(lambda: view.get(f"/api/scans/{scan.key}")["patterns"] == 80)
    curves = view.get(f"/api/scans/{scan.key}/patterns")
    np.testing.assert_allclose(curves["sum"], stacked.astype(float).sum(axis=0), rtol=1e-6)
    assert curves["count"] == 80 and len(curves["radial"]) == 120 and curves["unit"].startswith("q_")
    snap = view.get(f"/api/scans/{scan.key}")
    assert snap["phases"] == ["CeO2", "LaB6"] and snap["residual"] is True  # the fit's residual: a map, not a phase
    assert snap["xrdct"] == {
        "nz": 1, "n_omega": 10, "n_x": 8, "sinograms": True, "normalised_by": "i0+transmission", "frames_left_out": 0}
    assert snap["strongest_bin"] == int(np.argmax(stacked.astype(float).sum(axis=0)))
    assert snap["counters"] == ["i0", "it"] and snap["frame_index"] == 79
    frame = png_pixels(view.get(f"/api/scans/{scan.key}/frame.png"))
    assert frame.shape == (48, 160, 3)  # the test session's ROI, not decimated
    data = scan.get_data()
    # the view's sinograms are normalised by I0 and the transmission, as the hook's default
    sino = assemble(normalise(stacked, data["i0"], data["it"]), data["omega"], data["x"], data["z"], scan.scan_info)
    live = LiveScan(client, scan.key)  # what the server holds, read from Redis the same way
    while live.poll():
        pass
    assert live.sinograms.sinograms.filled.all() and live.frames_left_out == 0
    np.testing.assert_allclose(live.sinograms.sinograms.data, sino.data * (live.reference_i0 / np.mean(data["i0"])),
                               rtol=1e-5)
    q_bin = snap["strongest_bin"]
    pixels = png_pixels(view.get(f"/api/scans/{scan.key}/sinogram.png?bin={q_bin}&z=0"))
    assert pixels.shape[:2] == (10 * 25, 8 * 25)
    brightest = np.unravel_index(np.argmax(sino.data[0, :, :, q_bin]), (10, 8))
    assert tuple(pixels[brightest[0] * 25, brightest[1] * 25]) == tuple(images.colormap()[255])
    centre = estimate_centre(sino.data[0, :, :, q_bin], sino.x_mm, sino.omega_deg)
    expected = fbp(sino.data[0, :, :, q_bin], sino.x_mm, sino.omega_deg, centre)
    np.testing.assert_allclose(reconstruct_bin(sino, q_bin, 0), expected, rtol=1e-6)
    assert view.get(f"/api/scans/{scan.key}/qmap.png?bin={q_bin}&z=0")[:8] == b"\x89PNG\r\n\x1a\n"
    final = scan.hook("reconstruction").result["maps"]["LaB6"][0]
    pixels = png_pixels(view.get(f"/api/scans/{scan.key}/map.png?phase=LaB6&z=0"))
    top = np.unravel_index(np.argmax(final), final.shape)
    scale = 256 // final.shape[0]
    assert tuple(pixels[top[0] * scale, top[1] * scale]) == tuple(images.colormap()[255])
    assert png_pixels(view.get(f"/api/scans/{scan.key}/map.png?phase=residual&z=0")).shape[:2] == pixels.shape[:2]
    for bad in ("sinogram.png?bin=120", "sinogram.png?bin=x", "map.png?phase=Si"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            view.get(f"/api/scans/{scan.key}/{bad}")
        assert refused.value.code in (400, 404) and refused.value.read()


def test_view_sinograms_leave_out_frames_whose_monitor_is_not_positive(shared_redis):
    """A scan published straight to Redis: frame 1 lost the beam (I0 0), nothing came through
    the sample in frame 2 (it 0). The others are normalised by I0 and it/I0 and placed by their
    read-backs; those two are left out and counted, and the view goes on."""
    from bliss_lite.data.publisher import ScanPublisher
    from bliss_lite.processing.integration_queue import info_key, publish_patterns

    client = connect(shared_redis)
    xrdct = {"n_x": 2, "n_omega": 2, "x_start": -1.0, "x_stop": 1.0, "omega_range": 180.0, "z_positions": [0.0]}
    publisher = ScanPublisher(client, session="test", number=901, name="xrdct",
                              scan_info={"title": "xrdct by hand", "npoints": 4, "xrdct": xrdct},
                              channels=[ChannelSpec(n) for n in ("omega", "x", "z", "i0", "it")]
                              + [ChannelSpec("pilatus", "int32", (2, 3))])
    publisher.create()
    publisher.set_state("STARTED")
    publisher.publish({"omega": [45.0, 45.0, 135.0, 135.0], "x": [-0.5, 0.5, 0.5, -0.5], "z": [0.0] * 4,
                       "i0": [100.0, 0.0, 50.0, 100.0], "it": [50.0, 25.0, 0.0, 80.0],
                       "pilatus": np.zeros((4, 2, 3), np.int32)})
    patterns = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    client.set(info_key(publisher.key), json.dumps({"radial": [1.0, 2.0, 3.0], "unit": "q_nm^-1", "npt": 3}))
    pipe = client.pipeline()
    publish_patterns(pipe, publisher.key, range(4), patterns, "by-hand")
    pipe.execute()
    publisher.seal("SUCCESS")  # ended, so that no view test after this one follows it
    live = LiveScan(client, publisher.key)
    while live.poll():
        pass
    sino = live.sinograms.sinograms
    assert live.frames_left_out == 2 and live.reference_i0 == 100.0  # the mean I0 of the frames kept
    assert sino.filled[0].tolist() == [[True, False], [True, False]]  # (omega, x): frames 0 and 3 only
    # I0 / reference times it / I0 = it / reference: frame 0 divided by 0.5, frame 3 by 0.8
    np.testing.assert_allclose(sino.data[0, 0, 0], patterns[0] / 0.5, rtol=1e-6)
    np.testing.assert_allclose(sino.data[0, 1, 0], patterns[3] / 0.8, rtol=1e-6)
    described = live.describe()["xrdct"]
    assert described["normalised_by"] == "i0+transmission" and described["frames_left_out"] == 2


def test_a_non_loopback_address_needs_a_token(capsys):
    from bliss_lite.view.server import main

    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "not a loopback address: give a token" in capsys.readouterr().err
    assert main(["--host", "0.0.0.0", "--port", "0", "--token", "short"]) == 2


def test_token_guards_every_request_and_loopback_refuses_foreign_hosts(shared_redis):
    token = "t0ken-with-enough-characters"
    guarded = ViewServer("--redis", shared_redis, "--token", token)
    try:
        assert guarded.url.endswith(f"?token={token}")
        for path in ("/", "/api/scans", "/events", "/static/view.js"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                guarded.get(path)
            assert refused.value.code == 401
        with urllib.request.urlopen(guarded.url, timeout=10) as reply:
            assert b"bliss-lite live view" in reply.read()
            cookie = reply.headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in reply.headers["Set-Cookie"]
        assert "scans" in guarded.get("/api/scans", {"Cookie": cookie})
        assert "scans" in guarded.get("/api/scans", {"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError):
            guarded.get("/api/scans", {"Authorization": "Bearer t0ken-with-enough-characterz"})
    finally:
        guarded.close()
    local = ViewServer("--redis", shared_redis)
    try:
        assert "scans" in local.get("/api/scans")
        with pytest.raises(urllib.error.HTTPError) as foreign:
            local.get("/api/scans", {"Host": "attacker.example:8765"})  # DNS rebinding
        assert foreign.value.code == 400
    finally:
        local.close()


def test_session_option_starts_and_stops_the_view(run_dir, data_root, shared_redis):
    env = {**os.environ, "BLISS_LITE_REDIS_URL": shared_redis}
    done = subprocess.run([sys.executable, "-m", "bliss_lite", "-s", "test", "--view", "0", "-c",
                           "import os, urllib.request; print(urllib.request.urlopen(os.environ['BLISS_LITE_VIEW_URL'] + 'api/health').read())"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    url = next(line for line in done.stdout.splitlines() if line.startswith("Live view of")).split(" on ")[1]
    assert url.startswith("http://127.0.0.1:")
    assert '"viewers":0' in done.stdout
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/health", timeout=5)  # stopped with the session


def test_a_late_view_of_a_trimmed_stream_keeps_every_point_at_its_index(shared_redis):
    """A scan whose point streams Redis trimmed (budget) before the view came: the points it
    no longer has are NaN, the others sit at their scan index in every channel."""
    from bliss_lite.data.publisher import ScanPublisher

    client = connect(shared_redis)
    publisher = ScanPublisher(client, session="test", number=902, name="loopscan", scan_info={"npoints": 600},
                              channels=[ChannelSpec("m0"), ChannelSpec("diode1")], point_budget=800)
    publisher.create(then=("PREPARED", "STARTED"))
    values = np.arange(600, dtype=float)
    for start in range(0, 600, 10):
        publisher.publish({"m0": values[start:start + 10], "diode1": 2 * values[start:start + 10]})
    publisher.seal("SUCCESS")
    live = LiveScan(client, publisher.key)
    while live.poll():
        pass
    m0, diode = live.points["m0"].values, live.points["diode1"].values
    assert len(m0) == len(diode) == 600
    kept = ~np.isnan(m0)
    assert kept.sum() < 600 and kept[-100:].all() and not kept[0]  # the oldest trimmed, the newest there
    np.testing.assert_array_equal(m0[kept], values[kept])
    np.testing.assert_array_equal(diode[~np.isnan(diode)], 2 * values[~np.isnan(diode)])


def test_the_view_holds_the_newest_maps_and_reads_older_heights_from_the_file(scan_session, shared_redis,
                                                                               monkeypatch):
    """A seed-scale scan's maps (1.8 GB) would not fit a view: it holds the newest up to
    VIEW_MAPS_BYTES, and a final map it let go is read from the scan's reconstructed.h5, the
    same values."""
    from bliss_lite.view import live_scan

    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 6, [0.0, 0.3, 0.6], 0.04, n_omega=6, fast_axis="x",
                       hooks={"integration": {"npt": 60}, "reconstruction": {"phases": {"CeO2": "CeO2"}}})
    result = scan.hook("reconstruction").result
    maps = {"CeO2": result["maps"]["CeO2"], "residual": result["residual"]}
    one_map = 6 * 6 * 4
    monkeypatch.setattr(live_scan, "VIEW_MAPS_BYTES", 2 * one_map)
    live = LiveScan(connect(shared_redis), scan.key)
    while live.poll():
        pass
    assert len(live.maps) == 2 and live._maps_bytes == 2 * one_map
    assert {key for key, complete in live.map_state.items() if complete} == {
        (z, phase) for z in range(3) for phase in ("CeO2", "residual")}
    for z in range(3):
        for phase in ("CeO2", "residual"):
            np.testing.assert_array_equal(live.map_image(z, phase), np.asarray(maps[phase][z]), err_msg=f"{phase} {z}")
    assert live.map_image(0, "LaB6") is None and live.map_image(5, "CeO2") is None
    assert live.describe()["phases"] == ["CeO2"] and live.describe()["residual"] is True
