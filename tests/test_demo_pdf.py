"""`bliss-lite demo --pdf`: PDF-CT end to end through the pdfct session (detector frames,
workers integrating in Q, reconstruction, the pdf hook), a small grid."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py


def test_demo_pdf_maps_every_phase_and_recovers_its_gr(tmp_path):
    from bliss_lite.data.redis_server import stop_server

    run_dir = Path(tempfile.mkdtemp(prefix="bl_pdf_", dir="/tmp"))  # short: a unix socket lives there
    env = {k: v for k, v in os.environ.items() if k not in ("BLISS_LITE_REDIS_URL", "BLISS_LITE_DATA_ROOT")}
    env["BLISS_LITE_RUN_DIR"] = str(run_dir)
    try:
        done = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "demo", "--pdf", "--nx", "24", "--nomega", "36",
                               "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    finally:
        stop_server(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    phases = {"SiO2_glass", "Ni_nano", "CeO2"}
    assert set(summary["gr_correlation"]) == set(summary["map_correlation"]) == phases
    assert all(r >= 0.9 for r in summary["map_correlation"].values()), summary
    assert all(r >= 0.9 for r in summary["gr_correlation"].values()), summary
    assert all(e <= 0.02 for e in summary["first_peak_error_A"].values()), summary
    assert Path(summary["png"]).stat().st_size > 10_000
    with h5py.File(summary["hdf5"]) as h5:
        entry = h5[summary["entry"]]
        assert entry["pdf/gr/data"].shape[-1] == 2001 and entry["pdf/gr/r"].attrs["units"] == "A"
        assert entry["reconstruct/volume/q"].attrs["units"] == "A^-1"
