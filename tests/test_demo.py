"""`bliss-lite demo` end to end, then its scan reduced again offline with other parameters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from bliss_lite.controllers.sample.phantom import default_phantom
from bliss_lite.processing.phase_maps import correlation, ground_truth


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run (private run directory, so its own Redis server, stopped afterwards)."""
    import tempfile

    from bliss_lite.data.redis_server import stop_server

    out = tmp_path_factory.mktemp("demo")
    run_dir = Path(tempfile.mkdtemp(prefix="bl_demo_", dir="/tmp"))  # short: a unix socket lives there
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_LITE_REDIS_URL", "BLISS_LITE_DATA_ROOT")}
    env["BLISS_LITE_RUN_DIR"] = str(run_dir)
    try:
        moved = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "-s", "demo", "-c", "mv(x, 0.25, omega, 30)"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert moved.returncode == 0, moved.stderr
        done = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "demo", "--out", str(out)], env=env,
                              capture_output=True, text=True, timeout=600)
        after = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "-s", "demo", "-c",
                                "print('STAGES', x.position, omega.position, z.position)"],
                               env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop_server(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    STAGES_AFTER.append(after.stdout.strip().splitlines()[-1])
    return out, done.stdout.strip().splitlines()


STAGES_AFTER = []  # what a new process of the demo session reads after the demo


def test_the_demo_puts_the_stages_back_where_they_were(demo_run):
    _, lines = demo_run
    assert json.loads(lines[-1])["stages_restored"] == {"omega": 30.0, "x": 0.25, "z": 0.0}
    assert "demo: stages back where they were: omega 30, x 0.25, z 0" in lines
    assert STAGES_AFTER == ["STAGES 0.25 30.0 0.0"]  # they stay there: the next session finds them


def test_demo_reconstructs_every_phase_like_the_ground_truth(demo_run):
    out, lines = demo_run
    summary = json.loads(lines[-1])
    assert set(summary["phase_correlation"]) == {"matrix", "CeO2", "LaB6", "Si", "alpha_Al2O3"}
    for phase, r in summary["phase_correlation"].items():
        assert r >= 0.9, (phase, r)
    assert summary["frames"] == 32 * 50 and summary["integrated_by_workers"] == 32 * 50
    assert summary["live_reconstructions"] >= 2  # maps appeared while the scan ran
    assert abs(summary["centre_of_rotation_mm"]) < 0.01
    assert any(line.startswith("demo:") and "integrated" in line for line in lines[:-1])  # progress
    png = Path(summary["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000
    with h5py.File(summary["hdf5"], "r") as h5:
        entry = h5[summary["entry"]]
        assert entry["end_reason"][()] == b"SUCCESS"
        assert entry["integrate/results/intensity"].shape == (1600, 500)
        volume = entry["reconstruct/volume"]
        assert volume.attrs["NX_class"] == "NXdata" and volume["data"].shape == (1, 32, 32, 500)
        assert list(volume.attrs["axes"]) == ["z", "y", "x", "q"]
        cerium = entry["reconstruct/CeO2/map"][0]
        truth = ground_truth(default_phantom(), "CeO2", 0.0, 32)
        assert correlation(cerium, truth) == pytest.approx(summary["phase_correlation"]["CeO2"], abs=1e-3)


def test_a_scan_is_reduced_again_from_its_file_with_other_parameters(demo_run, tmp_path):
    out, lines = demo_run
    summary = json.loads(lines[-1])
    jobs = []
    for name, plugin, options in (("integrate", "integrate_scan", {"integration": {"npt": 400}}),
                                  ("reconstruct", "reconstruct_scan", {"reconstruction": {"method": "sirt",
                                                                                          "iterations": 30}})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"plugin": plugin, "input": {"filename": summary["hdf5"], "entry": summary["entry"],
                                                               **options}}))
        jobs.append(path)
    done = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "reprocess", *map(str, jobs),
                           "--set", "integration.unit=q_nm^-1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in jobs:
        finished = json.loads(path.with_name(path.stem + ".reprocessed.json").read_text())
        assert finished["status"] == "success"
    with h5py.File(summary["hdf5"], "r") as h5:
        entry = h5[summary["entry"]]
        assert entry["integrate/results/intensity"].shape == (1600, 400)  # the new binning replaced the old
        assert json.loads(entry["reconstruct/configuration"][()])["method"] == "sirt"
        phantom = default_phantom()
        for phase in phantom.names:
            r = correlation(entry[f"reconstruct/{phase}/map"][0], ground_truth(phantom, phase, 0.0, 32))
            assert r >= 0.9, (phase, r)


def test_integrate_scan_reads_a_folder_of_cbf_frames(tmp_path):
    import fabio

    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator
    from bliss_lite.processing.jobs import Job, load_plugins, run_job

    load_plugins()

    poni = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
    roi = (816, 700, 48, 160)
    lean = LeanIntegrator(IntegrationSettings.from_poni(poni, roi=roi, npt=120))
    rng = np.random.default_rng(2)
    frames = rng.poisson(30, (5, 48, 160)).astype(np.int32)
    frames[:, lean.mask] = -1
    for i, frame in enumerate(frames):
        fabio.cbfimage.CbfImage(data=frame).write(str(tmp_path / f"frame_{i:04d}.cbf"))
    job = run_job(Job("integrate_scan", {"cbf_folder": str(tmp_path), "readers": 3,
                                         "integration": {"poni": str(poni), "roi": list(roi), "npt": 120},
                                         "output": {"filename": str(tmp_path / "out.h5")}}))
    assert job.status == "success", job.error
    assert job.output["frames"] == 5
    with h5py.File(tmp_path / "out.h5", "r") as h5:
        np.testing.assert_allclose(h5["1.1/integrate/results/intensity"][()], lean.integrate_many(frames), rtol=1e-6)
