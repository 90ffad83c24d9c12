"""GPU backends: the host-side parts everywhere; the kernels against the CPU path where CuPy
finds a GPU (skipped elsewhere, e.g. in CI). Values only, never timings."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bliss_lite.data import bslz4
from bliss_lite.processing import gpu
from bliss_lite.processing.fbp import IncrementalBackprojector, fbp
from bliss_lite.processing.gpu import bslz4_format as fmt

ROOT = Path(__file__).resolve().parents[1]
PONI = ROOT / "config" / "xrdct" / "pilatus2m.poni"
ROI = (816, 700, 48, 160)
FULL = (1679, 1475)
needs_gpu = pytest.mark.skipif(not gpu.available(), reason=f"no GPU here: {gpu.unavailable_reason()}")


def frames_of(shape, count, seed=0):
    """Counts as a Pilatus gives them: Poisson, gaps at -1, a few hot pixels near 2**20."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(rng.uniform(0.5, 40), (count,) + tuple(shape)).astype(np.int32)
    frames[:, ::7, ::5] = -1
    hot = rng.integers(0, frames[0].size, 5)
    frames.reshape(count, -1)[:, hot] = rng.integers(2**19, 2**20, 5)
    return frames


def relative_error(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())


# --- host side: the chunk format, everywhere ------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 5), (37, 29), (64, 64), (100, 333), (48, 160)])
def test_reference_decoder_equals_bitshuffle(shape):
    for frame in frames_of(shape, 2, seed=shape[1]):
        chunk = bslz4.compress(frame)
        np.testing.assert_array_equal(fmt.decode_chunk(chunk, shape, np.int32), frame)


def test_layout_of_a_pilatus_frame():
    chunk = bslz4.compress(frames_of(FULL, 1)[0])
    layout = fmt.read_layout(chunk, FULL, np.int32)
    assert (layout.block_elems, layout.n_full, layout.last_elems, layout.leftover_elems) == (2048, 1209, 488, 5)
    assert layout.blocks == 1210
    assert layout.n_full * 2048 + layout.last_elems + layout.leftover_elems == 1679 * 1475


def test_chunk_index_follows_the_size_fields():
    frames = frames_of((100, 333), 3)
    chunks = [bslz4.compress(f) for f in frames]
    layout = fmt.read_layout(chunks[0], (100, 333), np.int32)
    buf = np.frombuffer(b"".join(chunks), np.uint8)
    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    positions = fmt.index_chunks(buf, starts, [len(c) for c in chunks], layout)
    assert positions.shape == (3, layout.blocks)
    for f, chunk in enumerate(chunks):
        pos = 12
        for k in range(layout.blocks):
            assert positions[f, k] == starts[f] + pos
            pos += 4 + int.from_bytes(chunk[pos:pos + 4], "big")
        assert pos + 4 * layout.leftover_elems == len(chunk)


def test_bad_chunks_are_named():
    good = bslz4.compress(frames_of((100, 333), 1)[0])
    layout = fmt.read_layout(good, (100, 333), np.int32)
    for bad, what in [(good[:-30], "chunk 1 is truncated"), (good + b"\0" * 8, "chunk 1 has bytes after"),
                      (fmt.HEADER.pack(8, 8192) + good[12:], "chunk 1 has a header")]:
        buf = np.frombuffer(good + bad, np.uint8)
        with pytest.raises(ValueError, match=what):
            fmt.index_chunks(buf, [0, len(good)], [len(good), len(bad)], layout)
    with pytest.raises(ValueError, match=r"holds 133200 bytes, not a \(10, 10\)"):
        fmt.read_layout(good, (10, 10), np.int32)
    with pytest.raises(ValueError, match="match offset"):
        fmt.lz4_block(bytes([0x00, 0x05, 0x00, 0x10]), 8)


def test_staging_copies_and_indexes_chunks_with_threads():
    from bliss_lite.processing.gpu.staging import ALIGN, Stager

    class Buffers:  # pinned on a GPU host; plain numpy here
        src = None

        def reserve(self, nbytes):
            if self.src is None or self.src.size < nbytes:
                self.src = np.zeros(nbytes, np.uint8)

    frames = frames_of((100, 333), 9, seed=11)
    chunks = [bslz4.compress(f) for f in frames]
    layout = fmt.read_layout(chunks[0], (100, 333), np.int32)
    buffers = Buffers()
    buffers.positions = np.zeros((9, layout.blocks), np.int64)
    buffers.ends = np.zeros(9, np.int64)
    stager = Stager(threads=3)
    try:
        used = stager.stage_chunks(chunks, buffers, layout)
        starts = buffers.ends - [len(c) for c in chunks]
        assert np.all(starts % ALIGN == 0) and used == buffers.ends[-1]
        for i, chunk in enumerate(chunks):
            assert bytes(buffers.src[starts[i]:buffers.ends[i]]) == chunk
            np.testing.assert_array_equal(buffers.positions[i],
                                          fmt.index_chunks(np.frombuffer(chunk, np.uint8), [0], [len(chunk)], layout)[0]
                                          + starts[i])
        with pytest.raises(ValueError, match="bslz4: chunk 13 is truncated"):
            stager.stage_chunks(chunks[:4] + [chunks[4][:-9]], buffers, layout, first=9)
    finally:
        stager.close()


def test_only_the_plain_ramp_has_no_even_lags():
    """What the GPU filter's half-size GEMMs rely on: the plain ramp's kernel vanishes at every
    even lag but 0 (Kak & Slaney); a windowed one does not (then the whole matrix is used)."""
    from bliss_lite.processing.gpu.fbp import PARITY_ZERO
    from bliss_lite.processing.tomo_grid import filter_matrix

    lag = np.subtract.outer(np.arange(51), np.arange(51))
    even = (lag % 2 == 0) & (lag != 0)
    for window in ("ramp", "hann", "shepp-logan"):
        matrix = filter_matrix(51, 0.02, window)
        small = np.abs(matrix[even]).max() <= PARITY_ZERO * abs(matrix[0, 0])
        assert small == (window == "ramp")


# --- backend selection, everywhere -----------------------------------------------------------------

def test_importing_bliss_lite_never_imports_cupy():
    code = ("import sys, bliss_lite.processing.fbp, bliss_lite.processing.integrator, bliss_lite.processing.sirt, "
            "bliss_lite.processing.gpu.integrate, bliss_lite.processing.gpu.fbp, bliss_lite.processing.gpu.sirt, "
            "bliss_lite.processing.gpu.backproject, bliss_lite.processing.tomo_grid; "
            "assert 'cupy' not in sys.modules, 'cupy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_backend_selection():
    assert gpu.resolve_backend("cpu") == "cpu"
    assert gpu.resolve_backend("auto") == ("gpu" if gpu.available() else "cpu")
    with pytest.raises(ValueError, match="unknown backend 'cuda'; choose from cpu, gpu, auto"):
        gpu.resolve_backend("cuda")


def test_without_cupy_auto_is_cpu_and_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    gpu.unavailable_reason.cache_clear()
    try:
        assert gpu.resolve_backend("auto") == "cpu"
        with pytest.raises(gpu.GpuUnavailableError, match="reconstruction: backend 'gpu' needs CuPy and an NVIDIA "
                                                          "GPU, but CuPy cannot be imported"):
            fbp(np.ones((4, 8)), np.arange(8.0), np.arange(4.0) * 45, 3.5, backend="gpu")
        x, omega = np.arange(8.0), np.arange(4.0) * 45
        image = fbp(np.ones((4, 8)), x, omega, 3.5, backend="auto")
        np.testing.assert_array_equal(image, fbp(np.ones((4, 8)), x, omega, 3.5))
    finally:
        gpu.unavailable_reason.cache_clear()


def test_live_backprojection_stays_on_the_cpu():
    if gpu.available():
        with pytest.raises(ValueError, match="live back-projection runs on the CPU only"):
            IncrementalBackprojector(np.arange(4.0) * 45, np.arange(8.0), 3, 3.5, backend="gpu")
    assert IncrementalBackprojector(np.arange(4.0) * 45, np.arange(8.0), 3, 3.5, backend="auto").count == 0


# --- on the GPU ----------------------------------------------------------------------------------

def lean(backend, **options):
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    return LeanIntegrator(IntegrationSettings.from_poni(PONI, **options), backend=backend)


@needs_gpu
@pytest.mark.parametrize("shape", [(1, 5), (37, 29), (48, 160), (100, 333), FULL])
def test_gpu_decoded_frames_equal_the_cpu_decoded_ones_bit_for_bit(shape):
    from bliss_lite.processing.gpu.integrate import GpuIntegrator

    class Geometry:  # what GpuIntegrator reads of a LeanIntegrator: a one-bin matrix will do
        import scipy.sparse
        matrix = scipy.sparse.csr_matrix(np.ones((1, shape[0] * shape[1]), np.float32))
        npt, dark_sum, empty, denominator = 1, None, np.zeros(1, bool), np.ones(1)

    Geometry.shape = shape
    count = 3 if shape == FULL else 37  # more than a batch
    frames = frames_of(shape, count, seed=7)
    chunks = [bslz4.compress(f) for f in frames]
    engine = GpuIntegrator(Geometry, batch=16)
    decoded = engine.decode_chunks(chunks)
    np.testing.assert_array_equal(decoded, np.stack([bslz4.decompress(c, shape, np.int32) for c in chunks]))
    sums = engine.integrate_chunks(chunks)[:, 0]  # the one bin: every pixel
    np.testing.assert_allclose(sums, frames.reshape(count, -1).sum(axis=1, dtype=np.float64), rtol=1e-6)


@needs_gpu
def test_a_corrupt_block_is_named_not_decoded():
    engine = lean("gpu", roi=ROI, npt=100).gpu
    frames = frames_of((48, 160), 3)
    chunks = [bslz4.compress(f) for f in frames]
    first = int.from_bytes(chunks[1][12:16], "big")
    # block 0 of chunk 1 becomes a match 1 byte back from the block's start: never valid
    chunks[1] = chunks[1][:12] + (3).to_bytes(4, "big") + bytes([0x00, 0x01, 0x00]) + chunks[1][16 + first:]
    with pytest.raises(ValueError, match="chunk 1 does not decode on the GPU"):
        engine.integrate_chunks(chunks)
    np.testing.assert_array_equal(engine.decode_chunks(chunks[:1])[0], frames[0])  # still usable


@needs_gpu
@pytest.mark.parametrize("options", [dict(roi=ROI, npt=200), dict(roi=ROI, npt=200, split="bbox"),
                                     dict(roi=ROI, npt=120, polarization_factor=None, solid_angle=False),
                                     dict(npt=1000)])
def test_gpu_integration_equals_the_cpu_path(options):
    cpu, on_gpu = lean("cpu", **options), lean("gpu", **options)
    assert on_gpu.backend == "gpu"
    frames = frames_of(cpu.shape, 3 if options.get("roi") is None else 70, seed=3)
    expected = cpu.integrate_many(frames)
    assert relative_error(on_gpu.integrate_many(frames), expected) <= 1e-4
    chunks = [bslz4.compress(f) for f in frames]
    assert relative_error(on_gpu.integrate_compressed(chunks), expected) <= 1e-4
    assert relative_error(on_gpu.integrate(frames[1]), expected[1]) <= 1e-4


@needs_gpu
def test_gpu_integration_with_dark_flat_and_pinned_frames(tmp_path):
    import cupy

    from bliss_lite.processing.gpu.staging import pinned_empty

    rng = np.random.default_rng(3)
    np.save(tmp_path / "dark.npy", rng.uniform(0, 5, (48, 160)))
    np.save(tmp_path / "flat.npy", rng.uniform(0.8, 1.2, (48, 160)))
    options = dict(roi=ROI, npt=100, dark=str(tmp_path / "dark.npy"), flat=str(tmp_path / "flat.npy"))
    cpu, on_gpu = lean("cpu", **options), lean("auto", **options)
    frames = frames_of((48, 160), 40, seed=5)
    pinned = pinned_empty(frames.shape, np.int32)
    pinned[...] = frames
    expected = cpu.integrate_many(frames)
    assert relative_error(on_gpu.integrate_many(pinned), expected) <= 1e-4
    on_device = on_gpu.gpu.integrate_device(cupy.asarray(frames))
    assert isinstance(on_device, cupy.ndarray)
    assert relative_error(on_device.get(), expected) <= 1e-4


def test_patterns_stay_on_the_gpu_only_with_the_gpu_backend():
    cpu = lean("cpu", roi=ROI, npt=20)
    frames = frames_of((48, 160), 2)
    for call in (lambda: cpu.integrate_many(frames, device=True),
                 lambda: cpu.integrate_compressed([bslz4.compress(f) for f in frames], device=True)):
        with pytest.raises(ValueError, match="device=True keeps patterns on the GPU, but this integrator's "
                                             "backend is 'cpu'"):
            call()


@needs_gpu
def test_integration_to_reconstruction_stays_on_the_gpu():
    """Frames integrated on the GPU (device=True) -> normalised sinogram -> FBP and SIRT there:
    CuPy arrays all the way (no host round trip), equal to the CPU path within 1e-4."""
    import cupy

    from bliss_lite.processing.sinogram import normalise
    from bliss_lite.processing.sirt import sirt

    n_om, n_x = 12, 16
    cpu, on_gpu = lean("cpu", roi=ROI, npt=64), lean("gpu", roi=ROI, npt=64)
    frames = frames_of((48, 160), n_om * n_x, seed=9)
    i0 = np.random.default_rng(9).uniform(0.9, 1.1, n_om * n_x)
    _, x, omega = slice_data(n_om, n_x, 0)
    expected_sino = normalise(cpu.integrate_many(frames), i0).reshape(n_om, n_x, -1)
    expected = fbp(expected_sino, x, omega, 0.01)
    chunks = [bslz4.compress(f) for f in frames]
    for patterns in (on_gpu.integrate_compressed(chunks, device=True), on_gpu.integrate_many(frames, device=True),
                     on_gpu.integrate_many(cupy.asarray(frames), device=True)):
        assert isinstance(patterns, cupy.ndarray) and patterns.shape == (n_om * n_x, 64)
        sino = normalise(patterns, i0).reshape(n_om, n_x, -1)
        assert isinstance(sino, cupy.ndarray)
        image = fbp(sino, x, omega, 0.01, backend="gpu")
        assert isinstance(image, cupy.ndarray)
        assert relative_error(image.get(), expected) <= 1e-4
    iterated = sirt(sino, x, omega, 0.01, iterations=5, backend="gpu")
    assert isinstance(iterated, cupy.ndarray)
    assert relative_error(iterated.get(), sirt(expected_sino, x, omega, 0.01, iterations=5)) <= 1e-4


@needs_gpu
def test_outliers_refuse_the_gpu_and_auto_takes_the_cpu():
    with pytest.raises(ValueError, match="outlier rejection .* runs on the CPU only"):
        lean("gpu", roi=ROI, npt=100, outliers="sigma_clip")
    assert lean("auto", roi=ROI, npt=100, outliers="sigma_clip").backend == "cpu"


def slice_data(n_om, n_x, nq, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, n_x, endpoint=False) + 1.0 / n_x
    omega = (np.arange(n_om) + 0.5) * 180.0 / n_om
    sino = rng.random((n_om, n_x, nq), dtype=np.float32) if nq else rng.random((n_om, n_x), dtype=np.float32)
    return sino, x, omega


@needs_gpu
@pytest.mark.parametrize("n_om, n_x, nq, n, window", [
    (60, 50, 300, None, "ramp"),  # the 2 x 2 groups' 4-bin window
    (61, 47, 37, None, "hann"),  # nq not a multiple of 4, odd sizes
    (45, 33, 70, None, "ramp"),  # the ramp's half-size GEMMs with an odd number of positions
    (130, 40, 3, 33, "shepp-logan"),  # a finer image grid
    (50, 64, 20, 29, "ramp"),  # a coarser image grid: pixel by pixel
    (40, 30, 0, None, "cosine"),  # one 2-D sinogram
])
def test_gpu_fbp_equals_the_cpu_fbp(n_om, n_x, nq, n, window):
    sino, x, omega = slice_data(n_om, n_x, nq, seed=n_x)
    centre = 0.013
    expected = fbp(sino, x, omega, centre, n, window=window)
    image = fbp(sino, x, omega, centre, n, window=window, backend="gpu")
    assert isinstance(image, np.ndarray) and image.shape == expected.shape
    assert relative_error(image, expected) <= 1e-4


@needs_gpu
def test_gpu_fbp_of_a_device_sinogram_stays_on_the_device():
    import cupy

    sino, x, omega = slice_data(600, 100, 130, seed=1)  # several angle chunks and row bands
    timings = {}
    image = fbp(cupy.asarray(sino), x, omega, -0.02, backend="gpu", timings=timings)
    assert isinstance(image, cupy.ndarray)
    assert relative_error(image.get(), fbp(sino, x, omega, -0.02)) <= 1e-4
    assert relative_error(fbp(sino, x, omega, -0.02, backend="auto"), image.get()) <= 1e-5
    assert set(timings) >= {"filter_seconds", "backproject_seconds"}


@needs_gpu
@pytest.mark.parametrize("n_x", [120, 121])
def test_gpu_ramp_filter_by_parity_equals_the_whole_matrix(monkeypatch, n_x):
    import cupy

    from bliss_lite.processing.gpu import fbp as gpu_fbp

    sino, x, omega = slice_data(90, n_x, 200, seed=5)
    filtered = {}
    for parity_zero in (gpu_fbp.PARITY_ZERO, -1.0):  # -1: no lag counts as zero, the whole matrix
        monkeypatch.setattr(gpu_fbp, "PARITY_ZERO", parity_zero)
        gpu_fbp._device_matrix.cache_clear()
        g = gpu_fbp.SliceGeometry(x, omega, 0.0, None, 200, "ramp", "auto")
        out = cupy.full((90, g.nxp, g.nqp), np.nan, np.float32)
        g.filter(cupy.asarray(sino), out)
        filtered[g.matrix[0]] = out.get()
    gpu_fbp._device_matrix.cache_clear()
    assert set(filtered) == {"parity", "full"}
    assert np.all(filtered["parity"][:, n_x:] == 0) and np.all(filtered["parity"][..., 200:] == 0)
    assert relative_error(filtered["parity"], filtered["full"]) <= 1e-6


@needs_gpu
def test_gpu_fbp_with_fft_filter_for_wide_scans():
    sino, x, omega = slice_data(20, 1100, 8, seed=2)
    expected = fbp(sino, x, omega, 0.0, n=64)
    assert relative_error(fbp(sino, x, omega, 0.0, n=64, backend="gpu"), expected) <= 1e-4


@needs_gpu
@pytest.mark.parametrize("n", [None, 23, 41])
def test_gpu_forward_projection_is_the_cpu_one(n):
    import cupy

    from bliss_lite.processing.gpu.fbp import SliceGeometry
    from bliss_lite.processing.gpu.sirt import forward_project
    from bliss_lite.processing.sirt import forward_project as cpu_forward_project
    from bliss_lite.processing.tomo_grid import pixel_area

    _, x, omega = slice_data(37, 30, 0)
    size = 30 if n is None else n
    image = np.random.default_rng(size).random((size, size, 6), dtype=np.float32)
    g = SliceGeometry(x, omega, 0.02, n, 6, "ramp", "auto")
    padded = np.zeros((size, size, g.nqp), np.float32)
    padded[..., :6] = image
    scale = pixel_area(x, size) / abs(x[1] - x[0])
    projections = forward_project(cupy.asarray(padded), g, scale).get()
    expected = cpu_forward_project(image, x, omega, 0.02)
    assert np.all(projections[:, 30:] == 0) and np.all(projections[..., 6:] == 0)
    assert relative_error(projections[:, :30, :6], expected) <= 1e-5


@needs_gpu
def test_gpu_sirt_equals_the_cpu_sirt():
    import cupy

    from bliss_lite.processing.sirt import sirt

    sino, x, omega = slice_data(40, 32, 5, seed=4)
    for x0 in (None, "fbp"):
        norms = {"cpu": [], "gpu": []}
        expected = sirt(sino, x, omega, 0.01, iterations=8, x0=x0, callback=lambda k, im, r, norms=norms: norms["cpu"].append(r))
        image = sirt(sino, x, omega, 0.01, iterations=8, x0=x0, backend="gpu",
                     callback=lambda k, im, r, norms=norms: norms["gpu"].append(r))
        assert isinstance(image, np.ndarray) and image.shape == expected.shape
        assert relative_error(image, expected) <= 1e-4
        np.testing.assert_allclose(norms["gpu"], norms["cpu"], rtol=1e-4)
    on_device = sirt(cupy.asarray(sino[..., 0]), x, omega, 0.01, iterations=3, backend="gpu")
    assert isinstance(on_device, cupy.ndarray) and on_device.shape == (32, 32)
    assert relative_error(on_device.get(), sirt(sino[..., 0], x, omega, 0.01, iterations=3)) <= 1e-4
