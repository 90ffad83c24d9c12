"""The Pilatus 2M simulator, the simulated sample and continuous (fscan, xrdct) scans."""
from __future__ import annotations

import math

import h5py
import hdf5plugin  # noqa: F401 - the Bitshuffle filter for reading frames back
import numpy as np
import pytest

from bliss_lite.controllers.detectors.pilatus_base import DetectorError, decode
from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE, Roi, gap_mask
from bliss_lite.controllers.sample.phantom import EllipticCylinder
from bliss_lite.data import bslz4
from bliss_lite.data.client import ScanReader
from bliss_lite.data.redis_server import connect
from bliss_lite.data.scan_files import data_file


def test_geometry_matches_pyfai_pilatus2m():
    from pyFAI.detectors import detector_factory

    pyfai = detector_factory("Pilatus2M")
    assert FULL_SHAPE == pyfai.shape == (1679, 1475)
    assert np.array_equal(gap_mask(), pyfai.mask.astype(bool))
    assert gap_mask(Roi(816, 700, 48, 160)).sum() == 17 * 160  # one gap between module rows
    with pytest.raises(ValueError, match="outside the 1679 x 1475 frame"):
        Roi(1600, 0, 100, 10)


def test_bslz4_chunks_are_what_hdf5_stores(tmp_path):

    frame = np.random.default_rng(3).poisson(2, (64, 100)).astype(np.int32)
    chunk = bslz4.compress(frame)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        dataset = h5.create_dataset("d", shape=(1, 64, 100), chunks=(1, 64, 100), dtype="int32",
                                    **hdf5plugin.Bitshuffle(cname="lz4"))
        dataset[0] = frame
        assert dataset.id.read_direct_chunk((0, 0, 0))[1] == chunk
    assert np.array_equal(bslz4.decompress(chunk, (64, 100), np.int32), frame)


def test_chord_lengths_are_exact():
    ellipse = EllipticCylinder(0.3, -0.2, 0.5, 0.2, angle=30)
    t = np.linspace(-3, 3, 600001)
    for x, omega in [(0.3, 0), (0.1, 45), (0.25, 120)]:
        w = math.radians(omega)
        u, v = x * math.cos(w) - t * math.sin(w), x * math.sin(w) + t * math.cos(w)
        numeric = ellipse.contains(u, v, np.zeros_like(u)).sum() * (t[1] - t[0])
        assert float(ellipse.chord(x, omega, 0)) == pytest.approx(numeric, abs=2e-5)
    assert float(EllipticCylinder(0, 0, 1, 1, z_max=0.5).chord(0, 0, 0.6)) == 0.0


def test_pilatus_internal_frames_counter_and_refusals(test_session):
    pilatus = test_session["pilatus"]
    assert pilatus.shape == (48, 160) and pilatus.max_rate == 500
    frames = []
    pilatus.on_frame = lambda number, chunk, t: frames.append((number, chunk, t))
    pilatus.prepare(4, 0.002, 0.001, "INTERNAL")
    pilatus.start()
    pilatus.wait(2.0)
    assert [f[0] for f in frames] == [0, 1, 2, 3]
    assert np.diff([f[2] for f in frames]) == pytest.approx([0.003] * 3)
    image = decode(frames[0][1], pilatus.shape)
    assert image.dtype == np.int32 and (image[gap_mask(pilatus.roi)] == -1).all()
    assert image.max() > 50  # rings on the ROI
    with pytest.raises(DetectorError, match="faster than the maximum 500 frames/s"):
        pilatus.prepare(4, 0.0005, 0.001)
    with pytest.raises(DetectorError, match="trigger mode must be one of"):
        pilatus.prepare(4, 0.01, 0.001, "SOFTWARE")
    pilatus.roi = None
    assert pilatus.max_rate == 250 and pilatus.shape == FULL_SHAPE


def test_cbf_output_one_file_per_frame(test_session, tmp_path):
    import fabio

    pilatus = test_session["pilatus"]
    pilatus.cbf_directory = tmp_path / "cbf"
    frames = []
    pilatus.on_frame = lambda number, chunk, t: frames.append(chunk)
    pilatus.prepare(2, 0.01, 0.001, "EXTERNAL_TRIGGER")
    pilatus.start()
    pilatus.trigger(1.0)
    pilatus.trigger(2.0)
    pilatus.trigger(3.0)  # a third trigger is ignored: two frames were asked for
    pilatus.stop()
    files = sorted((tmp_path / "cbf").glob("*.cbf"))
    assert [f.name for f in files] == ["pilatus_00000.cbf", "pilatus_00001.cbf"]
    assert np.array_equal(fabio.open(str(files[1])).data, decode(frames[1], pilatus.shape))


def test_xrdct_frames_positions_and_snake(scan_session, shared_redis):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 3, [0.0], 0.042, n_omega=12)
    data = scan.get_data()
    assert scan.npoints == 36 and data["pilatus"].shape == (36, 48, 160)
    assert data["pilatus_frame_number"].tolist() == list(range(36))
    assert scan.scan_info["frames"]["pilatus"] == {"frames": 36, "dropped": 0, "duplicated": 0}
    omega = data["omega"].reshape(3, 12)
    assert np.all(np.diff(omega[0]) > 0) and np.all(np.diff(omega[1]) < 0) and np.all(np.diff(omega[2]) > 0)
    assert np.sort(omega[1]) == pytest.approx(180 - np.sort(omega[0])[::-1])  # the same angles, backwards
    assert data["x"].reshape(3, 12)[:, 0] == pytest.approx([-0.6, 0.0, 0.6])
    assert np.all(data["x"].reshape(3, 12) == data["x"].reshape(3, 12)[:, :1])  # x steps, omega sweeps
    assert np.all(data["it"] < data["i0"])
    # the centre line crosses more sample than the edges: less transmission, more diffraction
    transmission = (data["it"] / data["i0"]).reshape(3, 12).mean(axis=1)
    assert transmission[1] < transmission[0] and transmission[1] < transmission[2]
    counts = data["pilatus"].clip(0).sum(axis=(1, 2)).reshape(3, 12).mean(axis=1)
    assert counts[1] > counts[0] and counts[1] > counts[2]
    with h5py.File(scan.filename, "r", locking=False) as h5:
        frames = h5[f"{scan.entry}/instrument/pilatus/data"]
        assert frames.is_virtual  # over the scan's data files (tests/test_frame_files.py)
        np.testing.assert_array_equal(frames[()], data["pilatus"])
        np.testing.assert_array_equal(h5[f"{scan.entry}/measurement/omega"][()], data["omega"])
    with h5py.File(data_file(scan.filename, scan.number, "pilatus", 0), "r", locking=False) as h5:
        assert h5["data"].chunks == (1, 48, 160)  # one frame per chunk
    in_redis = ScanReader(connect(shared_redis), scan.key).get_data()
    np.testing.assert_array_equal(in_redis["pilatus"], data["pilatus"])
    np.testing.assert_array_equal(in_redis["it"], data["it"])


def test_xrdct_with_x_fast_and_two_heights(scan_session):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 6, [-0.3, 0.4], 0.02, n_omega=2,
                       fast_axis="x", snake=False)
    data = scan.get_data()
    assert scan.npoints == 24
    x = data["x"].reshape(4, 6)
    assert np.all(np.diff(x, axis=1) > 0)  # no snake: every line the same way
    assert data["z"].reshape(4, 6)[:, 0] == pytest.approx([-0.3, -0.3, 0.4, 0.4])
    assert data["omega"].reshape(4, 6)[:, 0] == pytest.approx([45, 135, 45, 135])
    # LaB6 is only below z = 0.3: the slices differ
    assert not np.array_equal(data["pilatus"][:12], data["pilatus"][12:])


def test_xrdct_refuses_before_moving(scan_session):
    ns = scan_session
    omega, x, z = ns["omega"], ns["x"], ns["z"]
    with pytest.raises(ValueError, match=r"xrdct: omega: 18 deg per 0.004 s needs 4500 deg/s, above its velocity 360"):
        ns["xrdct"](omega, x, z, -1, 1, 4, [0], 0.004, n_omega=10)
    with pytest.raises(ValueError, match="xrdct: n_x must be a whole number >= 1, got 0"):
        ns["xrdct"](omega, x, z, -1, 1, 0, [0], 0.1)
    with pytest.raises(Exception, match="xrdct: z: target 30 beyond high limit 20"):
        ns["xrdct"](omega, x, z, -1, 1, 4, [0, 30], 0.1)
    with pytest.raises(ValueError, match="fast_axis must be 'omega' or 'x'"):
        ns["xrdct"](omega, x, z, -1, 1, 4, [0], 0.1, fast_axis="z")
    assert (x.position, z.position) == (0.0, 0.0)
    assert math.ceil(4 * math.pi / 2) == 7  # the Nyquist default the docstring promises


def test_fscan_records_read_backs_per_trigger(scan_session):
    ns = scan_session
    scan = ns["fscan"](ns["m0"], 1.0, 0.1, 20, 0.01, ns["diode1"])
    data = scan.get_data()
    assert data["m0"] == pytest.approx(1.05 + 0.1 * np.arange(20), abs=1e-3)  # mid-exposure
    assert np.diff(data["elapsed_time"]) == pytest.approx([0.01] * 19, abs=1e-9)  # exact trigger times
    assert data["diode1"] == pytest.approx(np.full(20, 100.0), rel=0.1)  # sampled over each exposure
    assert ns["m0"].velocity == 1000  # the sweep velocity was put back


def test_dropped_and_doubled_frames_are_counted_reported_and_marked(scan_session, capsys):
    ns = scan_session
    ns["pilatus"].inject(drop=[3], twice=[7])
    scan = ns["fscan"](ns["omega"], 0, 2, 12, 0.01, ns["pilatus"])
    ns["pilatus"].inject()
    numbers = scan.get_data()["pilatus_frame_number"].tolist()
    assert numbers == [0, 1, 2, 4, 5, 6, 7, 7, 8, 9, 10, 11]  # as delivered: nothing hidden
    assert scan.scan_info["frames"]["pilatus"] == {"frames": 12, "dropped": 1, "duplicated": 1}
    assert "fscan: pilatus: 1 frames dropped, 1 delivered twice" in capsys.readouterr().out
    with h5py.File(scan.filename, "r", locking=False) as h5:
        group = h5[f"{scan.entry}/instrument/pilatus"]
        assert (group["frames_dropped"][()], group["frames_duplicated"][()]) == (1, 1)
        assert group["data"].shape[0] == 12


def test_redis_frame_budget_trims_and_says_so(scan_session, monkeypatch, caplog):
    from bliss_lite.scans.scan import Scan

    ns = scan_session
    monkeypatch.setattr(Scan, "frame_budget", 2**20 // 4)  # a quarter MB: a few dozen small frames
    scan = ns["fscan"](ns["omega"], 0, 2, 150, 0.01, ns["pilatus"])
    err = caplog.text  # the scan's warnings (plain on stderr in the shell: bliss_lite.config.logs)
    assert "pilatus: Redis kept only the last" in err and "all 150 are in the file" in err
    assert scan.scan_info["redis_trimmed"]["pilatus"] > 0
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/instrument/pilatus/data"].shape[0] == 150


def test_gate_mode_exposes_while_the_gate_is_open(test_session):
    pilatus = test_session["pilatus"]
    frames = []
    pilatus.on_frame = lambda number, chunk, t: frames.append(decode(chunk, pilatus.shape))
    pilatus.prepare(2, 0.001, 0.001, "EXTERNAL_GATE")
    pilatus.start()
    pilatus.gate(10.0, 10.002)
    pilatus.gate(11.0, 11.020)  # ten times longer open: about ten times the counts
    ratio = frames[1].clip(0).sum() / frames[0].clip(0).sum()
    assert 8 < ratio < 12
    with pytest.raises(DetectorError, match="trigger in EXTERNAL_GATE mode"):
        pilatus.trigger(12.0)


def test_ground_truth_maps_are_what_the_frames_see(test_session):
    sample = test_session["xrdct_sample"]
    phantom = sample.phantom
    ceo2 = phantom.phase_map("CeO2", 0.0, n=200)
    pixel = 2 * phantom.radius / 200
    assert ceo2.sum() * pixel ** 2 == pytest.approx(math.pi * 0.25 * 0.15, rel=0.02)  # the ellipse's area
    assert phantom.phase_map("LaB6", 0.5).sum() == 0  # LaB6 stops at z = 0.3
    # the line integral through the map equals the exact chord
    row = int((0.2 + phantom.radius) / pixel)  # v = 0.2: a horizontal line through CeO2
    along_u = ceo2[row].sum() * pixel
    exact = float(phantom.path_lengths(0.2 + pixel / 2 - pixel / 2, 90.0, 0.0)["CeO2"])
    assert along_u == pytest.approx(exact, abs=3 * pixel)


def test_demo_monitors_follow_the_sample(server_dir, data_root):  # its redis-server stopped at the end
    from conftest import CONFIG_DIR

    from bliss_lite.shell.runner import open_session

    _, ns = open_session("demo", CONFIG_DIR)
    i0, it, x = ns["i0"], ns["it"], ns["x"]
    ns["mv"](x, 0.0)
    through = np.mean([it.read(1.0) for _ in range(5)]) / np.mean([i0.read(1.0) for _ in range(5)])
    ns["mv"](x, 5.0)
    beside = np.mean([it.read(1.0) for _ in range(5)]) / np.mean([i0.read(1.0) for _ in range(5)])
    assert beside == pytest.approx(1.0, abs=0.002)  # the beam misses the sample
    sample = ns["xrdct_sample"]
    expected = float(sample.phantom.transmission(sample.phantom.path_lengths(0.0, ns["omega"].position, 0.0)))
    assert through == pytest.approx(expected, abs=0.002) and expected < 0.97
