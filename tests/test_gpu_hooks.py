"""The GPU path through the scan hooks: workers integrating whole batches of compressed frames
there, sinograms built on the GPU and reconstructed where they are. The host-side parts and
the CPU fallbacks run everywhere; the GPU parts against the CPU path where CuPy finds a GPU
(skipped elsewhere, e.g. in CI). Values only, never timings."""
import numpy as np
import pytest

from bliss_lite.data import bslz4
from bliss_lite.data.model import ChannelSpec
from bliss_lite.processing import gpu
from bliss_lite.processing.integration_settings import IntegrationSettings
from bliss_lite.processing.integrator import LeanIntegrator
from bliss_lite.processing.worker import Worker, integrate_entries
from tests.test_gpu import PONI, ROI, frames_of, relative_error

needs_gpu = pytest.mark.skipif(not gpu.available(), reason=f"no GPU here: {gpu.unavailable_reason()}")
without_gpu = pytest.mark.skipif(gpu.available(), reason="a GPU is here: the CPU fallback is not taken")
PHASES = {"CeO2": "CeO2", "LaB6": "LaB6"}


def settings(**options):
    return IntegrationSettings.from_poni(PONI, **{"roi": ROI, "npt": 120, **options})


def frame_entries(frames, first=0):
    """Frame-stream entries as the detector publishes them, and the seal entry at the end."""
    entries = [{b"index": str(first + i).encode(), b"data": bslz4.compress(f)} for i, f in enumerate(frames)]
    return entries + [{b"sealed": b"1"}]


# --- workers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", pytest.param("gpu", marks=needs_gpu)])
def test_a_batch_of_entries_gives_each_frame_its_pattern(backend):
    """The worker's batch: on the GPU one call for the compressed frames, on the CPU frame by
    frame; both equal the CPU integration of the decoded frames, indices kept, seal skipped."""
    frames = frames_of((48, 160), 21, seed=4)
    spec = ChannelSpec("pilatus", "int32", (48, 160), "counts", "bslz4")
    integrator = LeanIntegrator(settings(), backend=backend)
    indices, patterns = integrate_entries(spec, integrator, frame_entries(frames, first=40))
    assert indices == list(range(40, 61))
    expected = LeanIntegrator(settings()).integrate_many(frames)
    assert relative_error(np.stack(patterns), expected) <= (1e-4 if backend == "gpu" else 1e-6)


@without_gpu
def test_a_worker_without_gpu_integrates_a_gpu_job_on_the_cpu_and_says_so_once():
    lines = []
    worker = Worker(client=None, name="w1", log=lines.append)
    job = {"settings": settings().to_dict(), "backend": "gpu"}
    assert worker.integrator(job).backend == "cpu"
    assert worker.integrator(job) is worker.integrator(job)  # built once per geometry and backend
    assert len(lines) == 1 and "worker w1: backend 'gpu' asked for, but CuPy" in lines[0]
    assert lines[0].endswith("integrating on the CPU")
    assert worker.integrator({**job, "backend": "auto"}).backend == "cpu" and len(lines) == 1  # auto: silent


@needs_gpu
def test_a_gpu_worker_takes_the_gpu_unless_outliers_need_the_cpu():
    lines = []
    worker = Worker(client=None, name="w1", log=lines.append)
    assert worker.integrator({"settings": settings().to_dict(), "backend": "gpu"}).backend == "gpu"
    assert worker.integrator({"settings": settings().to_dict(), "backend": "cpu"}).backend == "cpu"
    clipped = {"settings": settings(outliers="sigma_clip").to_dict(), "backend": "gpu"}
    assert worker.integrator(clipped).backend == "cpu"
    assert len(lines) == 1 and "outlier rejection (sigma_clip) runs on the CPU only" in lines[0]
    forced = Worker(client=None, name="w2", log=lines.append, backend="gpu")  # `bliss-lite worker --backend gpu`
    assert forced.integrator({"settings": settings().to_dict(), "backend": "cpu"}).backend == "gpu"


# --- sinograms and the reconstruction hook ------------------------------------------------------

INFO = {"n_x": 12, "n_omega": 14, "x_start": -0.6, "x_stop": 0.6, "omega_range": 180.0, "z_positions": [0.0, 0.2]}


def scan_frames(npt, seed=0):
    """One frame per grid point in snake order, with read-backs a little off the grid, monitors
    and patterns (peaks where CeO2 and LaB6 have lines, so the phase maps have signal)."""
    from bliss_lite.processing.sinogram import Grid

    rng = np.random.default_rng(seed)
    grid = Grid.from_info(INFO)
    z, omega, x = (a.ravel() for a in np.meshgrid(grid.z, grid.omega_deg, grid.x_mm, indexing="ij"))
    x = x.reshape(-1, grid.x_mm.size)
    x[1::2] = x[1::2, ::-1]  # snake: every other line backwards
    x = x.ravel() + rng.uniform(-0.01, 0.01, z.size)
    patterns = rng.gamma(2.0, 10.0, (z.size, npt)).astype(np.float32)
    i0 = rng.uniform(0.9e5, 1.1e5, z.size)
    it = i0 * rng.uniform(0.5, 0.7, z.size)
    return np.arange(z.size), patterns, omega, x, z, i0, it


def reconstruction_hook_of(backend, npt, output=None, **options):
    from bliss_lite.processing.reconstruction_hook import ReconstructionHook

    hook = ReconstructionHook(PHASES, backend=backend, **options)
    hook.start(INFO, npt, output, radial=np.linspace(15.0, 45.0, npt))
    return hook


def fed(hook, frames, device=False, leave=0):
    """The hook after the frames' patterns arrive in three batches, out of order, as a GPU
    integration hands them on (CuPy) or as workers do (NumPy); each height is reconstructed
    once complete. `leave`: the last frames of the scan held back (their height stays held)."""
    indices, patterns, *rest = frames
    order = np.concatenate([np.random.default_rng(1).permutation(indices.size - leave),
                            np.arange(indices.size - leave, indices.size)])
    for part in np.array_split(order[:order.size - leave], 3):
        part_patterns = patterns[part]
        if device:
            import cupy

            part_patterns = cupy.asarray(part_patterns)
        hook._on_patterns(indices[part], part_patterns)
        hook._pending, pending = [], hook._pending
        for idx, pats in pending:
            hook.add_frames(idx, pats, *(values[idx] for values in rest))
    return hook


def volume_of(hook):
    """The hook's reconstructed volume, from the file it wrote (it holds no volume itself)."""
    import h5py

    with h5py.File(hook.result["file"], "r") as h5:
        return h5["volume"][()]


@needs_gpu
def test_sinograms_built_on_the_gpu_equal_those_built_in_host_memory():
    import cupy

    from bliss_lite.processing.sinogram import SinogramBuilder, estimate_centre

    indices, patterns, omega, x, z, *_ = scan_frames(40)
    host, device = SinogramBuilder(INFO, 40), SinogramBuilder(INFO, 40, device=True)
    for part in np.array_split(np.random.default_rng(2).permutation(indices.size), 4):
        host.add(indices[part], patterns[part], omega[part], x[part], z[part])
        device.add(indices[part], cupy.asarray(patterns[part]), omega[part], x[part], z[part])
    assert isinstance(device.data, cupy.ndarray)
    np.testing.assert_array_equal(device.data.get(), host.data)
    np.testing.assert_array_equal(device.frame, host.frame)
    sinograms = host.sinograms
    assert estimate_centre(device.data[1], sinograms.x_mm, sinograms.omega_deg) == pytest.approx(
        estimate_centre(host.data[1], sinograms.x_mm, sinograms.omega_deg), abs=1e-9)
    with pytest.raises(ValueError, match="frame 999 lands on the grid point of frame 0"):
        device.add([999], cupy.asarray(patterns[:1]), omega[:1], x[:1], z[:1])


@needs_gpu
@pytest.mark.parametrize("method", ["fbp", "sirt"])
def test_gpu_reconstruction_hook_equals_the_cpu_one(method, tmp_path):
    """Patterns (CuPy, as from GPU integration) -> normalised sinograms on the GPU, a height at
    a time -> FBP or SIRT there -> slices and maps: the volume written, the maps and the
    centre equal the CPU hook's; so does the live partial FBP of a height still filling."""
    import cupy

    npt = 300
    frames = scan_frames(npt, seed=5)
    options = dict(method=method, iterations=4, peak_fwhm=0.3)
    on_cpu = fed(reconstruction_hook_of("cpu", npt, tmp_path / "cpu.h5", **options), frames, leave=5)
    on_gpu = fed(reconstruction_hook_of("gpu", npt, tmp_path / "gpu.h5", **options), frames, device=True, leave=5)
    assert on_gpu.builder.held == (1,) and isinstance(on_gpu.builder.sinogram(1), cupy.ndarray)
    assert on_gpu.resolved == "gpu"
    live = on_gpu._partial_fbp(1, 0.0)  # the live reconstruction of a height filling, omega sweeping
    assert isinstance(live, np.ndarray)
    assert relative_error(live, on_cpu._partial_fbp(1, 0.0)) <= 1e-4
    for hook in (on_cpu, on_gpu):  # the last frames: height 1 completes and is reconstructed
        fed_rest(hook, frames, 5, device=hook is on_gpu)
    expected, result = on_cpu.finish(), on_gpu.finish()
    assert result["centre"] == pytest.approx(expected["centre"], abs=1e-7)
    assert result["heights"] == [0, 1] and on_gpu.builder.peak_heights <= 2
    assert relative_error(volume_of(on_gpu), volume_of(on_cpu)) <= 1e-4
    assert volume_of(on_gpu).shape == (2, 12, 12, npt)
    assert set(result["maps"]) == set(PHASES)
    for phase in PHASES:
        assert relative_error(result["maps"][phase], expected["maps"][phase]) <= 1e-4
    assert on_gpu.configuration()["backend"] == "gpu" and on_gpu.configuration()["sinograms_on_gpu"]


def fed_rest(hook, frames, leave, device=False):
    indices, patterns, *rest = frames
    last = np.arange(indices.size - leave, indices.size)
    part = patterns[last]
    if device:
        import cupy

        part = cupy.asarray(part)
    hook.add_frames(last, part, *(values[last] for values in rest))


@needs_gpu
def test_sinograms_too_large_for_the_gpu_stay_in_host_memory(monkeypatch, caplog, tmp_path):
    from bliss_lite.processing import reconstruction_hook

    monkeypatch.setattr(reconstruction_hook, "GPU_SHARE", 1e-12)
    npt = 64
    frames = scan_frames(npt, seed=6)
    hook = fed(reconstruction_hook_of("gpu", npt, tmp_path / "gpu.h5", peak_fwhm=0.3), frames, device=True)
    assert hook.builder.xp is np and not hook.configuration()["sinograms_on_gpu"]
    assert "stay in host memory and cross the bus slice by slice" in caplog.text
    on_cpu = fed(reconstruction_hook_of("cpu", npt, tmp_path / "cpu.h5", peak_fwhm=0.3), frames)
    hook.finish(), on_cpu.finish()
    assert relative_error(volume_of(hook), volume_of(on_cpu)) <= 1e-4


# --- the integration hook hands GPU patterns on as they are ---------------------------------------

@needs_gpu
def test_integration_hook_writes_a_host_copy_and_hands_on_cupy_patterns(tmp_path):
    import cupy
    import h5py

    from bliss_lite.processing.integration_hook import IntegrationHook
    from bliss_lite.processing.reduction_files import PatternStore

    hook = IntegrationHook(settings(), "pilatus", workers=0, backend="gpu")
    seen = []
    hook.add_listener(lambda indices, patterns: seen.append((indices.copy(), patterns)))
    patterns = cupy.asarray(np.arange(5 * 120, dtype=np.float32).reshape(5, 120))
    hook._grow(5)
    hook.store = PatternStore(tmp_path / "integrated.h5", 120, line=5, frames=5)
    hook._store(np.array([0, 1, 2]), patterns[:3])
    hook._store(np.array([2, 3, 4]), patterns[2:])  # frame 2 again: only 3 and 4 are new
    stored = hook.store.close(5)
    with h5py.File(stored["intensity"].path, "r") as h5:
        np.testing.assert_array_equal(h5["intensity"][()], patterns.get())
    np.testing.assert_allclose(hook.pattern_sum, patterns.get().sum(axis=0))
    assert [list(i) for i, _ in seen] == [[0, 1, 2], [3, 4]]
    assert all(isinstance(p, cupy.ndarray) for _, p in seen)
    np.testing.assert_array_equal(seen[1][1].get(), patterns[3:].get())


# --- a whole scan -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", pytest.param("gpu", marks=needs_gpu)])
def test_a_whole_xrdct_scan_reduced_live_equals_its_reduction_on_the_cpu_afterwards(scan_session, backend):
    """Both hooks with `backend` through a real scan (detector, Redis, workers, file); the
    file's frames integrated again on the CPU and its patterns reconstructed again on the CPU
    (`reconstruct_scan`) agree with what the hooks made during the scan, within 1e-4."""
    import json

    import h5py

    from bliss_lite.processing.frame_sources import hdf5_frames
    from bliss_lite.processing.scan_plugins import reconstruct_scan

    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [0.0], 0.05, n_omega=10, fast_axis="omega",
                       hooks={"integration": {"npt": 200, "backend": backend},
                              "reconstruction": {"phases": PHASES, "live_period_s": 0.3, "backend": backend}})
    hook = scan.hook("reconstruction")
    assert hook.resolved == backend and hook.configuration()["sinograms_on_gpu"] == (backend == "gpu")
    gpu_maps = {phase: np.asarray(m) for phase, m in hook.result["maps"].items()}
    with h5py.File(scan.filename, "r") as h5:
        stored = json.loads(h5[f"{scan.entry}/integrate/configuration"][()])
        patterns = h5[f"{scan.entry}/integrate/results/intensity"][()]
    assert patterns.shape == (80, 200)
    on_cpu = LeanIntegrator(IntegrationSettings.from_dict(stored), backend="cpu")
    again = np.stack([on_cpu.integrate(frame) for _, frame in hdf5_frames(scan.filename, scan.entry)])
    assert relative_error(patterns, again) <= 1e-4

    # the same phases as the live run (a job without them takes the sample's recorded ones)
    reconstruct_scan({"filename": scan.filename, "entry": scan.entry,
                      "reconstruction": {"backend": "cpu", "phases": PHASES}})
    with h5py.File(scan.filename, "r") as h5:
        config = json.loads(h5[f"{scan.entry}/reconstruct/configuration"][()])
        cpu_maps = {phase: h5[f"{scan.entry}/reconstruct/{phase}/map"][()] for phase in PHASES}
    assert config["backend"] == "cpu" and not config["sinograms_on_gpu"]
    assert config["reference_i0"] == hook.reference_i0  # the offline run takes the live run's I0 scale
    for phase in PHASES:
        assert relative_error(gpu_maps[phase], cpu_maps[phase]) <= 1e-4, phase
