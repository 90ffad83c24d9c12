"""PDF-CT: G(r) of every voxel of an XRD-CT reconstruction, as the `pdf_scan` job runs it on a
saved entry: pure regions against their atoms' G(r), phase maps against the phantom."""
import json

import h5py
import numpy as np
import pytest

from bliss_lite.controllers.sample import pdf_sample
from bliss_lite.processing.fbp import fbp
from bliss_lite.processing.jobs import call_plugin, load_plugins
from bliss_lite.processing.nexus_output import write_reconstruction
from bliss_lite.processing.phase_maps import correlation, ground_truth

N_X, N_OMEGA = 40, 60
PHASES = ("SiO2_glass", "Ni_nano", "CeO2")


Q = np.linspace(0.3, 30.0, 1000)


def air(scale=1.0):
    """What the air (times `scale`: an empty container scatters far more) adds to every frame."""
    return scale * np.interp(Q, pdf_sample.Q_GRID, pdf_sample.air_pattern()) * 1e4 * pdf_sample.AIR_PATH_MM


def _entry(path, background_scale=1.0):
    """An XRD-CT entry of the PDF-CT phantom: each frame's pattern is the phases' patterns
    times their path lengths plus the air's (what the integration gives, noise-free), the
    sinograms reconstructed by FBP, written as the reconstruction hook writes them."""
    sample = pdf_sample.PdfctSample("s", None, None, None, "config/pdfct/pilatus2m_pdf.poni")
    phantom = sample.phantom
    q = Q
    patterns = {p: np.interp(q, pdf_sample.Q_GRID, pdf_sample.phase_pattern(p)) * 1e4 for p in phantom.names}
    air_pattern = air(background_scale)
    radius = phantom.radius
    dx = 2 * radius / N_X
    x_mm = -radius + (np.arange(N_X) + 0.5) * dx
    omega = (np.arange(N_OMEGA) + 0.5) * 180.0 / N_OMEGA
    xx, oo = np.meshgrid(x_mm, omega)
    lengths = phantom.path_lengths(xx, oo, 0.0)
    sino = sum(lengths[p][..., None] * patterns[p][None, None] for p in phantom.names) + air_pattern
    volume = fbp(sino.astype(np.float32), x_mm, omega, 0.0)[None]
    info = {"xrdct": {"n_x": N_X, "n_omega": N_OMEGA, "z_positions": [0.0], "x_start": -radius, "x_stop": radius,
                      "omega_range": 180.0, "fast_axis": "x"}, "sample": sample.description()}
    with h5py.File(path, "w") as h5:
        h5.create_group("1.1")["scan_info"] = json.dumps(info)
    write_reconstruction(str(path), "1.1", volume, x_mm, x_mm, [0.0], q, "q_A^-1", {}, {"centre_mm": 0.0})
    return phantom


@pytest.fixture(scope="module")
def pdf_ct(tmp_path_factory):
    path = tmp_path_factory.mktemp("pdfct") / "pdfct.h5"
    phantom = _entry(path)
    load_plugins()
    result = call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {"rmax": 20.0}})
    return path, phantom, result


def test_phase_maps_follow_the_phantom(pdf_ct):
    path, phantom, result = pdf_ct
    assert result["kind"] == "tomography" and sorted(result["maps"]) == sorted(PHASES)
    with h5py.File(path) as h5:
        process = h5["1.1/pdf"]
        assert process["gr/data"].shape == (1, N_X, N_X, 2001)
        assert list(process["gr"].attrs["axes"]) == ["z", "y", "x", "r"] and process["gr/r"].attrs["units"] == "A"
        config = json.loads(process["configuration"][()])
        assert config["composition"] and config["qmax"] == 25.0 and config["rpoly"] == 0.9
        maps = {p: process[f"{p}/map"][0] for p in PHASES}
        window = process["window_SiO2_glass_first_peak/map"][0]
    for phase in PHASES:
        truth = ground_truth(phantom, phase, 0.0, N_X)
        assert correlation(maps[phase], truth) >= 0.9, phase
    # the Si-O peak's window: high in the glass, the density baseline (< 0) elsewhere in the object
    assert correlation(window, ground_truth(phantom, "SiO2_glass", 0.0, N_X)) >= 0.7


def test_gr_of_pure_regions_matches_the_atoms(pdf_ct):
    path, phantom, _ = pdf_ct
    with h5py.File(path) as h5:
        gr, r = h5["1.1/pdf/gr/data"][0], h5["1.1/pdf/gr/r"][()]
    window = r >= 1.0
    for phase in PHASES:
        pure = ground_truth(phantom, phase, 0.0, N_X) > 0.999
        mean = gr[pure].mean(axis=0)
        reference = np.interp(r, pdf_sample.R_REFERENCE, pdf_sample.reference_gr(phase))
        assert np.corrcoef(mean[window], reference[window])[0, 1] >= 0.95, phase
        known = pdf_sample.structure(phase).notes["first_peak_A"]
        near = (r > 1.0) & (r < known + 0.3)
        assert abs(r[near][np.argmax(mean[near])] - known) <= 0.02, phase


def pure_region_correlations(path, phantom):
    with h5py.File(path) as h5:
        gr, r = h5["1.1/pdf/gr/data"][0], h5["1.1/pdf/gr/r"][()]
        assert h5["1.1/pdf/gr/data"].attrs["units"] == "A^-2"  # in pdf.h5 itself, not only on the NXdata
    window = r >= 1.0
    return {phase: np.corrcoef(gr[ground_truth(phantom, phase, 0.0, N_X) > 0.999].mean(axis=0)[window],
                               np.interp(r, pdf_sample.R_REFERENCE, pdf_sample.reference_gr(phase))[window])[0, 1]
            for phase in PHASES}


def test_a_measured_container_background_is_scaled_and_subtracted(tmp_path):
    """A container scattering 50 times the air is in every frame: left in, the glass's G(r)
    falls below r 0.95; its measured pattern, taken with twice the counting time (bgscale
    0.5), scaled and subtracted from every voxel by its footprint, brings every phase back."""
    path = tmp_path / "container.h5"
    phantom = _entry(path, background_scale=50.0)
    load_plugins()
    call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {"rmax": 20.0}})
    left_in = pure_region_correlations(path, phantom)
    assert left_in["SiO2_glass"] < 0.95, left_in
    measured = {"q": Q.tolist(), "intensity": (2 * air(50.0)).tolist()}
    call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1",
                             "pdf": {"rmax": 20.0, "background": measured, "bgscale": 0.5}})
    subtracted = pure_region_correlations(path, phantom)
    assert all(r >= 0.95 for r in subtracted.values()), subtracted
    with h5py.File(path) as h5:
        config = json.loads(h5["1.1/pdf/configuration"][()])
    assert config["background"] == "pattern" and config["bgscale"] == 0.5
    with pytest.raises(ValueError, match=r"background: its Q axis \(500 points"):
        call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {
            "rmax": 20.0, "background": {"q": Q[::2].tolist(), "intensity": air()[::2].tolist()}}})


def test_pdf_ct_refuses_qmax_beyond_the_measurement(tmp_path):
    path = tmp_path / "small.h5"
    _entry(path)
    load_plugins()
    with pytest.raises(ValueError, match="qmax"):
        call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {"qmax": 35.0}})
    assert not (tmp_path / "small_scan0001" / "pdf.h5").exists()


def test_voxel_transform_on_the_gpu_equals_the_cpu():
    """The PDF-CT hook's batched G(r) (one matrix product per slice) gives the same on CuPy."""
    from bliss_lite.processing import gpu
    from bliss_lite.processing.pdf import PdfSettings, VoxelTransform

    if not gpu.available():
        pytest.skip(gpu.unavailable_reason())
    import cupy

    q = np.linspace(0.3, 30.0, 600)
    patterns = np.stack([np.interp(q, pdf_sample.Q_GRID, pdf_sample.phase_pattern(p))
                         for p in ("SiO2_glass", "Ni_nano", "CeO2")])
    volume = (np.random.default_rng(2).random((20, 20, 3)) @ patterns).astype(np.float32)
    settings = PdfSettings(composition={"Si": 1, "O": 2, "Ni": 1, "Ce": 1}, qmin=0.8, qmax=25.0, rmax=20.0, rstep=0.01)
    transform = VoxelTransform(q, settings, volume.reshape(-1, q.size).mean(axis=0))
    on_cpu = transform.apply(volume)
    on_gpu = transform.apply(cupy.asarray(volume), xp=cupy).get()
    assert on_gpu.shape == on_cpu.shape == (20, 20, settings.r.size)
    assert np.abs(on_gpu - on_cpu).max() <= 1e-4 * np.abs(on_cpu).max()


def test_the_pdf_hook_refuses_bad_options_before_anything_moves(scan_session, tmp_path):
    """A live scan's pdf hook checks Q range and background when the scan starts: a qmax beyond
    the measured Q, a background entry of another geometry, or one on another Q axis are
    refused, naming the option, and nothing moves."""
    from test_pdf import _static_entry

    ns = scan_session
    omega, x, z = ns["omega"], ns["x"], ns["z"]
    other = tmp_path / "container.h5"
    _static_entry(other, "1.1", Q, air(50.0))  # measured with the PDF-CT geometry, not this session's
    hooks = {"integration": {"npt": 60}, "reconstruction": {"phases": {"CeO2": "CeO2"}}}
    for options, message in (
            ({"qmax": 80.0}, r"xrdct: hook pdf: qmax: 80.0 1/A is beyond the measured range"),
            ({"background": {"filename": str(other), "entry": "1.1"}}, r"background: .*container\.h5 entry 1\.1 was "
                                                                       r"measured with another geometry"),
            ({"background": {"q": [1.0, 2.0], "intensity": [1.0, 1.0]}}, r"background: its Q axis \(2 points")):
        with pytest.raises(ValueError, match=message):
            ns["xrdct"](omega, x, z, -1, 1, 4, [0.5], 0.06, n_omega=6, fast_axis="x",
                        hooks={**hooks, "pdf": {"composition": "CeO2", "qmin": 1.0, "qmax": 2.5, **options}})
        assert (omega.position, x.position, z.position) == (0.0, 0.0, 0.0), options
