"""Phase maps by full-pattern decomposition: batched NNLS, the peak profile measured from a
calibrant, maps against the exact truth of the demo phantom and of sample geometries the
project never saw, volume fractions from a standard, and the residual map of an unknown phase.

The patterns are drawn by the simulator's diffraction model (tests may read the simulator; the
reduction never does), each phase with its own unknown gain, as a detector would see it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from bliss_lite.controllers.sample.diffraction import PEAK_FWHM_Q, phase_pattern
from bliss_lite.controllers.sample.phantom import EllipticCylinder, Phantom, Phase, default_phantom
from bliss_lite.processing.decomposition import build_model
from bliss_lite.processing.fbp import fbp
from bliss_lite.processing.nnls import nnls
from bliss_lite.processing.peak_width import measure_profile
from bliss_lite.processing.phase_maps import correlation, ground_truth

Q = np.linspace(10, 40, 300)  # nm^-1
FLUX = 2.0e4  # counts per mm of a phase at its gain, at the strongest peak
GAINS = {"matrix": 0.5, "CeO2": 3.0, "LaB6": 1.0, "Si": 7.0, "alpha_Al2O3": 2.0, "Cr2O3": 2.0}


def grains_phantom():
    """Radius 1.5 mm, off-centre amorphous body, Si at half density, three CeO2 grains, a long
    LaB6 needle."""
    return Phantom([
        Phase("matrix", (EllipticCylinder(0.2, -0.1, 1.2, 0.9, angle=15, density=0.8),), mu=0.02),
        Phase("Si", (EllipticCylinder(-0.45, 0.3, 0.45, 0.3, angle=40, density=0.5),), mu=0.03, calibrant="Si"),
        Phase("CeO2", (EllipticCylinder(0.6, 0.4, 0.15, 0.15), EllipticCylinder(0.8, -0.5, 0.2, 0.12),
                       EllipticCylinder(-0.2, -0.6, 0.12, 0.12)), mu=0.6, calibrant="CeO2"),
        Phase("LaB6", (EllipticCylinder(0.3, 0.0, 0.6, 0.08, angle=-60),), mu=0.4, calibrant="LaB6"),
    ], radius=1.5)


def packed_phantom():
    """Radius 0.6 mm, no amorphous phase: three crystalline phases side by side, one of them in
    two densities."""
    return Phantom([
        Phase("alpha_Al2O3", (EllipticCylinder(-0.2, 0.0, 0.3, 0.45),), mu=0.08, calibrant="alpha_Al2O3"),
        Phase("Si", (EllipticCylinder(0.25, 0.2, 0.2, 0.2, density=0.6),
                     EllipticCylinder(0.25, -0.3, 0.15, 0.15, density=0.3)), mu=0.03, calibrant="Si"),
        Phase("CeO2", (EllipticCylinder(0.0, 0.45, 0.1, 0.08),), mu=0.6, calibrant="CeO2"),
    ], radius=0.6)


def grid(n_x, n_omega, radius):
    x = -radius + (np.arange(n_x) + 0.5) * 2 * radius / n_x
    omega = (np.arange(n_omega) + 0.5) * 180.0 / n_omega
    return x, omega


def measured_sinogram(phantom, x, omega, seed=0, extra=()):
    """(n_omega, n_x, nq) patterns with Poisson noise (mm of each phase times its gain)."""
    phases = list(phantom.phases) + list(extra)
    lengths = {p.name: sum(s.chord(x[None, :], omega[:, None], 0.0) for s in p.shapes) for p in phases}
    clean = sum(lengths[p.name][..., None] * GAINS[p.name] * phase_pattern(p.calibrant, Q) for p in phases)
    return (np.random.default_rng(seed).poisson(clean * FLUX) / FLUX).astype(np.float32)


def decomposed(phantom, n_x, n_omega, **options):
    x, omega = grid(n_x, n_omega, phantom.radius)
    sino = measured_sinogram(phantom, x, omega, extra=options.pop("extra", ()))
    volume = fbp(sino, x, omega, centre=0.0)
    model = build_model({p.name: p.calibrant for p in phantom.phases}, Q, summed=sino.sum(axis=(0, 1)), **options)
    maps, residual = model.decompose(volume)
    return model, maps, residual


def scores(phantom, maps, n):
    return {p: correlation(maps[p], ground_truth(phantom, p, 0.0, n)) for p in phantom.names}


def test_one_batched_solve_per_column_equals_a_solve_per_passive_set(monkeypatch):
    """The GPU's form (one k x k system per column, identity outside its passive set) run on
    NumPy gives the grouped form's x and gradient."""
    from bliss_lite.processing import nnls as module

    rng = np.random.default_rng(4)
    k, n = 6, 500
    design = np.abs(rng.standard_normal((80, k)))
    gram = design.T @ design
    rhs = design.T @ (design @ np.abs(rng.standard_normal((k, n))) + rng.standard_normal((80, n)))
    passive = rng.random((k, n)) < 0.5
    columns = np.arange(n)
    bits = (2 ** np.arange(k))[:, None]
    x1, y1, x2, y2 = (np.zeros((k, n)) for _ in range(4))
    module._solve_groups(gram, rhs, passive, x1, y1, columns, bits, np)
    module._solve_batched(gram, rhs, passive, x2, y2, columns, np)
    x3, y3 = np.zeros((k, n)), np.zeros((k, n))
    monkeypatch.setattr(module, "BATCH_COLUMNS", 64)  # in blocks: the same
    module._solve_batched(gram, rhs, passive, x3, y3, columns, np)
    assert np.array_equal(x3, x2) and np.array_equal(y3, y2)
    assert np.allclose(x2, x1, rtol=1e-10, atol=1e-12) and np.allclose(y2, y1, rtol=1e-10, atol=1e-9)
    assert np.all(x2[~passive] == 0) and np.all(y2[passive] == 0)


def test_batched_nnls_equals_scipy_per_pattern():
    from scipy.optimize import nnls as scipy_nnls

    rng = np.random.default_rng(0)
    design = np.abs(rng.standard_normal((120, 7)))
    design[:, 1] = 0.95 * design[:, 0] + 0.05 * design[:, 1]  # nearly collinear: the hard case
    truth = np.where(rng.random((400, 7)) < 0.5, 0.0, rng.random((400, 7)))
    patterns = truth @ design.T + 0.3 * rng.standard_normal((400, 120))
    got = nnls(design, patterns)
    expected = np.array([scipy_nnls(design, y)[0] for y in patterns])
    assert got.min() >= 0 and np.abs(got - expected).max() < 1e-7  # the ridge (1e-12 of G) on near-collinear columns


def test_peak_profile_is_measured_from_a_calibrant_pattern():
    pattern = 500 * phase_pattern("LaB6", Q) + 20 * np.exp(-0.5 * ((Q - 20) / 3) ** 2)  # on an amorphous hump
    noisy = np.random.default_rng(1).poisson(pattern * 40) / 40
    profile = measure_profile(Q, noisy, {"LaB6": "LaB6"})
    widths = profile.width(Q)
    assert widths.min() == pytest.approx(PEAK_FWHM_Q, rel=0.15) and widths.max() == pytest.approx(PEAK_FWHM_Q, rel=0.15)


def test_two_runs_of_one_sample_measure_the_same_peak_width():
    """One FWHM per scan from the summed pattern: two noise realisations (and one scaled by
    0.2 %, as a resumed scan's merged entries are) agree within 5 %; a pattern with no peak
    above the noise falls back to a width it says it did not measure."""
    phantom = default_phantom()
    phases = {p.name: p.calibrant for p in phantom.phases}
    x, omega = grid(16, 20, phantom.radius)
    sums = [measured_sinogram(phantom, x, omega, seed=seed).sum(axis=(0, 1)) for seed in (1, 2)]
    profiles = [measure_profile(Q, s, phases) for s in sums + [sums[0] * 1.002]]
    widths = [p.fwhm for p in profiles]
    assert all(len(w) == 1 for w in widths) and all("isolated reflection" in p.source for p in profiles), profiles
    assert widths[0][0] == pytest.approx(widths[1][0], rel=0.05) and widths[2][0] == pytest.approx(widths[0][0], rel=1e-3)
    assert widths[0][0] == pytest.approx(PEAK_FWHM_Q, rel=0.05)
    hump = np.random.default_rng(3).poisson(1e4 * np.exp(-0.5 * ((Q - 20) / 4) ** 2) + 10) * 1.0
    fallback = measure_profile(Q, hump, {"LaB6": "LaB6"})
    assert fallback.source.startswith("fallback") and fallback.fwhm[0] == pytest.approx(3 * (Q[1] - Q[0]))


@pytest.mark.parametrize("make", [default_phantom, grains_phantom, packed_phantom])
def test_decomposed_maps_match_the_truth_and_improve_with_finer_scans(make):
    phantom = make()
    previous = None
    for n_x, n_omega in ((32, 50), (48, 76)):
        model, maps, residual = decomposed(phantom, n_x, n_omega)
        r = scores(phantom, maps, n_x)
        if n_x == 48:
            assert min(r.values()) >= 0.97, r
        if previous is not None:
            assert all(r[p] >= previous[p] - 1e-3 for p in r), (previous, r)
        previous = r
    assert model.profile.width(25.0) == pytest.approx(PEAK_FWHM_Q, rel=0.15)  # measured, not told
    assert residual.shape == (48, 48) and residual.dtype == np.float32


def test_volume_fractions_from_a_standard_of_known_thickness():
    """A 0.5 mm plate of each crystalline phase measured per I0 count: the maps become volume
    fractions (the half-density Si reads 0.5)."""
    phantom = grains_phantom()
    k, reference_i0, thickness = 2.5e-3, 1.0e5, 0.5  # detector counts per I0 count per mm at gain 1
    rng = np.random.default_rng(5)
    standards = {}
    for p in ("Si", "CeO2", "LaB6"):
        counts = rng.poisson(reference_i0 * k * thickness * GAINS[p] * phase_pattern(p, Q) * 200)
        standards[p] = {"pattern": {"q": Q, "intensity": counts / (reference_i0 * 200)}, "thickness_mm": thickness}
    x, omega = grid(48, 76, phantom.radius)
    sino = measured_sinogram(phantom, x, omega) * reference_i0 * k  # normalised to the scan's I0 reference
    volume = fbp(sino, x, omega, centre=0.0)
    model = build_model({p.name: p.calibrant for p in phantom.phases}, Q, summed=sino.sum(axis=(0, 1)),
                        standards=standards, reference_i0=reference_i0)
    maps, _ = model.decompose(volume)
    assert model.units == {"matrix": "a.u.", "Si": "1", "CeO2": "1", "LaB6": "1"}
    for p in ("Si", "CeO2", "LaB6"):
        truth = ground_truth(phantom, p, 0.0, 48)
        near = binary_dilation(truth > 0, iterations=2)  # where the phase is, edges blurred by the scan
        inside = binary_erosion(truth > 0)
        assert maps[p][near].sum() == pytest.approx(truth.sum(), rel=0.10), p  # the amount of the phase
        assert np.median(maps[p][inside]) == pytest.approx(np.median(truth[inside]), rel=0.10), p
    assert np.median(maps["Si"][binary_erosion(ground_truth(phantom, "Si", 0.0, 48) > 0)]) == pytest.approx(0.5, rel=0.1)


def test_the_residual_map_shows_a_phase_nobody_named():
    phantom = default_phantom()
    unknown = Phase("Cr2O3", (EllipticCylinder(0.1, -0.1, 0.15, 0.15),), mu=0.1, calibrant="Cr2O3")
    _, maps, residual = decomposed(phantom, 48, 76, extra=(unknown,))
    where = Phantom([unknown], radius=1.0)
    assert correlation(residual, ground_truth(where, "Cr2O3", 0.0, 48)) > 0.8
    assert min(scores(phantom, maps, 48).values()) > 0.9  # the others still mapped


def test_measured_reference_and_amorphous_humps_need_no_profile():
    """References given as patterns (a pure-phase scan) and humps: nothing measured from the data."""
    phantom = packed_phantom()
    x, omega = grid(32, 50, phantom.radius)
    volume = fbp(measured_sinogram(phantom, x, omega), x, omega, centre=0.0)
    phases = {p.name: {"pattern": {"q": Q, "intensity": phase_pattern(p.calibrant, Q)}} for p in phantom.phases}
    model = build_model(phases, Q)
    assert model.profile is None and set(model.sources.values()) == {"measured"}
    maps, _ = model.decompose(volume)
    assert min(scores(phantom, maps, 32).values()) >= 0.97


def test_decomposition_on_the_gpu_equals_the_cpu():
    from bliss_lite.processing import gpu

    if not gpu.available():
        pytest.skip(gpu.unavailable_reason())
    import cupy

    phantom = default_phantom()
    x, omega = grid(32, 50, 1.0)
    sino = measured_sinogram(phantom, x, omega)
    volume = fbp(sino, x, omega, centre=0.0)
    model = build_model({p.name: p.calibrant for p in phantom.phases}, Q, summed=sino.sum(axis=(0, 1)))
    cpu_maps, cpu_residual = model.decompose(volume)
    gpu_maps, gpu_residual = model.decompose(cupy.asarray(volume))
    for p in cpu_maps:
        assert np.abs(gpu_maps[p] - cpu_maps[p]).max() <= 1e-4 * np.abs(cpu_maps[p]).max(), p
    assert np.abs(gpu_residual - cpu_residual).max() <= 1e-3 * cpu_residual.max()
