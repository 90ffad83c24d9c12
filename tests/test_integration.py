"""The lean integration engine against pyFAI's own integrate1d, sigma_clip_ng and medfilt1d_ng."""
from pathlib import Path

import numpy as np
import pytest

from bliss_lite.processing.integration_settings import IntegrationSettings
from bliss_lite.processing.integrator import LeanIntegrator, azimuthal_integrator

PONI = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
ROI = (816, 700, 48, 160)


def settings(**options):
    return IntegrationSettings.from_poni(PONI, **options)


def noisy_frame(integrator, mean=50, seed=0):
    rng = np.random.default_rng(seed)
    frame = rng.poisson(mean, size=integrator.shape).astype(np.int32)
    frame[integrator.mask] = -1
    return frame


def assert_same_pattern(lean, reference, tolerance=1e-4):
    assert lean.shape == reference.shape
    scale = np.abs(reference).max()
    assert scale > 0
    assert np.abs(lean - reference).max() <= tolerance * scale


@pytest.mark.parametrize("options", [
    dict(roi=ROI, npt=200),
    dict(roi=ROI, npt=200, split="bbox"),
    dict(roi=ROI, npt=150, unit="2th_deg"),
    dict(roi=ROI, npt=120, polarization_factor=None, solid_angle=False),
    dict(roi=ROI, npt=100, radial_range=(5.0, 20.0)),
    dict(npt=1000),  # the full Pilatus 2M frame
])
def test_lean_integration_equals_pyfai_integrate1d(options):
    lean = LeanIntegrator(settings(**options))
    frame = noisy_frame(lean)
    reference = lean.reference(frame)
    np.testing.assert_allclose(lean.radial, reference.radial)
    assert_same_pattern(lean.integrate(frame), reference.intensity)
    many = lean.integrate_many(np.stack([frame, frame * 2 + 3 * (frame >= 0)]))
    assert_same_pattern(many[0], reference.intensity)
    assert_same_pattern(many[1], lean.reference(frame * 2 + 3 * (frame >= 0)).intensity)


def test_dark_and_flat_are_applied_as_pyfai_does(tmp_path):
    base = LeanIntegrator(settings(roi=ROI, npt=100))
    rng = np.random.default_rng(3)
    dark = rng.uniform(0, 5, base.shape)
    flat = rng.uniform(0.8, 1.2, base.shape)
    np.save(tmp_path / "dark.npy", dark)
    np.save(tmp_path / "flat.npy", flat)
    lean = LeanIntegrator(settings(roi=ROI, npt=100, dark=str(tmp_path / "dark.npy"), flat=str(tmp_path / "flat.npy")))
    frame = noisy_frame(lean, seed=4)
    assert_same_pattern(lean.integrate(frame), lean.reference(frame).intensity)
    assert not np.allclose(lean.integrate(frame), base.integrate(frame))


def test_dark_of_the_wrong_shape_is_named(tmp_path):
    np.save(tmp_path / "dark.npy", np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"dark file .*dark.npy is \(10, 10\), frames are \(48, 160\)"):
        LeanIntegrator(settings(roi=ROI, dark=str(tmp_path / "dark.npy")))
    with pytest.raises(ValueError, match="flat file .*missing.edf not found"):
        LeanIntegrator(settings(roi=ROI, flat=str(tmp_path / "missing.edf")))


def test_a_roi_keeps_each_pixel_where_it_is_on_the_full_detector():
    full, _ = azimuthal_integrator(settings())
    small, mask = azimuthal_integrator(settings(roi=ROI))
    rows, cols = slice(ROI[0], ROI[0] + ROI[2]), slice(ROI[1], ROI[1] + ROI[3])
    np.testing.assert_allclose(small.array_from_unit(unit="q_nm^-1"), full.array_from_unit(unit="q_nm^-1")[rows, cols],
                               rtol=1e-6, atol=1e-9)
    assert mask.shape == (48, 160) and mask.any()  # the ROI crosses a gap between modules


def test_masked_gap_pixels_never_count():
    lean = LeanIntegrator(settings(roi=ROI, npt=100))
    frame = noisy_frame(lean)
    spoiled = frame.copy()
    spoiled[lean.mask] = 10**6
    np.testing.assert_array_equal(lean.integrate(frame), lean.integrate(spoiled))


def zingered(lean, count=5, seed=1):
    frame = noisy_frame(lean, seed=seed)
    rng = np.random.default_rng(seed)
    hits = rng.choice(np.flatnonzero(~lean.mask), count, replace=False)
    frame.flat[hits] = 100000
    return frame


def test_sigma_clipping_equals_pyfai_and_removes_zingers():
    lean = LeanIntegrator(settings(roi=ROI, npt=100, outliers="sigma_clip", thres=5.0, max_iter=5))
    frame = zingered(lean)
    reference = lean.ai.sigma_clip_ng(frame, 100, unit="q_nm^-1", method=("no", "csr", "cython"), mask=lean.mask,
                                      polarization_factor=0.99, thres=5.0, max_iter=5, error_model="azimuthal")
    clipped = lean.integrate(frame)
    assert_same_pattern(clipped, reference.intensity)
    plain = LeanIntegrator(settings(roi=ROI, npt=100)).integrate(frame)
    assert plain.max() > 500  # the zingers show without clipping ...
    assert clipped[clipped > 0].max() < 60 and clipped[clipped > 0].min() > 40  # ... and not with it


def test_trimmed_mean_equals_pyfai_medfilt1d_ng():
    lean = LeanIntegrator(settings(roi=ROI, npt=100, outliers="trimmed_mean", percentile=(10, 90)))
    frame = zingered(lean)
    reference = lean.ai.medfilt1d_ng(frame, 100, unit="q_nm^-1", method=("no", "csr", "cython"), mask=lean.mask,
                                     polarization_factor=0.99, percentile=(10, 90))
    trimmed = lean.integrate(frame)
    assert_same_pattern(trimmed, reference.intensity)
    assert trimmed[trimmed > 0].max() < 60


def test_settings_travel_as_json_and_bad_ones_are_named():
    s = settings(roi=ROI, npt=321, unit="2th_deg", split="bbox", outliers="sigma_clip")
    again = IntegrationSettings.from_json(s.to_json())
    assert again == s and again.roi == ROI
    np.testing.assert_allclose(LeanIntegrator(again).radial, LeanIntegrator(s).radial)
    with pytest.raises(ValueError, match="npt must be a whole number"):
        s.replace(npt=0)
    with pytest.raises(ValueError, match="unit must be one of q_nm\\^-1, 2th_deg"):
        s.replace(unit="chi_deg")
    with pytest.raises(ValueError, match="split must be one of no, bbox"):
        s.replace(split="full-ish")
    with pytest.raises(ValueError, match="ROI 1600\\+160 .* outside"):
        s.replace(roi=(1600, 0, 160, 10))
    with pytest.raises(ValueError, match="unknown setting\\(s\\) nbins"):
        IntegrationSettings.from_dict({**s.to_dict(), "nbins": 3})
    with pytest.raises(ValueError, match="frame is \\(10, 10\\)"):
        LeanIntegrator(s).integrate(np.zeros((10, 10)))
