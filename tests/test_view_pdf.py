"""The live view's PDF-CT routes against a real PDF-CT result (the `pdf_scan` job's pdf.h5): a
voxel's G(r) and the r-window maps are what the file holds, a bad window is refused naming the
argument, and a scan whose results come after it closed is noticed."""
import io
import urllib.error

import h5py
import numpy as np
import pytest
from PIL import Image
from view_helpers import ViewServer, pdf_ct_scan

from bliss_lite.data.redis_server import connect
from bliss_lite.view import images, live_scan
from bliss_lite.view.live_scan import LiveScan


@pytest.fixture(scope="module")
def pdf_view(shared_redis, tmp_path_factory):
    key, path = pdf_ct_scan(shared_redis, tmp_path_factory.mktemp("pdfview"), number=902)
    server = ViewServer("--redis", shared_redis)
    yield server, key, path
    server.close()


def stored(path, z):
    with h5py.File(path.with_name("pdfct_scan0001") / "pdf.h5", "r") as h5:
        return h5["gr"][z], h5["r"][()], {name: h5[f"windows/{name}"][z] for name in h5["windows"]}


def refused(server, path):
    with pytest.raises(urllib.error.HTTPError) as error:
        server.get(path)
    return error.value.code, error.value.read().decode()


def test_a_voxels_gr_is_the_files_with_units(pdf_view):
    server, key, path = pdf_view
    snap = server.get(f"/api/scans/{key}")
    assert snap["pdf"] == {"nz": 2, "ny": 12, "nx": 12, "nr": 1001, "r_min": 0.0, "r_max": 10.0,
                           "r_step": pytest.approx(0.01), "units": {"r": "A", "G": "A^-2"},
                           "windows": {"Si-O": [1.5, 1.7], "O-O": [2.5, 2.75]}, "maps": []}
    gr, r, _ = stored(path, 1)
    voxel = server.get(f"/api/scans/{key}/gr?z=1&row=5&col=3")
    assert voxel["units"] == {"r": "A", "G": "A^-2"} and (voxel["z"], voxel["row"], voxel["col"]) == (1, 5, 3)
    np.testing.assert_array_equal(voxel["r"], r)
    np.testing.assert_array_equal(voxel["G"], gr[5, 3].astype(float))
    assert voxel["z_mm"] == 0.5 and voxel["y_mm"] == pytest.approx(-1 + 5.5 / 6) and voxel["x_mm"] == pytest.approx(-1 + 3.5 / 6)
    # rows are y, columns x: at z 0 the left of the disk is Si-O (1.61 A), the right O-O (2.63 A)
    for col, distance in ((2, 1.61), (9, 2.63)):
        g = np.asarray(server.get(f"/api/scans/{key}/gr?z=0&row=6&col={col}")["G"])
        near = (r > 1.0) & (r < 3.0)
        assert abs(r[near][np.argmax(g[near])] - distance) <= 0.03, (col, distance)


def test_window_maps_are_the_mean_of_gr_over_the_window(pdf_view):
    server, key, path = pdf_view
    gr, r, windows = stored(path, 0)
    # the configured window: the map the pdf job wrote for it
    answer = server.get(f"/api/scans/{key}/gr_map?z=0&r_min=1.5&r_max=1.7")
    np.testing.assert_allclose(answer["values"], windows["Si-O"], rtol=1e-6, atol=1e-7)
    assert answer["r_used"] == [pytest.approx(1.5), pytest.approx(1.7)] and answer["units"]["G"] == "A^-2"
    # any window: the mean of the file's G(r) over the r points in it
    inside = (r >= 2.0) & (r <= 3.25)
    expected = gr[..., inside].mean(axis=-1, dtype=np.float32)
    answer = server.get(f"/api/scans/{key}/gr_map?z=0&r_min=2&r_max=3.25")
    np.testing.assert_allclose(answer["values"], expected, rtol=1e-6, atol=1e-7)
    assert answer["min"] == pytest.approx(expected.min()) and answer["max"] == pytest.approx(expected.max())
    assert "values" not in server.get(f"/api/scans/{key}/gr_map?z=0&r_min=2&r_max=3.25&values=0")
    pixels = np.asarray(Image.open(io.BytesIO(server.get(f"/api/scans/{key}/gr_map.png?z=0&r_min=2&r_max=3.25"))).convert("RGB"))
    scale = 256 // 12
    assert pixels.shape == (12 * scale, 12 * scale, 3)
    np.testing.assert_array_equal(pixels[scale // 2::scale, scale // 2::scale], images.to_rgb(expected))


@pytest.mark.parametrize("query, named", [
    ("z=0&r_min=3&r_max=2", "r_max"), ("z=0&r_min=2&r_max=2", "r_max"), ("z=0&r_min=-1&r_max=2", "r_min"),
    ("z=0&r_min=1&r_max=40", "r_max"), ("z=0&r_min=abc&r_max=2", "r_min"), ("z=0&r_min=nan&r_max=2", "r_min"),
    ("z=0&r_min=1", "r_max"), ("z=2&r_min=1&r_max=2", "z")])
def test_a_bad_window_is_refused_naming_the_argument(pdf_view, query, named):
    server, key, _ = pdf_view
    for route in ("gr_map", "gr_map.png"):
        code, text = refused(server, f"/api/scans/{key}/{route}?{query}")
        assert code == 400 and text.startswith(named), text


def test_a_voxel_outside_the_volume_or_a_scan_without_pdf_is_refused(pdf_view, shared_redis):
    server, key, _ = pdf_view
    for query, named in (("z=0&row=12&col=0", "row"), ("z=0&row=0&col=-1", "col"), ("z=5&row=0&col=0", "z")):
        code, text = refused(server, f"/api/scans/{key}/gr?{query}")
        assert code == 400 and text.startswith(named), text
    from test_view_hostile import publish_hostile_scan

    other = publish_hostile_scan(shared_redis)
    assert server.get(f"/api/scans/{other}")["pdf"] is None
    code, text = refused(server, f"/api/scans/{other}/gr?z=0&row=0&col=0")
    assert code == 404 and "no PDF-CT results" in text


def test_results_written_after_the_scan_closed_are_noticed(shared_redis, tmp_path, monkeypatch):
    key, path = pdf_ct_scan(shared_redis, tmp_path, number=903)
    results = path.with_name("pdfct_scan0001") / "pdf.h5"
    results.rename(results.with_suffix(".later"))  # as if the pdf job had not run yet
    monkeypatch.setattr(live_scan, "PDF_LOOK_S", 0.0)
    live = LiveScan(connect(shared_redis), key)
    while live.poll():
        pass
    assert live.state == "CLOSED" and live.pdf is None and live.describe()["pdf"] is None
    results.with_suffix(".later").rename(results)
    assert live.poll() is True and live.versions["pdf"] == 1 and live.describe()["pdf"]["nz"] == 2
    assert live.poll() is False  # found once


def test_results_written_again_on_another_grid_are_read_anew(shared_redis, tmp_path, monkeypatch):
    """A `pdf_scan` job run again (another r_max, other windows) replaces pdf.h5: the live scan
    reads the new grid, and a request made with the old figures, or while the file is being
    replaced, is Unavailable (the view answers 503), never a G(r) on the wrong r."""
    from bliss_lite.processing.jobs import call_plugin
    from bliss_lite.view.pdf_results import Unavailable

    key, path = pdf_ct_scan(shared_redis, tmp_path, number=904)
    monkeypatch.setattr(live_scan, "PDF_LOOK_S", 0.0)
    live = LiveScan(connect(shared_redis), key)
    while live.poll():
        pass
    old = live.pdf
    assert old.describe()["nr"] == 1001 and live.versions["pdf"] == 1
    call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {
        "composition": {"Si": 1, "O": 2}, "rmax": 6.0, "windows": {"Si-O": [1.4, 1.8]}}})
    results = path.with_name("pdfct_scan0001") / "pdf.h5"
    with h5py.File(results, "r") as h5:
        new_r, new_gr = h5["r"][()], h5["gr"][1, 5, 3]
    with pytest.raises(Unavailable, match=r"pdf\.h5: PDF-CT results written again"):
        old.voxel(1, 5, 3)
    assert live.poll() is True and live.versions["pdf"] == 2
    described = live.describe()["pdf"]
    assert (described["nr"], described["r_max"], described["windows"]) == (len(new_r), 6.0, {"Si-O": [1.4, 1.8]})
    voxel = live.pdf.voxel(1, 5, 3)
    np.testing.assert_array_equal(voxel["r"], new_r)
    np.testing.assert_array_equal(voxel["G"], new_gr.astype(float))
    assert live.poll() is False  # unchanged since: not read again
    results.write_bytes(b"not yet HDF5")  # a file caught while it is being replaced
    with pytest.raises(Unavailable, match="try again"):
        live.pdf.voxel(1, 5, 3)
    assert live.poll() is True and live.pdf is None and live.describe()["pdf"] is None
