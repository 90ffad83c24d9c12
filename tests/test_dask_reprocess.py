"""`bliss-lite reprocess --dask`: integration split in frame ranges on a dask.distributed cluster
gives the single-process results, survives a killed worker, resumes after an interruption, and
refuses a scheduler that is not there within seconds, writing nothing."""
from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from bliss_lite.data.safe_open import open_hdf5  # noqa: E402
from bliss_lite.processing.dask_cluster import cluster  # noqa: E402
from bliss_lite.processing.dask_integrate import integrate_scan_dask, plan  # noqa: E402
from bliss_lite.processing.jobs import Job, load_plugins, run_job  # noqa: E402
from bliss_lite.processing.progress_bar import ProgressBar  # noqa: E402
from bliss_lite.processing.reprocess import dask_address  # noqa: E402
from bliss_lite.processing.reprocess import main as reprocess  # noqa: E402

PONI = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
ROI = (816, 700, 48, 160)
FRAMES = 120


def write_scan(path, frames=FRAMES):
    """A small scan entry 2.1 of Bitshuffle-LZ4 Pilatus frames (a 48 x 160 ROI)."""
    from bliss_lite.data import bslz4
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter

    data = np.random.default_rng(5).poisson(30, (frames, *ROI[2:])).astype(np.int32)
    writer = EntryWriter(path, 2, title="timescan", axes=[ChannelSpec("omega", unit="deg")],
                         counters=[ChannelSpec("pilatus", "int32", ROI[2:], encoding="bslz4")])
    writer.append({"omega": np.linspace(0, 180, frames), "pilatus": [bslz4.compress(f) for f in data]})
    writer.close()
    return path


def job_input(source, output, part_frames=4):
    """Frames from the scan `source`, patterns into a file of their own (`output`)."""
    return {"filename": str(source), "entry": "2.1", "part_frames": part_frames,
            "output": {"filename": str(output), "entry": "2.1"},
            "integration": {"poni": str(PONI), "roi": list(ROI), "npt": 120}}


def patterns(path):
    with open_hdf5(path) as h5:
        return h5["2.1/integrate/results/intensity"][()]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """The scan, and its patterns as the single-process job makes them."""
    load_plugins()
    root = tmp_path_factory.mktemp("dask_scan")
    write_scan(root / "raw.h5")
    job = run_job(Job("integrate_scan", job_input(root / "raw.h5", root / "single.h5")))
    assert job.status == "success", job.traceback
    return root, patterns(root / "single.h5")


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes, one thread each; closed, its workers gone, after."""
    with cluster(workers=2) as client:
        yield client
        pids = set(client.run(os.getpid).values())
    time.sleep(0.5)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "Dask workers left running"


class Quiet:
    """A progress sink that can stop the job (`stop_after` parts) or do something at a part."""

    def __init__(self, total, done, stop_after=None, at_first=None):
        self.updates, self.stop_after, self.at_first = 0, stop_after, at_first

    def update(self, n):
        self.updates += 1
        if self.updates == 1 and self.at_first:
            self.at_first()
        if self.stop_after is not None and self.updates >= self.stop_after:
            raise KeyboardInterrupt

    def close(self):
        pass


def output_of(scan, tmp_path, name, **options):
    """(job input reading the module's scan, the file its patterns go to)."""
    root, _ = scan
    return job_input(root / "raw.h5", tmp_path / f"{name}.h5", **options), tmp_path / f"{name}.h5"


def test_two_workers_give_the_single_process_patterns(scan, client, tmp_path):
    _, expected = scan
    data, path = output_of(scan, tmp_path, "two")
    out = integrate_scan_dask(data, client, progress=Quiet)
    assert (out["frames"], out["parts"], out["parts_run"], out["parts_skipped"]) == (FRAMES, 30, 30, 0)
    assert len(set(client.run(os.getpid).values())) == 2
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)
    assert expected.shape == (FRAMES, 120) and float(expected.max()) > 0
    assert not list(tmp_path.rglob("*.parts"))  # parts joined, then removed


def test_rerun_after_an_interruption_does_only_the_missing_parts(scan, client, tmp_path):
    _, expected = scan
    data, path = output_of(scan, tmp_path, "resumed")
    with pytest.raises(KeyboardInterrupt):
        integrate_scan_dask(data, client, progress=lambda t, d: Quiet(t, d, stop_after=5))
    state = json.loads(next(tmp_path.rglob("state.json")).read_text())  # beside the output
    done = len(state["done"])
    assert 5 <= done < 30
    out = integrate_scan_dask(data, client, progress=Quiet)
    assert (out["parts_skipped"], out["parts_run"]) == (done, 30 - done)
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)


def test_other_settings_do_not_reuse_the_parts_of_an_interrupted_job(scan, client, tmp_path):
    data, path = output_of(scan, tmp_path, "changed")
    with pytest.raises(KeyboardInterrupt):
        integrate_scan_dask(data, client, progress=lambda t, d: Quiet(t, d, stop_after=3))
    other = json.loads(json.dumps(data))
    other["integration"]["npt"] = 100
    out = integrate_scan_dask(other, client, progress=Quiet)
    assert (out["parts_skipped"], out["parts_run"], out["npt"]) == (0, 30, 100)
    assert patterns(path).shape == (FRAMES, 100)


def test_a_late_part_of_an_interrupted_job_never_replaces_a_part_of_the_next(scan, client, tmp_path, monkeypatch):
    """Dask cannot stop a running task: one of the interrupted job (npt 120) may write its part
    file after a job with other settings (npt 100) has begun; it lands in its own job's folder."""
    from bliss_lite.processing import dask_integrate
    from bliss_lite.processing.integration_settings import IntegrationSettings

    folders = []  # the part folder each job's tasks are given

    class Recorded(dask_integrate.PartState):
        def __init__(self, *args):
            super().__init__(*args)
            folders.append(self.folder)

    monkeypatch.setattr(dask_integrate, "PartState", Recorded)
    data, path = output_of(scan, tmp_path, "late")
    with pytest.raises(KeyboardInterrupt):
        integrate_scan_dask(data, client, progress=lambda t, d: Quiet(t, d, stop_after=3))
    old_settings = IntegrationSettings.from_poni(PONI, roi=ROI, npt=120).to_json()

    def late_parts():  # as cancelled tasks of the first job, still running, would write them
        folders[0].mkdir(parents=True, exist_ok=True)
        for first, stop in [(0, 4), (4, 8), (8, 12)]:
            dask_integrate.integrate_part(str(folders[0]), data["filename"], "2.1", "pilatus", old_settings,
                                          first, stop)

    other = json.loads(json.dumps(data))
    other["integration"]["npt"] = 100
    out = integrate_scan_dask(other, client, progress=lambda t, d: Quiet(t, d, at_first=late_parts))
    assert folders[0] != folders[1]
    assert (out["parts_skipped"], out["parts_run"]) == (0, 30)
    assert patterns(path).shape == (FRAMES, 100)
    assert not list(tmp_path.rglob("*.parts"))


def test_a_worker_killed_during_the_job_costs_only_its_task(scan, client, tmp_path):
    _, expected = scan
    data, path = output_of(scan, tmp_path, "killed", part_frames=1)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        busy = [w for w, tasks in client.processing().items() if tasks] or list(pids)
        killed.append(pids[busy[0]])
        os.kill(killed[0], signal.SIGKILL)

    out = integrate_scan_dask(data, client,
                              progress=lambda t, d: Quiet(t, d, at_first=kill_a_busy_worker))
    assert out["parts_run"] == FRAMES and killed
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)
    client.wait_for_workers(2, timeout=60)  # the nanny started another in its place
    assert killed[0] not in client.run(os.getpid).values()


def test_a_bad_scheduler_address_fails_at_once_and_writes_nothing(scan, tmp_path, capsys):
    data, path = output_of(scan, tmp_path, "bad")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": data}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    assert reprocess([str(job), "--dask", "tcp://127.0.0.1:1"]) == 2
    assert time.monotonic() - t0 < 15
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bliss-lite reprocess: no Dask scheduler at tcp://127.0.0.1:1 (tried 5 s)")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not path.exists()


def test_where_the_dask_setting_comes_from(tmp_path, monkeypatch):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {}, "dask": "tcp://head:8786"}))
    monkeypatch.delenv("BLISS_LITE_DASK", raising=False)
    assert dask_address(None, job) == "tcp://head:8786"
    assert dask_address("", job) == ""  # --dask alone: a LocalCluster
    monkeypatch.setenv("BLISS_LITE_DASK", "local")
    assert dask_address(None, job) == ""
    monkeypatch.setenv("BLISS_LITE_DASK", "tcp://other:8786")
    assert dask_address(None, job) == "tcp://other:8786"
    monkeypatch.delenv("BLISS_LITE_DASK")
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {}}))
    assert dask_address(None, job) is None


def test_plan_and_progress_bar():
    assert plan(10, 4) == [(0, 4), (4, 8), (8, 10)]
    stream = io.StringIO()
    bar = ProgressBar(100, stream=stream, log_every=0)
    bar.started -= 2.0  # as if 2 s ago
    bar.update(50)
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("[" + "#" * 15 + "." * 15 + "] 50/100 frames  50%")
    rate = float(line.split("frames/s")[0].split()[-1])
    assert 20 <= rate <= 25
    assert line.endswith("0:02 left")


def test_reprocess_with_dask_in_the_job_file_runs_on_a_local_cluster(scan, tmp_path, capsys):
    _, expected = scan
    data, path = output_of(scan, tmp_path, "cli")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": data, "dask": True}))
    assert reprocess([str(job)]) == 0
    finished = json.loads((tmp_path / "job.reprocessed.json").read_text())
    assert finished["status"] == "success", finished["traceback"]
    assert (finished["output"]["parts"], finished["output"]["parts_run"]) == (30, 30)
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)
    assert f"{FRAMES}/{FRAMES} frames 100%" in capsys.readouterr().err  # the progress bar's last line


def volume_and_maps(filename, entry):
    with open_hdf5(filename) as h5:
        group = h5[entry]["reconstruct"]
        phases = sorted(k for k in group if hasattr(group[k], "keys") and "map" in group[k])
        return group["volume/data"][()], {p: group[f"{p}/map"][()] for p in phases}


def test_reconstruction_split_by_height_equals_single_process_and_resumes(scan_session, client):
    from bliss_lite.processing.dask_reconstruct import reconstruct_scan_dask
    from bliss_lite.processing.scan_plugins import reconstruct_scan

    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [-0.3, -0.1, 0.1, 0.4], 0.015, n_omega=8,
                       fast_axis="x", hooks={"integration": {"npt": 200, "workers": 0}})
    job = {"filename": scan.filename, "entry": scan.entry}
    single = reconstruct_scan(job)
    volume, maps = volume_and_maps(scan.filename, scan.entry)
    assert volume.shape[0] == 4 and float(np.abs(volume).max()) > 0 and len(maps) >= 2

    with pytest.raises(KeyboardInterrupt):
        reconstruct_scan_dask(job, client, progress=lambda t, d: Quiet(t, d, stop_after=1))
    out = reconstruct_scan_dask(job, client, progress=Quiet)
    assert out["heights_skipped"] >= 1 and out["heights_run"] + out["heights_skipped"] == 3  # height 0: the client's
    assert (out["slices"], out["centre_mm"], out["phases"]) == (single["slices"], single["centre_mm"], single["phases"])
    got_volume, got_maps = volume_and_maps(scan.filename, scan.entry)
    np.testing.assert_allclose(got_volume, volume, rtol=1e-6, atol=1e-6 * float(np.abs(volume).max()))
    for phase, image in maps.items():
        np.testing.assert_allclose(got_maps[phase], image, rtol=1e-6, atol=1e-6 * float(np.abs(image).max()))


def test_a_job_asking_for_the_gpu_gets_one_local_worker_per_gpu(monkeypatch):
    from bliss_lite.processing import dask_cluster
    from bliss_lite.processing.reprocess import wants_gpu

    gpu_job = Job("integrate_scan", {"backend": "gpu"})
    assert wants_gpu([("a.json", Job("integrate_scan", {}), ""), ("b.json", gpu_job, "")])
    assert not wants_gpu([("b.json", gpu_job, "tcp://head:8786")])  # a cluster's workers are its own
    monkeypatch.setattr(dask_cluster, "gpu_count", lambda: 4)
    assert dask_cluster.local_workers("gpu") == 4
    assert dask_cluster.local_workers("cpu") == len(os.sched_getaffinity(0))


# --- the GPU's batched path: its logic on the CPU everywhere, on the GPU where CuPy finds one ----

def range_settings():
    from bliss_lite.processing.integration_settings import IntegrationSettings

    return IntegrationSettings.from_poni(PONI, roi=ROI, npt=120).to_json()


class PipelineStandIn:
    """The GPU pipeline's use of a chunk sequence, on the CPU: `integrate_compressed` asks for
    chunk 0 (the layout), then slices the sequence a batch at a time and is done with a slice
    (there: copied into pinned buffers) before it asks for the one after; each chunk decoded and
    integrated by the CPU's LeanIntegrator. There is no NumPy stand-in for the GPU module
    itself (gpu/integrate.py is CuPy throughout), so this is what runs its caller's logic here."""

    def __init__(self, lean, batch=7):
        self.lean, self.batch, self.slices = lean, batch, []

    @property
    def npt(self):
        return self.lean.npt

    @property
    def radial(self):
        return self.lean.radial

    def integrate_compressed(self, chunks, dtype=np.int32):
        from collections.abc import Sequence

        from bliss_lite.data import bslz4

        assert isinstance(chunks, Sequence)  # sliced as the pipeline goes, never listed whole
        bslz4.decompress(chunks[0], self.lean.shape, dtype)
        out = []
        for first in range(0, len(chunks), self.batch):
            part = chunks[first:first + self.batch]
            self.slices.append((first, len(part)))
            out += [self.lean.integrate(bslz4.decompress(bytes(c), self.lean.shape, dtype)) for c in part]
        return np.stack(out)


def test_the_batched_range_gives_the_frame_by_frame_patterns(scan):
    from bliss_lite.processing import dask_integrate

    root, expected = scan
    raw, settings = str(root / "raw.h5"), range_settings()
    lean = dask_integrate._integrator(settings, "cpu")
    by_frame = dask_integrate.integrate_range(raw, "2.1", "pilatus", settings, 5, 83)
    np.testing.assert_allclose(by_frame, expected[5:83], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(dask_integrate.integrate_batched(lean, raw, "2.1", "pilatus", 5, 83), by_frame)
    stand_in = PipelineStandIn(lean)
    np.testing.assert_array_equal(dask_integrate.integrate_batched(stand_in, raw, "2.1", "pilatus", 5, 83), by_frame)
    assert stand_in.slices[0] == (0, 7) and stand_in.slices[-1] == (77, 1) and len(stand_in.slices) == 12
    with pytest.raises(ValueError, match=r"frames 100\.\.130: only 20 readable"):
        dask_integrate.integrate_batched(lean, raw, "2.1", "pilatus", 100, 130)


def test_the_gpu_backend_takes_the_batched_path(scan, monkeypatch):
    """integrate_range(backend="gpu") hands its range to integrate_batched with the worker's
    (cached) integrator: here the stand-in in the GPU one's place."""
    from bliss_lite.processing import dask_integrate

    root, expected = scan
    settings = range_settings()
    stand_in = PipelineStandIn(dask_integrate._integrator(settings, "cpu"), batch=16)
    monkeypatch.setattr(dask_integrate, "_integrator", lambda s, backend: stand_in if backend == "gpu" else None)
    got = dask_integrate.integrate_range(str(root / "raw.h5"), "2.1", "pilatus", settings, 0, FRAMES, "gpu")
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert len(stand_in.slices) == -(-FRAMES // 16)
    assert dask_integrate.part_frames_for("gpu") == dask_integrate.GPU_PART_FRAMES > dask_integrate.PART_FRAMES


def test_single_process_gpu_job_takes_the_batched_path(scan, tmp_path, monkeypatch):
    """`integrate_scan` with backend "gpu", in this process: the entry's frames through
    dask_integrate.integrate_batched, GPU_PART_FRAMES at a time into the pattern file (here the
    stand-in in the GPU integrator's place, as if CuPy had found a GPU)."""
    from bliss_lite.processing import dask_integrate, gpu, integrator

    _, expected = scan
    real, made = integrator.LeanIntegrator, []

    def lean(settings, backend="cpu"):
        if backend != "gpu":
            return real(settings, backend)
        made.append(PipelineStandIn(real(settings), batch=16))
        return made[-1]

    monkeypatch.setattr(gpu, "unavailable_reason", lambda: None)
    monkeypatch.setattr(integrator, "LeanIntegrator", lean)
    monkeypatch.setattr(dask_integrate, "GPU_PART_FRAMES", 50)
    data, path = output_of(scan, tmp_path, "gpu_here")
    job = run_job(Job("integrate_scan", {**data, "backend": "gpu"}))
    assert job.status == "success", job.traceback
    assert job.output["frames"] == FRAMES and len(made) == 1
    assert [first for first, _ in made[0].slices if first == 0] == [0, 0, 0]  # one pipeline per range
    assert sum(n for _, n in made[0].slices) == FRAMES
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)


def test_single_process_gpu_job_refused_without_a_gpu_before_anything_is_written(scan, tmp_path, monkeypatch,
                                                                                   capsys):
    """No CuPy or no device: `bliss-lite reprocess` names the job's backend and why, exit 2,
    nothing written; the plugin itself (a job from elsewhere) fails the same way, the output
    untouched. "auto" takes the CPU there; an unknown backend is refused."""
    from bliss_lite.processing import gpu

    _, expected = scan
    why = "CuPy cannot be imported (ModuleNotFoundError: No module named 'cupy')"
    monkeypatch.setattr(gpu, "unavailable_reason", lambda: why)
    data, path = output_of(scan, tmp_path, "refused")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {**data, "backend": "gpu"}}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert reprocess([str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f'bliss-lite reprocess: {job}: input "backend" is "gpu", which needs CuPy and an NVIDIA GPU, '
                      f'but {why}; set it to "cpu" or "auto" (--set backend=cpu)'), err
    assert err[-1].endswith("nothing run")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    direct = run_job(Job("integrate_scan", {**data, "backend": "gpu"}))
    assert direct.status == "failure" and 'the job\'s "backend" is "gpu"' in direct.error and why in direct.error
    assert not path.exists()
    odd = run_job(Job("integrate_scan", {**data, "backend": "cuda"}))
    assert odd.status == "failure" and "input \"backend\" is 'cuda'; choose from cpu, gpu, auto" in odd.error
    assert not path.exists()
    assert reprocess([str(job), "--set", "backend=auto"]) == 0
    np.testing.assert_allclose(patterns(path), expected, rtol=1e-6, atol=0)


def test_stored_chunks_are_the_files_chunks(scan, monkeypatch):
    from bliss_lite.data.frame_reader import EntryFrames, entry_frames
    from bliss_lite.processing.dask_integrate import StoredChunks

    root, _ = scan
    with entry_frames(root / "raw.h5", "2.1", "pilatus") as frames:
        stored = [frames.chunk(i) for i in range(FRAMES)]
        with StoredChunks(frames, 10, 110, threads=3) as chunks:
            assert chunks.plain and len(chunks) == 100
            assert chunks[0] == stored[10] and chunks[-1] == stored[109]
            for a in range(0, 100, 9):  # slices in order: each read ahead of its asking
                assert [bytes(c) for c in chunks[a:a + 9]] == stored[10 + a:min(19 + a, 110)]
            assert [bytes(c) for c in chunks[50:53]] == stored[60:63]  # out of order: read then
            with pytest.raises(IndexError):
                chunks[100]
        real = EntryFrames.chunk_locations
        monkeypatch.setattr(EntryFrames, "chunk_locations",  # offsets off by a byte: h5py reads instead
                            lambda self, a, b: [(p, o + 1, n) for p, o, n in real(self, a, b)])
        with StoredChunks(frames, 0, 20) as chunks:
            assert not chunks.plain
            assert [bytes(c) for c in chunks[0:20]] == stored[:20]


needs_gpu = pytest.mark.skipif(not __import__("bliss_lite.processing.gpu", fromlist=["available"]).available(),
                               reason="no GPU here (CuPy and a CUDA device needed)")


@needs_gpu
def test_gpu_range_and_gpu_worker_equal_the_cpu_path(scan, tmp_path):
    """On the GPU the batched pipeline, through Dask too: the CPU's patterns within 1e-4 (the
    GPU tests' tolerance: float32 sums in another order)."""
    from bliss_lite.processing import dask_integrate

    root, expected = scan
    got = dask_integrate.integrate_range(str(root / "raw.h5"), "2.1", "pilatus", range_settings(), 0, FRAMES, "gpu")
    assert float(np.abs(got - expected).max() / np.abs(expected).max()) <= 1e-4
    data, path = output_of(scan, tmp_path, "gpu", part_frames=50)
    with cluster(workers=1, backend="gpu") as gpu_client:
        out = integrate_scan_dask({**data, "backend": "gpu"}, gpu_client, progress=Quiet)
    assert (out["parts"], out["parts_run"]) == (3, 3)
    assert float(np.abs(patterns(path) - expected).max() / np.abs(expected).max()) <= 1e-4


@needs_gpu
def test_single_process_gpu_job_equals_the_cpu_path(scan, tmp_path, monkeypatch):
    """`bliss-lite reprocess JOB.json` with backend "gpu", no Dask: the batched pipeline in this
    process, the CPU's patterns within 1e-4, over more than one range."""
    from bliss_lite.processing import dask_integrate

    _, expected = scan
    data, path = output_of(scan, tmp_path, "gpu_single")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {**data, "backend": "gpu"}}))
    monkeypatch.setattr(dask_integrate, "GPU_PART_FRAMES", 50)
    assert reprocess([str(job)]) == 0
    finished = json.loads((tmp_path / "job.reprocessed.json").read_text())
    assert finished["status"] == "success" and finished["output"]["frames"] == FRAMES, finished["traceback"]
    assert float(np.abs(patterns(path) - expected).max() / np.abs(expected).max()) <= 1e-4


FAULTS = """
import os, resource, sys
import numpy as np
from bliss_lite.data import bslz4
from bliss_lite.processing.dask_integrate import reuse_frame_memory
chunk = bslz4.compress(np.random.default_rng(1).poisson(3, (1000, 1000)).astype(np.int32))

def faults_per_decode():
    bslz4.decompress(chunk, (1000, 1000), np.int32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        bslz4.decompress(chunk, (1000, 1000), np.int32)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

print(faults_per_decode(), reuse_frame_memory(), faults_per_decode())
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_decoded_frames_reuse_memory_in_a_dask_worker(client):
    """Dask's workers run with MALLOC_TRIM_THRESHOLD_ set: each 4 MB decoded frame a fresh mmap,
    ~1000 page faults; after reuse_frame_memory (every integration task calls it) none."""
    import subprocess
    import sys

    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, timeout=120)
    before, took, after = out.stdout.split()
    assert float(before) > 500 and took == "True" and float(after) < 50, out.stdout + out.stderr


def test_the_batched_range_of_plain_int32_frames(tmp_path):
    """Frames stored as they are (no Bitshuffle-LZ4): integrate_many a block of bytes at a time."""
    import h5py

    from bliss_lite.data.frame_reader import entry_frames
    from bliss_lite.processing import dask_integrate

    data = np.random.default_rng(9).poisson(30, (11, *ROI[2:])).astype(np.int32)
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5.create_dataset("2.1/instrument/pilatus/data", data=data, chunks=(1, *ROI[2:]))
    with entry_frames(tmp_path / "plain.h5", "2.1", "pilatus") as frames:
        assert not frames.encoded and len(frames) == 11
    lean = dask_integrate._integrator(range_settings(), "cpu")
    got = dask_integrate.integrate_batched(lean, str(tmp_path / "plain.h5"), "2.1", "pilatus", 1, 10,
                                           block_bytes=4 * data[0].nbytes)
    np.testing.assert_array_equal(got, lean.integrate_many(data[1:10]))
