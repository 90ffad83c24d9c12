"""Integration workers on a Redis consumer group, and the scan hooks that drive them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from bliss_lite.data import bslz4
from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.redis_server import connect
from bliss_lite.processing import integration_queue as queue
from bliss_lite.processing.integration_settings import IntegrationSettings
from bliss_lite.processing.integrator import LeanIntegrator

PONI = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
ROI = (816, 700, 48, 160)


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout  # a hang guard, not a measurement
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_worker(url, name, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bliss_lite.cli", "worker", "--redis", url, "--name", name, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def fake_scan(client, frames):
    """A scan record with a frame channel, its frames published as a detector would."""
    spec = ChannelSpec("pilatus", "int32", frames.shape[1:], "counts", "bslz4")
    publisher = ScanPublisher(client, session="test", number=1, name="xrdct", channels=[spec])
    publisher.create(then=("PREPARED", "STARTED"))
    return publisher, spec


def test_killing_a_worker_mid_scan_loses_no_frame(shared_redis):
    from bliss_lite.processing import worker_pool

    worker_pool.stop_all()  # workers an earlier test's scans left running would take the frames
    client = connect(shared_redis, socket_timeout=None)
    settings = IntegrationSettings.from_poni(PONI, roi=ROI, npt=100)
    integrator = LeanIntegrator(settings)
    rng = np.random.default_rng(5)
    frames = rng.poisson(40, (120, 48, 160)).astype(np.int32)
    frames[:, integrator.mask] = -1
    publisher, _ = fake_scan(client, frames)
    queue.register(client, publisher.key, "pilatus", settings, len(frames))
    doomed = start_worker(shared_redis, "doomed", "--batch", "8", "--frame-delay", "0.05")
    survivor = None
    try:
        publisher.publish({"pilatus": [bslz4.compress(f) for f in frames]})
        publisher.seal("SUCCESS")
        reader = queue.PatternReader(client, publisher.key, 100)
        got = {}

        def doomed_has_work():
            for index, pattern in zip(*reader.poll()):
                got[int(index)] = pattern
            pending = client.xpending_range(queue.frames_key(publisher.key, "pilatus"), queue.GROUP, "-", "+", 100,
                                            consumername="doomed")
            return len(got) >= 8 and len(pending) > 0

        wait_until(doomed_has_work, 60, "the first worker to integrate frames and hold more")
        held = {int(p["message_id"].split(b"-")[0] if isinstance(p["message_id"], bytes) else 0) for p in
                client.xpending_range(queue.frames_key(publisher.key, "pilatus"), queue.GROUP, "-", "+", 100,
                                      consumername="doomed")}
        assert held
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        survivor = start_worker(shared_redis, "survivor")

        def all_in():
            for index, pattern in zip(*reader.poll()):
                got[int(index)] = pattern
            return len(got) == len(frames)

        wait_until(all_in, 90, "every frame integrated after the kill")
        expected = integrator.integrate_many(frames)
        for index in range(len(frames)):
            np.testing.assert_allclose(got[index], expected[index], rtol=1e-6)
        workers = {f[b"worker"].decode() for _, f in client.xrange(queue.results_key(publisher.key))}
        assert workers == {"doomed", "survivor"}
        assert client.xpending(queue.frames_key(publisher.key, "pilatus"), queue.GROUP)["pending"] == 0
        info = queue.get_info(client, publisher.key)
        np.testing.assert_allclose(info["radial"], integrator.radial)
    finally:
        queue.unregister(client, publisher.key)
        for process in (doomed, survivor):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
    assert "claimed" in survivor.stderr.read()


def test_xrdct_scan_is_integrated_by_workers_into_an_nxprocess(scan_session):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, 8, [0.0], 0.008, n_omega=10, fast_axis="x",
                       hooks={"integration": {"npt": 150, "workers": 2}})
    hook = scan.hook("integration")
    assert len(hook.received) == hook.received.count_below(80) == 80
    assert hook.local_frames == 0  # all done by the worker processes, none by the scan
    from bliss_lite.data.entry_reader import read_frames

    frames = read_frames(scan.filename, scan.entry, "pilatus", range(80))
    expected = hook.integrator().integrate_many(frames)
    with h5py.File(scan.filename, "r") as h5:
        process = h5[f"{scan.entry}/integrate"]
        assert process.attrs["NX_class"] == "NXprocess"
        results = process["results"]
        assert results.attrs["signal"] == "intensity" and list(results.attrs["axes"]) == ["frame", "q"]
        assert results["q"].attrs["units"] == "nm^-1"
        np.testing.assert_allclose(results["intensity"][()], expected, rtol=1e-6)
        np.testing.assert_allclose(h5[f"{scan.entry}/measurement/integrated"][()], expected, rtol=1e-6)
        assert IntegrationSettings.from_json(process["configuration"][()].decode()).npt == 150
    client = connect(os.environ["BLISS_LITE_REDIS_URL"])
    assert client.hget(queue.ACTIVE_KEY, scan.key) is None  # the scan left the workers' list


def test_without_redis_the_hook_integrates_from_the_file(test_session, data_root, monkeypatch):
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", "redis://127.0.0.1:1")  # nobody there
    test_session["SESSION"].scan_context.redis.forget()
    ns = test_session
    try:
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x",
                           hooks=["integration"])
    finally:
        test_session["SESSION"].scan_context.redis.forget()
    hook = scan.hook("integration")
    assert len(hook.received) == hook.received.count_below(24) == 24 and hook.local_frames == 24
    with h5py.File(scan.filename, "r") as h5:
        assert h5[f"{scan.entry}/integrate/frames_integrated_here"][()] == 24
        assert h5[f"{scan.entry}/integrate/results/intensity"].shape == (24, 1000)


def test_hooks_are_checked_before_anything_moves(test_session):
    ns = test_session
    omega = ns["omega"]
    before = omega.position
    args = (ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008)
    with pytest.raises(ValueError, match=r"unknown hook\(s\) 'integrashun'; registered: .*integration"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks=["integrashun"])
    with pytest.raises(ValueError, match="hook integration: integration: npt must be a whole number"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {"npt": 0}})
    with pytest.raises(ValueError, match="hook integration: workers must be a whole number"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {"workers": -1}})
    with pytest.raises(ValueError, match="hook integration: .*unexpected keyword.*nbins.*known options: .*npt"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {"nbins": 10}})
    assert omega.position == before


def test_a_user_hook_follows_the_scan(server_dir, test_session, data_root):  # its redis-server stopped at the end
    from bliss_lite.processing.hooks import HOOK_FACTORIES, ScanHook, register_hook

    calls = []

    class Counting(ScanHook):
        name = "counting"

        def scan_started(self, scan):
            calls.append(("started", scan.state, scan.data.count("pilatus")))

        def scan_finished(self, scan):
            calls.append(("finished", scan.state, scan.data.count("pilatus")))

    register_hook("counting", lambda options, context: Counting())
    try:
        ns = test_session
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x",
                           hooks=["counting"])
    finally:
        HOOK_FACTORIES.pop("counting")
    assert calls == [("started", "STARTED", 0), ("finished", "CLOSED", 24)]
    assert isinstance(scan.hook("counting"), Counting)


def test_session_processing_must_be_a_mapping_of_hooks(tmp_path):
    from bliss_lite.config import Config
    from bliss_lite.config.errors import ConfigError
    from bliss_lite.config.settings import SettingsStore
    from tests.conftest import write_config

    root = write_config(tmp_path / "cfg", {"sessions/s.yml": "- name: s\n  class: session\n  processing: [integration]\n"})
    with pytest.raises(ConfigError, match=r"s.yml:3: session 's': processing must be a mapping"):
        Config(root, SettingsStore(tmp_path / "run")).get("s")


def test_omega_sweeping_scan_is_reconstructed_live_and_at_the_end(scan_session):
    from bliss_lite.processing.reconstruction_hook import live_key

    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [0.0], 0.06, n_omega=10, fast_axis="omega",
                       hooks={"integration": {"npt": 200, "backend": "auto"}, "reconstruction": {
                           "phases": {"CeO2": "CeO2", "LaB6": "LaB6"}, "live_period_s": 0.3, "backend": "auto"}})
    hook = scan.hook("reconstruction")
    from bliss_lite.processing import gpu

    here = "gpu" if gpu.available() else "cpu"  # "auto": the GPU where there is one
    assert hook.resolved == here and hook.configuration()["sinograms_on_gpu"] == (here == "gpu")
    assert hook.live_updates >= 1  # the partial sinogram was reconstructed while the scan ran
    assert set(hook.result["maps"]) == {"CeO2", "LaB6"} and hook.result["volume_shape"] == (1, 8, 8, 200)
    assert hook.result["filled"] == 1.0 and hook.result["heights"] == [0]
    client = connect(os.environ["BLISS_LITE_REDIS_URL"])
    entries = client.xrange(live_key(scan.key))
    final = [f for _, f in entries if f[b"complete"] == b"1"]
    assert {f[b"phase"] for f in final} == {b"CeO2", b"LaB6", b"residual"}  # the fit's residual map too
    image = np.frombuffer(final[0][b"data"], "<f4").reshape(8, 8)
    np.testing.assert_allclose(image, hook.result["maps"][final[0][b"phase"].decode()][0], rtol=1e-6)
    assert len(entries) > len(final)  # live maps came before the final ones
    with h5py.File(scan.filename, "r") as h5:
        assert h5[f"{scan.entry}/reconstruct/LaB6/map"].shape == (1, 8, 8)
        assert h5[f"{scan.entry}/reconstruct/volume/data"].shape == (1, 8, 8, 200)
        np.testing.assert_array_equal(h5[f"{scan.entry}/reconstruct/LaB6/map"][()], hook.result["maps"]["LaB6"])
        assert json.loads(h5[f"{scan.entry}/reconstruct/configuration"][()])["centre_mm"] == hook.centre


def test_bad_reconstruction_options_are_refused_before_motion(test_session):
    ns = test_session
    before = ns["x"].position
    args = (ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008)
    with pytest.raises(ValueError, match="hook reconstruction: method must be one of fbp, sirt, got 'art'"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"reconstruction": {"method": "art"}})
    with pytest.raises(ValueError, match="hook reconstruction: unknown option\\(s\\) slices"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"reconstruction": {"slices": 3}})
    assert ns["x"].position == before


def test_gpu_backend_without_a_gpu_is_refused_before_motion(test_session):
    from bliss_lite.processing import gpu

    if gpu.available():
        pytest.skip("a GPU is here: backend 'gpu' is accepted")
    ns = test_session
    before = ns["x"].position
    args = (ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008)
    with pytest.raises(ValueError, match="hook integration: integration: backend 'gpu' needs CuPy and an NVIDIA GPU, "
                                         "but CuPy cannot be imported .*; use backend='cpu' or 'auto'"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {"backend": "gpu"}})
    with pytest.raises(ValueError, match="hook reconstruction: reconstruction: backend 'gpu' needs CuPy"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {}, "reconstruction": {"backend": "gpu"}})
    with pytest.raises(ValueError, match="hook integration: backend must be one of cpu, gpu, auto, got 'cuda'"):
        ns["xrdct"](*args, n_omega=6, fast_axis="x", hooks={"integration": {"backend": "cuda"}})
    assert ns["x"].position == before


def test_a_worker_asked_for_the_gpu_where_there_is_none_exits_with_the_reason():
    from bliss_lite.processing import gpu

    if gpu.available():
        pytest.skip("a GPU is here")
    done = subprocess.run([sys.executable, "-m", "bliss_lite.cli", "worker", "--backend", "gpu", "--redis",
                           "redis://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "bliss-lite worker: --backend gpu, but CuPy cannot be imported" in done.stderr
