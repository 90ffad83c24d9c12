"""Helpers for the live view tests: the view server as a child process."""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py


class ViewServer:
    """`python -m bliss_lite view --port 0` as a child process; .url is where it listens.
    Its output goes to a file, so that a failed request can say what the server logged."""

    def __init__(self, *args, env=None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bliss_lite_view_", suffix=".log")
        self.process = subprocess.Popen([sys.executable, "-m", "bliss_lite", "view", "--port", "0", *args],
                                        stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        for _ in range(600):  # a hang guard, not a timing: the server prints its address when up
            line = self.output().partition("\n")[0]
            if "Live view of" in line or self.process.poll() is not None:
                break
            time.sleep(0.1)
        assert "Live view of" in line, self.output()
        self.url = line.split(" on ")[1].strip()
        self.base = self.url.split("?")[0].rstrip("/")

    def output(self):
        with open(self.log.name) as log:
            return log.read()

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                body = reply.read()
                return json.loads(body) if reply.headers["Content-Type"].startswith("application/json") else body
        except urllib.error.HTTPError as error:
            if error.code >= 500:  # the server's own traceback says why (logged after the reply went)
                time.sleep(1)
                error.msg = f"{error.msg}; the view server logged:\n{self.output()[-1500:]}"
            raise

    def close(self):
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def pdf_ct_scan(redis_url, folder, number=1, windows=None, title="pdf-ct by hand"):
    """A small PDF-CT scan as the view meets one: an XRD-CT entry of two heights of 12 x 12
    voxels (each voxel's I(Q) a mix of two SiO2 dimers' Debye patterns, 1.61 A and 2.63 A apart:
    Si-O on the left of the disk, O-O on the right, swapped at the second height), reduced to
    G(r) by the `pdf_scan` job as the pdf hook does after the reconstruction, and the scan
    published to Redis with that file and entry, closed. `windows`: the r windows the job maps
    (named as the pdf hook's dict keys), Si-O and O-O by default. Returns (scan key, master file)."""
    import numpy as np
    import redis

    from bliss_lite.data.atomic_scattering import averages
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.publisher import ScanPublisher
    from bliss_lite.processing.jobs import call_plugin, load_plugins
    from bliss_lite.processing.nexus_output import write_reconstruction

    n, n_omega, radius = 12, 18, 1.0
    q = np.linspace(0.3, 30.0, 600)
    f_mean, f2_mean, c_mean = averages({"Si": 1, "O": 2}, q)
    dimer = {d: f2_mean + c_mean + f_mean ** 2 * np.sin(q * d) / (q * d) for d in (1.61, 2.63)}
    x_mm = -radius + (np.arange(n) + 0.5) * 2 * radius / n
    xx, yy = np.meshgrid(x_mm, x_mm)
    inside = xx ** 2 + yy ** 2 < (0.9 * radius) ** 2
    left = np.clip(0.5 - xx / radius, 0.0, 1.0) * inside
    right = inside - left
    volume = np.stack([a[..., None] * dimer[1.61] + b[..., None] * dimer[2.63] for a, b in ((left, right), (right, left))])
    xrdct = {"n_x": n, "n_omega": n_omega, "z_positions": [0.0, 0.5], "x_start": -radius, "x_stop": radius,
             "omega_range": 180.0, "fast_axis": "x"}
    path = Path(folder) / "pdfct.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("1.1")["scan_info"] = json.dumps({"xrdct": xrdct})
    write_reconstruction(str(path), "1.1", volume.astype(np.float32), x_mm, x_mm, [0.0, 0.5], q, "q_A^-1", {},
                         {"centre_mm": 0.0})
    load_plugins()
    call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {
        "composition": {"Si": 1, "O": 2}, "rmax": 10.0,
        "windows": windows if windows is not None else {"Si-O": [1.5, 1.7], "O-O": [2.5, 2.75]}}})
    client = redis.Redis.from_url(redis_url)
    publisher = ScanPublisher(client, session="test", number=number, name="xrdct",
                              channels=[ChannelSpec(c) for c in ("omega", "x", "z")],
                              scan_info={"title": title, "npoints": 2, "xrdct": xrdct,
                                         "filename": str(path), "entry": "1.1"})
    publisher.create(then=("PREPARED", "STARTED"))
    publisher.publish({"omega": [5.0, 15.0], "x": [-0.9, -0.7], "z": [0.0, 0.0]})
    publisher.seal("SUCCESS")
    return publisher.key, path


def read_events(url, until, out):
    """Collect every `scan` event of the view's event stream until one satisfies `until`."""
    with urllib.request.urlopen(url + "/events", timeout=60) as stream:
        event = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "scan":
                out.append(json.loads(line[6:]))
                if until(out[-1]):
                    return
