"""XRD-CT reconstruction: sinogram assembly, centre of rotation, FBP of all q bins, live FBP,
SIRT and per-phase maps, checked against the simulated phantom's exact ground truth."""
from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest

from bliss_lite.controllers.sample.diffraction import PEAK_FWHM_Q, phase_pattern
from bliss_lite.controllers.sample.phantom import EllipticCylinder, Phantom, Phase, default_phantom
from bliss_lite.processing.fbp import IncrementalBackprojector, backproject, fbp, filter_sinogram
from bliss_lite.processing.phase_maps import correlation, ground_truth, phase_maps, phase_rois
from bliss_lite.processing.sinogram import SinogramBuilder, assemble, estimate_centre, normalise
from bliss_lite.processing.sirt import forward_project, sirt
from bliss_lite.processing.tomo_grid import index_lines

N_X, N_OMEGA = 48, 76
Q = np.linspace(10, 40, 300)  # nm^-1
FLUX = 2.0e4  # counts per mm of a phase in a bin at the height of its strongest peak


def grid(n_x=N_X, n_omega=N_OMEGA, radius=1.0):
    x = -radius + (np.arange(n_x) + 0.5) * 2 * radius / n_x
    omega = (np.arange(n_omega) + 0.5) * 180.0 / n_omega
    return x, omega


def chords(phantom, x, omega, z=0.0):
    """{phase: (n_omega, n_x) exact path lengths (mm)}."""
    return phantom.path_lengths(x[None, :], omega[:, None], z)


def phase_stack(phantom, x, omega, seed=0):
    """(n_omega, n_x, nq) patterns of the phantom with Poisson noise, normalised back to mm."""
    lengths = chords(phantom, x, omega)
    clean = sum(lengths[p.name][..., None] * phase_pattern(p.calibrant, Q) for p in phantom.phases)
    return np.random.default_rng(seed).poisson(clean * FLUX) / FLUX


def test_phase_maps_from_fbp_match_the_phantom():
    phantom = default_phantom()
    x, omega = grid()
    volume = fbp(phase_stack(phantom, x, omega), x, omega, centre=0.0)
    assert volume.shape == (N_X, N_X, Q.size) and volume.dtype == np.float32
    rois = phase_rois({p.name: p.calibrant for p in phantom.phases}, Q[0], Q[-1], width=1.0, peak_fwhm=PEAK_FWHM_Q)
    assert rois["matrix"].kind == "diffuse" and rois["Si"].kind == "fit"  # Si's peaks all sit on CeO2's
    assert {rois[p].kind for p in ("CeO2", "LaB6", "alpha_Al2O3")} == {"fit"}  # peak width known: fitted
    assert all(rois[p].hi - rois[p].lo >= 3 * PEAK_FWHM_Q - 1e-9 for p in ("CeO2", "LaB6", "alpha_Al2O3"))
    maps = phase_maps(volume, Q, rois)
    scores = {name: correlation(maps[name], ground_truth(phantom, name, 0.0, N_X)) for name in phantom.names}
    assert min(scores.values()) >= 0.9, scores
    plain = phase_rois({p.name: p.calibrant for p in phantom.phases if p.name != "Si"}, Q[0], Q[-1], width=1.0)
    assert {plain[p].kind for p in ("CeO2", "LaB6", "alpha_Al2O3")} == {"peak"}  # no width: integral - background


def test_phase_maps_do_not_depend_on_the_binning():
    """Coarser q bins must not move a peak's background onto its own shoulders."""
    phantom = default_phantom()
    x, omega = grid()
    for nq in (300, 210):  # 0.1 and 0.14 nm^-1 bins (the peak FWHM is 0.35)
        q = np.linspace(Q[0], Q[-1], nq)
        lengths = chords(phantom, x, omega)
        stack = sum(lengths[p.name][..., None] * phase_pattern(p.calibrant, q) for p in phantom.phases)
        volume = fbp(stack.astype(np.float32), x, omega, centre=0.0)
        rois = phase_rois({p.name: p.calibrant for p in phantom.phases}, q[0], q[-1], width=0.6, peak_fwhm=PEAK_FWHM_Q)
        maps = phase_maps(volume, q, rois)
        for name in ("CeO2", "LaB6", "alpha_Al2O3"):
            assert correlation(maps[name], ground_truth(phantom, name, 0.0, N_X)) >= 0.9, (nq, name)


def test_phase_rois_say_when_a_phase_has_no_isolated_peak():
    with pytest.raises(ValueError, match="Si: every Si peak .* pass peak_fwhm"):
        phase_rois({"CeO2": "CeO2", "Si": "Si"}, 10, 40, width=1.0)
    rois = phase_rois({"CeO2": "CeO2", "LaB6": "LaB6"}, 10, 40, width=1.0)
    for roi in rois.values():
        assert roi.hi - roi.lo == pytest.approx(1.0) and 10 <= roi.lo < roi.peak < roi.hi <= 40


def test_fbp_of_chords_gives_volume_fractions():
    disk = Phantom([Phase("disk", (EllipticCylinder(0.1, -0.05, 0.6, 0.6),), mu=0.0)], radius=1.0)
    x, omega = grid(64, 100)
    image = fbp(chords(disk, x, omega)["disk"], x, omega, centre=0.0)
    u = x[None, :] - 0.1
    v = x[:, None] + 0.05
    r = np.hypot(u, v)
    assert image[r < 0.5].mean() == pytest.approx(1.0, abs=0.01)
    assert np.abs(image[r < 0.5] - 1).max() < 0.05
    ring = (r > 0.75) & (np.hypot(x[None, :], x[:, None]) < 0.95)  # outside the disk, inside the scan
    assert abs(image[ring].mean()) < 0.01 and np.abs(image[ring]).max() < 0.06
    shepp = fbp(chords(disk, x, omega)["disk"], x, omega, centre=0.0, window="shepp-logan")
    assert shepp[r < 0.5].mean() == pytest.approx(1.0, abs=0.01)


def reference_backprojection(sino, x, omega, centre, n):
    """Slow and plain: every angle, every q bin, np.interp (0 outside the measured range)."""
    f0, dfc, dfr = index_lines(x, omega, centre, n)
    rows, cols = np.mgrid[0:n, 0:n]
    out = np.zeros((n, n, sino.shape[2]))
    for a in range(len(omega)):
        f = f0[a] + cols * dfc[a] + rows * dfr[a]
        for q in range(sino.shape[2]):
            out[..., q] += np.interp(f, np.arange(len(x)), sino[a, :, q], left=0.0, right=0.0)
    return out


@pytest.mark.parametrize("nq", [3, 150])  # the pixel-by-pixel path and the q-blocked kernel
def test_backprojector_equals_numpy_reference(nq):
    rng = np.random.default_rng(1)
    x, omega = grid(13, 10)
    sino = rng.standard_normal((10, 13, nq)).astype(np.float32)
    expected = reference_backprojection(sino, x, omega, 0.07, 19)
    got = backproject(sino, x, omega, 0.07, n=19)
    assert got.shape == (19, 19, nq)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_forward_projector_is_the_adjoint_and_integrates_lines():
    rng = np.random.default_rng(2)
    x, omega = grid(20, 15)
    image, sino = rng.random((20, 20, 5)), rng.random((15, 20, 5))
    area_per_bin = (x[1] - x[0]) ** 2 / (x[1] - x[0])
    lhs = float(np.sum(forward_project(image, x, omega, 0.02) * sino))
    rhs = area_per_bin * float(np.sum(image * backproject(sino, x, omega, 0.02)))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    disk = Phantom([Phase("d", (EllipticCylinder(0, 0, 0.5, 0.5),), mu=0.0)], radius=1.0)
    x, omega = grid(96, 8)
    projected = forward_project(ground_truth(disk, "d", 0.0, 96), x, omega, 0.0)
    assert np.abs(projected - chords(disk, x, omega)["d"]).max() < 0.03  # mm, against exact chords


def test_filter_by_matrix_equals_filter_by_fft():
    sino = np.random.default_rng(3).random((7, 30, 4))
    x, _ = grid(30, 7)
    for window in ("ramp", "hann"):
        a = filter_sinogram(sino, x, window, method="matrix")
        b = filter_sinogram(sino, x, window, method="fft")
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_unknown_backend_and_window_are_refused():
    x, omega = grid(8, 4)
    with pytest.raises(ValueError, match="unknown backend 'tpu'.*cpu"):
        fbp(np.zeros((4, 8)), x, omega, 0.0, backend="tpu")
    with pytest.raises(ValueError, match="unknown filter window 'box'"):
        fbp(np.zeros((4, 8)), x, omega, 0.0, window="box")


def test_incremental_backprojection_ends_equal_to_fbp():
    phantom = default_phantom()
    x, omega = grid(32, 50)
    stack = phase_stack(phantom, x, omega)[..., ::5]  # 60 q bins
    live = IncrementalBackprojector(omega, x, stack.shape[2], centre=0.0)
    order = np.random.default_rng(4).permutation(len(omega))
    for k, i in enumerate(order):
        live.add(i, stack[i])
        if k == len(order) // 2:
            half = live.image()
            assert not live.complete and live.count == k + 1 and np.isfinite(half).all()
            assert live.added == set(order[:k + 1].tolist())
    with pytest.raises(ValueError, match="angle 3 .* already added"):
        live.add(3, stack[3])
    full = fbp(stack, x, omega, centre=0.0)
    assert live.complete
    assert np.abs(live.image() - full).max() <= 1e-4 * np.abs(full).max()


def test_estimate_centre_and_fbp_with_the_right_centre():
    phantom = default_phantom()
    _, omega = grid()
    sample_x, _ = grid()
    centre = 0.0371  # mm: the motor x of the rotation axis, ~0.9 pixel off
    motor_x = sample_x + centre  # the scan was centred on the axis; its read-backs are motor positions
    lengths = chords(phantom, motor_x - centre, omega)
    sino = sum(lengths[p.name][..., None] * phase_pattern(p.calibrant, Q[::30]) for p in phantom.phases)
    step = motor_x[1] - motor_x[0]
    assert abs(estimate_centre(sino, motor_x, omega) - centre) < 0.02 * step
    assert abs(estimate_centre(sino.sum(axis=2), motor_x, omega) - centre) < 0.02 * step
    truth = ground_truth(phantom, "CeO2", 0.0, N_X)
    right = fbp(lengths["CeO2"], motor_x, omega, centre=centre)
    wrong = fbp(lengths["CeO2"], motor_x, omega, centre=0.0)
    assert correlation(right, truth) > 0.97
    assert correlation(right, truth) > correlation(wrong, truth) + 0.05


def test_sirt_beats_fbp_on_noisy_data_and_its_residual_falls():
    phantom = default_phantom()
    x, omega = grid(48, 40)  # few angles and noise: where FBP suffers
    lengths = chords(phantom, x, omega)
    names = ["CeO2", "LaB6", "alpha_Al2O3"]
    rng = np.random.default_rng(5)
    sino = np.stack([rng.poisson(lengths[n] * 200) / 200 for n in names], axis=-1)
    residuals = []
    iterative = sirt(sino, x, omega, 0.0, iterations=40, callback=lambda k, image, r: residuals.append(r))
    direct = fbp(sino, x, omega, 0.0)
    assert len(residuals) == 40 and np.all(np.diff(residuals) < 0)
    assert iterative.min() >= 0
    for i, name in enumerate(names):
        truth = ground_truth(phantom, name, 0.0, 48)
        assert correlation(iterative[..., i], truth) >= correlation(direct[..., i], truth)
    warm = sirt(sino, x, omega, 0.0, iterations=3, x0="fbp")
    assert correlation(warm[..., 0], ground_truth(phantom, "CeO2", 0.0, 48)) > 0.9


def xrdct_info(n_x=6, n_omega=8, zs=(0.0, 0.25)):
    return {"xrdct": {"n_x": n_x, "n_omega": n_omega, "z_positions": list(zs), "x_start": -0.6, "x_stop": 0.6,
                      "omega_range": 180, "fast_axis": "omega", "snake": True}}


def snake_frames(info):
    """Read-backs in acquisition order (omega fast, every other line reversed), with jitter
    under half a step, and each frame's expected (iz, i_omega, i_x)."""
    xi = info["xrdct"]
    rng = np.random.default_rng(6)
    dx, domega = 1.2 / xi["n_x"], 180 / xi["n_omega"]
    frames, line = [], 0
    for iz, z in enumerate(xi["z_positions"]):
        for ix in range(xi["n_x"]):
            angles = range(xi["n_omega"])
            for io in (reversed(angles) if line % 2 else angles):
                jitter = rng.uniform(-0.4, 0.4, 3)
                frames.append((iz, io, ix, z + jitter[0] * 0.01, (io + 0.5 + jitter[1]) * domega,
                               -0.6 + (ix + 0.5 + jitter[2]) * dx))
            line += 1
    return np.array(frames)


def test_assemble_places_shuffled_snake_frames_by_read_back():
    info = xrdct_info()
    frames = snake_frames(info)
    shuffle = np.random.default_rng(7).permutation(len(frames))
    frames = frames[shuffle]
    iz, io, ix = (frames[:, k].astype(int) for k in range(3))
    patterns = np.stack([1000 * iz + 10 * io + ix + np.arange(5) / 10 for iz, io, ix in zip(iz, io, ix)])
    sinos = assemble(patterns, frames[:, 4], frames[:, 5], frames[:, 3], info)
    assert sinos.data.shape == (2, 8, 6, 5) and sinos.data.dtype == np.float32 and sinos.complete
    assert np.allclose(sinos.omega_deg, (np.arange(8) + 0.5) * 22.5)
    assert np.allclose(sinos.x_mm, -0.5 + 0.2 * np.arange(6))
    one_height = xrdct_info(zs=(0.25,))
    with pytest.raises(ValueError, match=r"frame 0: z read-back 0\.4 is more than half a step \(0\.1\)"):
        assemble(patterns[:1], frames[:1, 4], frames[:1, 5], [0.4], one_height)
    expected = (1000 * np.arange(2)[:, None, None] + 10 * np.arange(8)[None, :, None] + np.arange(6)[None, None, :])
    assert np.allclose(sinos.data[..., 0], expected)
    assert np.allclose(sinos.data[..., 3] - sinos.data[..., 0], 0.3, atol=1e-3)


def test_sinogram_builder_fills_as_batches_arrive_and_names_bad_frames():
    info = xrdct_info()
    frames = snake_frames(info)
    patterns = np.arange(len(frames), dtype=float)[:, None] * np.ones(3)
    builder = SinogramBuilder(info, 3)
    order = np.random.default_rng(8).permutation(len(frames))
    missing = order[-1]
    for batch in np.array_split(order[:-1], 7):
        builder.add(batch, patterns[batch], frames[batch, 4], frames[batch, 5], frames[batch, 3])
    sinos = builder.sinograms
    hole = tuple(frames[missing, :3].astype(int))
    assert not sinos.filled[hole] and sinos.filled.sum() == len(frames) - 1 and not sinos.complete
    iz, io, ix = frames[order[0], :3].astype(int)
    assert sinos.data[iz, io, ix, 0] == order[0]
    again = [order[0]]
    builder.add(again, patterns[again] + 1, frames[again, 4], frames[again, 5], frames[again, 3])
    assert builder.sinograms.data[iz, io, ix, 0] == order[0] + 1  # the same frame again replaces itself
    with pytest.raises(ValueError, match=r"frame 17: x read-back 0\.61.* more than half a step"):
        builder.add([17], patterns[[17]], frames[[17], 4], [0.61], frames[[17], 3])
    with pytest.raises(ValueError, match=r"frame 5: omega read-back nan"):
        builder.add([5], patterns[[5]], [np.nan], frames[[5], 5], frames[[5], 3])
    with pytest.raises(ValueError, match=r"frame 4: z read-back 0\.5 is more than half a step \(0\.125\)"):
        builder.add([4], patterns[[4]], frames[[4], 4], frames[[4], 5], [0.5])
    with pytest.raises(ValueError, match=f"frame 999 lands on the grid point of frame {order[1]}"):
        builder.add([999], patterns[[0]], frames[[order[1]], 4], frames[[order[1]], 5], frames[[order[1]], 3])


def test_normalise_by_monitors_and_names_a_bad_frame():
    patterns = np.array([[10.0, 20.0], [30.0, 60.0], [5.0, 5.0]])
    i0 = np.array([1.0, 2.0, 3.0])
    it = i0 * np.array([0.5, 0.5, 1.0])
    assert np.allclose(normalise(patterns, i0), patterns / (i0 / 2.0)[:, None])
    assert np.allclose(normalise(patterns, i0, it), patterns / (i0 / 2.0 * [0.5, 0.5, 1.0])[:, None])
    assert np.allclose(normalise(patterns, i0, reference=1.0), patterns / i0[:, None])
    with pytest.raises(ValueError, match="frame 1: monitor I0 is 0 "):
        normalise(patterns, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="frame 2: monitor It is nan"):
        normalise(patterns, i0, [1.0, 1.0, math.nan])


# --- slice by slice ----------------------------------------------------------------------------

SEED_Q = np.linspace(10, 40, 150)
SEED_PHASES = {"CeO2": "CeO2", "LaB6": "LaB6", "alpha_Al2O3": "alpha_Al2O3"}


def seed_info(n_x=16, n_omega=20, zs=(-0.3, -0.1, 0.1, 0.4)):
    return {"xrdct": {"n_x": n_x, "n_omega": n_omega, "z_positions": list(zs), "x_start": -1.0, "x_stop": 1.0,
                      "omega_range": 180, "fast_axis": "x", "snake": True}}


def multi_height_scan(info, seed=0):
    """A multi-height scan's frames in acquisition order (z slowest, then lines of x, snake):
    (indices, raw patterns, omega, x, z, i0, it); each height the default phantom's own slice
    (phases appear and vanish with z), the patterns scaled by I0 and the transmission."""
    from bliss_lite.processing.sinogram import Grid

    grid, phantom = Grid.from_info(info), default_phantom()
    rng = np.random.default_rng(seed)
    omega, x, z, clean = [], [], [], []
    line = 0
    for zv in grid.z:
        lengths = phantom.path_lengths(grid.x_mm[None, :], grid.omega_deg[:, None], zv)
        stack = sum(lengths[p.name][..., None] * phase_pattern(p.calibrant, SEED_Q) for p in phantom.phases)
        for io, om in enumerate(grid.omega_deg):
            for ix in (range(grid.x_mm.size) if line % 2 == 0 else reversed(range(grid.x_mm.size))):
                omega.append(om + rng.uniform(-0.3, 0.3) * 180 / grid.omega_deg.size)
                x.append(grid.x_mm[ix] + rng.uniform(-0.3, 0.3) * 2 / grid.x_mm.size)
                z.append(zv + rng.uniform(-0.01, 0.01))
                clean.append(stack[io, ix])
            line += 1
    n = len(clean)
    i0 = rng.uniform(0.9e5, 1.1e5, n)
    it = i0 * rng.uniform(0.5, 0.7, n)
    patterns = (np.array(clean) * (it / 1e5)[:, None] * 1e3).astype(np.float32)
    return np.arange(n), patterns, np.array(omega), np.array(x), np.array(z), i0, it


def whole_at_once(frames, info, reference_i0, centre):
    """The volume (nz, n, n, nq) from the whole scan at once: every height's sinogram assembled,
    the heights side by side as more q bins of one FBP."""
    indices, patterns, omega, x, z, i0, it = frames
    sinos = assemble(normalise(patterns, i0, it, reference=reference_i0), omega, x, z, info)
    nz, n_omega, n_x, nq = sinos.data.shape
    stack = sinos.data.transpose(1, 2, 0, 3).reshape(n_omega, n_x, nz * nq)
    image = fbp(stack, sinos.x_mm, sinos.omega_deg, centre)
    return image.reshape(n_x, n_x, nz, nq).transpose(2, 0, 1, 3)


def shuffled_integrated_scan(path, entry_name, info, frames, seed):
    """A saved, integrated scan of `frames` (multi_height_scan's) at `path`, its frames in a
    random order (as several workers deliver them): read-backs and patterns; the integration's
    settings."""
    import json
    from pathlib import Path

    import h5py

    from bliss_lite.processing import reduction_files
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.nexus_output import write_integration

    shuffle = np.random.default_rng(seed).permutation(frames[0].size)
    with h5py.File(path, "w") as h5:
        entry = h5.create_group(entry_name)
        entry["scan_info"] = json.dumps(info)
        for name, values in zip(reduction_files.CHANNELS, frames[2:]):
            entry[f"measurement/{name}"] = values[shuffle]
    poni = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
    settings = IntegrationSettings.from_poni(poni, roi=(816, 700, 48, 160), npt=SEED_Q.size)
    write_integration(path, entry_name, SEED_Q, settings, frames[1][shuffle], np.ones(shuffle.size, bool))
    return settings


def relative_error(a, b):
    return float(np.abs(np.asarray(a, float) - b).max() / np.abs(b).max())


def test_a_bounded_builder_holds_only_the_heights_it_is_given():
    from bliss_lite.processing.sinogram import HeightLimitError

    info = seed_info(n_x=6, n_omega=8)
    indices, patterns, omega, x, z, *_ = multi_height_scan(info)
    builder = SinogramBuilder(info, SEED_Q.size, max_heights=2)
    one = SinogramBuilder.height_nbytes(info, SEED_Q.size)
    assert builder.held == () and builder.allocated_bytes == 0 and one == 8 * 6 * SEED_Q.size * 4
    heights = builder.heights(z, indices)
    assert np.array_equal(heights, np.repeat(np.arange(4), 48))
    first = np.flatnonzero(heights == 0)
    builder.add(first[:10], patterns[first[:10]], omega[first[:10]], x[first[:10]], z[first[:10]])
    assert builder.held == (0,) and builder.allocated_bytes == one + 8 * 6 * 8 and not builder.complete(0)
    builder.add(first[10:], patterns[first[10:]], omega[first[10:]], x[first[10:]], z[first[10:]])
    assert builder.complete(0) and builder.filled(0).all() and not builder.filled(3).any()
    both = np.flatnonzero((heights == 1) | (heights == 2))
    with pytest.raises(HeightLimitError, match=r"height\(s\) \[1, 2\] with 1 of at most 2 heights held"):
        builder.add(both, patterns[both], omega[both], x[both], z[both])
    assert builder.held == (0,)  # refused whole: nothing allocated
    expected = assemble(patterns, omega, x, z, info).data[0]
    np.testing.assert_array_equal(builder.sinogram(0), expected)
    kept = builder.sinogram(0)
    builder.release(0)
    assert builder.held == () and builder.allocated_bytes == one + 8 * 6 * 8  # kept for the next height
    builder.add(both, patterns[both], omega[both], x[both], z[both])
    assert builder.held == (1, 2) and builder.peak_heights == 2 and builder.peak_bytes == 2 * (one + 8 * 6 * 8)
    assert any(builder.sinogram(h) is kept for h in (1, 2))  # reused, not allocated again
    np.testing.assert_array_equal(builder.sinogram(1), assemble(patterns, omega, x, z, info).data[1])  # cleared
    builder.release(1), builder.release(2), builder.drop_spares()
    assert builder.allocated_bytes == 0
    with pytest.raises(ValueError, match="holds at most 2 heights: read them with sinogram"):
        _ = builder.sinograms


def test_a_reserved_builder_takes_its_memory_at_the_start_and_no_more():
    """reserve() (a live scan's hook calls it): the heights' arrays allocated and touched before
    the first frame; the first heights use them, and the sinograms are the same."""
    info = seed_info(n_x=6, n_omega=8)
    indices, patterns, omega, x, z, *_ = multi_height_scan(info)
    one = SinogramBuilder.height_nbytes(info, SEED_Q.size) + 8 * 6 * 8
    builder = SinogramBuilder(info, SEED_Q.size, max_heights=2)
    builder.reserve()
    reserved = [data for data, _ in builder._spare]
    assert builder.held == () and builder.allocated_bytes == builder.peak_bytes == 2 * one
    heights = builder.heights(z, indices)
    for h in range(4):
        sel = np.flatnonzero(heights == h)
        builder.add(sel, patterns[sel], omega[sel], x[sel], z[sel])
        assert any(builder.sinogram(h) is data for data in reserved)  # never a new array
        np.testing.assert_array_equal(builder.sinogram(h), assemble(patterns, omega, x, z, info).data[h])
        builder.release(h)
    assert builder.peak_bytes == 2 * one
    single = SinogramBuilder(seed_info(n_x=6, n_omega=8, zs=(0.0,)), SEED_Q.size, max_heights=2)
    single.reserve()  # one height: one height's arrays
    assert single.allocated_bytes == one


def test_slice_by_slice_equals_the_whole_volume_at_once(tmp_path):
    """Frames arrive out of order within windows spanning two heights (as several workers
    deliver them): the hook never holds more than two heights' sinograms, and the slices it
    writes equal the FBP of the whole scan's sinograms at once."""
    import h5py

    from bliss_lite.processing.reconstruction_hook import ReconstructionHook

    info = seed_info()
    frames = multi_height_scan(info)
    per_height = 16 * 20
    edges = [0, *range(per_height // 2, 4 * per_height, per_height), 4 * per_height]  # windows astride 2 heights
    rng = np.random.default_rng(3)
    order = np.concatenate([rng.permutation(np.arange(a, b)) for a, b in zip(edges[:-1], edges[1:])])
    hook = ReconstructionHook(SEED_PHASES, peak_fwhm=PEAK_FWHM_Q)
    hook.start(info, SEED_Q.size, tmp_path / "reconstructed.h5", radial=SEED_Q)
    held = []
    for batch in np.array_split(order, 40):
        hook.add_frames(batch, *(values[batch] for values in frames[1:]))
        held.append(len(hook.builder.held))
    result = hook.finish()
    assert max(held) == 2 and hook.builder.peak_heights == 2 and hook.builder.held == ()
    one = SinogramBuilder.height_nbytes(info, SEED_Q.size) + 20 * 16 * 8  # the sinogram and its frame indices
    assert hook.builder.peak_bytes == 2 * one
    assert result["heights"] == [0, 1, 2, 3] and result["filled"] == 1.0 and not hook.late
    expected = whole_at_once(frames, info, hook.reference_i0, hook.centre)
    with h5py.File(tmp_path / "reconstructed.h5", "r") as h5:
        volume = h5["volume"][()]
        assert h5["reconstructed"][()].all() and h5["volume"].chunks[0] == 1
        maps = {phase: h5[f"maps/{phase}"][()] for phase in SEED_PHASES}
    assert volume.shape == (4, 16, 16, SEED_Q.size)
    assert relative_error(volume, expected) <= 1e-5
    for phase in SEED_PHASES:
        from_whole = np.stack([hook.mapper.maps(expected[iz], SEED_Q)[phase] for iz in range(4)])
        assert relative_error(maps[phase], from_whole) <= 1e-5, phase
        np.testing.assert_array_equal(result["maps"][phase], maps[phase])
    assert np.abs(maps["LaB6"][3]).max() < 0.2 * np.abs(maps["LaB6"][2]).max()  # each slice its own height:
    assert np.abs(maps["LaB6"][2]).max() > 0.5 * np.abs(maps["CeO2"][2]).max()  # LaB6 ends at z 0.3


def test_reconstruct_scan_of_frames_in_any_order_redoes_heights_from_the_file(tmp_path, monkeypatch):
    """An entry whose frames are in no order at all: the offline reconstruction reads them in
    small blocks, finishes heights before all their frames came (never more than two held),
    redoes those from the file at the end, and still equals the whole volume at once."""
    import json

    import h5py

    from bliss_lite.processing import reduction_files
    from bliss_lite.processing.scan_plugins import reconstruct_scan

    info = seed_info(n_x=12, n_omega=14)
    frames = multi_height_scan(info, seed=1)
    path = tmp_path / "seed.h5"
    shuffled_integrated_scan(path, "3.1", info, frames, seed=4)
    monkeypatch.setattr(reduction_files, "READ_BYTES", 4 * SEED_Q.size * 50)  # 50 frames a block
    from bliss_lite.processing.reconstruction_hook import ReconstructionHook

    redone, redo = [], ReconstructionHook._redo
    monkeypatch.setattr(ReconstructionHook, "_redo", lambda hook, *args: (redone.append(args[-1]), redo(hook, *args)))
    limit = []
    original_add = SinogramBuilder.add
    monkeypatch.setattr(SinogramBuilder, "add", lambda builder, *args: (original_add(builder, *args),
                                                                        limit.append(len(builder.held))))
    done = reconstruct_scan({"filename": str(path), "entry": "3.1",
                             "reconstruction": {"phases": SEED_PHASES, "peak_fwhm": PEAK_FWHM_Q}})
    assert done["slices"] == 4 and redone and max(limit) == 2  # heights finished early were redone
    with h5py.File(path, "r") as h5:
        process = h5["3.1/reconstruct"]
        configuration = json.loads(process["configuration"][()])
        volume = process["volume/data"]
        assert volume.is_virtual and volume.virtual_sources()[0].file_name == "seed_scan0003/reconstructed.h5"
        volume = volume[()]
    assert configuration["reference_i0"] == pytest.approx(frames[5].mean())  # the whole scan's mean I0
    expected = whole_at_once(frames, info, configuration["reference_i0"], configuration["centre_mm"])
    assert relative_error(volume, expected) <= 1e-5
    assert not (tmp_path / "seed_scan0003" / "reconstructed.h5.part").exists()


def test_maps_too_large_to_keep_are_held_only_for_the_heights_in_flight(tmp_path, monkeypatch):
    """Six heights whose frames come in no order (heights finished early, redone from the file
    at the end): above KEEP_MAPS_BYTES the hook holds the maps of a few heights at any time,
    never all, and its result["maps"], read from the slices file, equal to the bit those of the
    same run with every height's maps kept."""


    from bliss_lite.processing import reconstruction_hook, reduction_files
    from bliss_lite.processing.reconstruction_hook import KEEP_DONE_HEIGHTS, MAX_HEIGHTS, ReconstructionHook
    from bliss_lite.processing.reduction_files import StoredArray, scan_blocks

    info = seed_info(n_x=8, n_omega=10, zs=(-0.3, -0.2, -0.1, 0.1, 0.2, 0.4))
    frames = multi_height_scan(info, seed=2)
    path = tmp_path / "seed.h5"
    settings = shuffled_integrated_scan(path, "1.1", info, frames, seed=5)
    monkeypatch.setattr(reduction_files, "READ_BYTES", 4 * SEED_Q.size * 60)  # 60 frames a block
    redone, redo = [], ReconstructionHook._redo
    monkeypatch.setattr(ReconstructionHook, "_redo", lambda hook, *args: (redone.append(args[-1]), redo(hook, *args)))

    def run(cap, saved=True):
        monkeypatch.setattr(reconstruction_hook, "KEEP_MAPS_BYTES", cap)
        hook = ReconstructionHook(SEED_PHASES, peak_fwhm=PEAK_FWHM_Q, centre=0.0)
        hook.start(info, SEED_Q.size, tmp_path / f"cap{cap}" / "reconstructed.h5" if saved else None, radial=SEED_Q)
        held = []
        for block in scan_blocks(path, "1.1"):
            hook.add_frames(*block)
            held.append(len(hook.held_map_heights))
        return hook, held, hook.finish(str(path), "1.1", settings.unit)

    whole, _, expected = run(2**40)
    assert whole.maps is not None and whole.peak_map_heights == 6 and redone  # some heights were redone
    hook, held, result = run(0)
    assert hook.maps is None and max(held) >= 2
    assert hook.peak_map_heights <= MAX_HEIGHTS + KEEP_DONE_HEIGHTS < 6 and max(held) <= hook.peak_map_heights
    assert len(hook.live_maps) <= MAX_HEIGHTS + KEEP_DONE_HEIGHTS
    assert result["heights"] == expected["heights"] == list(range(6)) and result["centre"] == expected["centre"]
    assert sorted(result["maps"]) == sorted(SEED_PHASES)
    for name, stack in [*result["maps"].items(), ("residual", result["residual"])]:
        reference = expected["maps"][name] if name != "residual" else expected["residual"]
        assert isinstance(stack, StoredArray) and stack.shape == (6, 8, 8) and stack.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(stack), reference)  # to the bit
        np.testing.assert_array_equal(stack[3], reference[3])
        np.testing.assert_array_equal(stack[::-1, 2], reference[::-1, 2])  # what h5py does not index: by heights
    assert np.abs(np.asarray(result["maps"]["CeO2"])).max() > 0
    # unsaved, no slices file to read back: every height's maps on unlinked scratch files
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    hook, _, result = run(0, saved=False)
    for name, stack in [*result["maps"].items(), ("residual", result["residual"])]:
        reference = expected["maps"][name] if name != "residual" else expected["residual"]
        assert isinstance(stack, np.memmap) and stack.shape == (6, 8, 8)
        np.testing.assert_array_equal(stack, reference)
    assert list(scratch.iterdir()) == []  # nothing left behind, even should the process die now


def test_live_updates_take_at_most_a_quarter_of_the_time():
    from bliss_lite.processing.reconstruction_hook import LIVE_SHARE, live_wait

    assert live_wait(1.0, 0.1) == 1.0  # a quick update: every period
    assert live_wait(1.0, 3.0) == 9.0 and 3.0 / (3.0 + live_wait(1.0, 3.0)) == LIVE_SHARE  # a slow one: less often
