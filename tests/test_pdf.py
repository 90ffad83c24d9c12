"""PDF reduction (processing/pdf.py): I(Q) -> S(Q), F(Q), G(r) against G(r) computed from the
atom positions of the simulated phases; bad input refused, naming the parameter."""
import json

import numpy as np
import pytest

from bliss_lite.controllers.sample import pdf_sample
from bliss_lite.processing.pdf import PdfSettings, VoxelTransform, reduce_pattern

PHASES = ("SiO2_glass", "Ni_nano", "CeO2")


def reference(phase, r):
    return np.interp(r, pdf_sample.R_REFERENCE, pdf_sample.reference_gr(phase))


def first_peak(r, g, below):
    window = (r > 1.0) & (r < below)
    return r[window][np.argmax(g[window])]


@pytest.mark.parametrize("phase", PHASES)
def test_gr_of_each_phase_matches_its_atoms(phase):
    """Measured-like I(Q): the phase's Debye pattern (coherent + Compton) times a smooth
    unknown scale, plus a flat offset; the reduction knows only the composition."""
    q = np.linspace(0.3, 30.0, 1000)
    pattern = np.interp(q, pdf_sample.Q_GRID, pdf_sample.phase_pattern(phase)) * (1 - 0.01 * q) * 1e4 + 30.0
    st = pdf_sample.structure(phase)
    reduced = reduce_pattern(q, pattern, PdfSettings(composition=st.formula, qmin=0.8, qmax=25.0, rmax=20.0))
    window = reduced.r >= 1.0
    r_value = np.corrcoef(reduced.gr[window], reference(phase, reduced.r)[window])[0, 1]
    assert r_value >= 0.95
    known = st.notes["first_peak_A"]
    assert abs(first_peak(reduced.r, reduced.gr, known + 0.3) - known) <= 0.02


def _static(specimen, lean, roi, frames=10):
    sample = pdf_sample.PdfctSample("s", None, None, None, "config/pdfct/pilatus2m_pdf.poni", flux=2e6, seed=3)
    sample.specimen = specimen
    model = sample.model(roi)
    return sum(lean.integrate(model.frame(0.0, 0.0, 0.0, 0.1)[0]) for _ in range(frames)) / frames


@pytest.fixture(scope="module")
def capillary():
    """A static measurement: CeO2 powder in a glass capillary, and the empty capillary, through
    the detector and the integrator (polarisation and solid angle corrected)."""
    from bliss_lite.controllers.detectors.pilatus_geometry import Roi
    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.integrator import LeanIntegrator

    roi = (848, 100, 96, 1375)
    lean = LeanIntegrator(IntegrationSettings.from_poni("config/pdfct/pilatus2m_pdf.poni", npt=1000, unit="q_A^-1",
                                                        roi=roi, radial_range=(0.3, 30.0)))
    return lean.radial, _static("capillary", lean, Roi(*roi)), _static("empty_capillary", lean, Roi(*roi))


def test_background_subtraction_matters(capillary):
    q, sample, empty = capillary
    settings = PdfSettings(composition="CeO2", qmin=0.8, qmax=25.0, rmax=20.0)
    with_bg = reduce_pattern(q, sample, settings, background=(q, empty))
    without = reduce_pattern(q, sample, settings)
    r = with_bg.r
    window = r >= 1.0
    assert np.corrcoef(with_bg.gr[window], reference("CeO2_powder", r)[window])[0, 1] >= 0.95
    assert abs(first_peak(r, with_bg.gr, 2.6) - 2.343) <= 0.02
    si_o = np.argmin(abs(r - 1.61))
    # without the subtraction the glass's Si-O bond shows up in the CeO2 powder's G(r)
    assert without.gr[si_o] - with_bg.gr[si_o] > 1.0
    container = without.gr - with_bg.gr  # what the subtraction took away: the glass's own G(r)
    near = (r > 1.3) & (r < 2.2)
    assert r[near][np.argmax(container[near])] == pytest.approx(1.61, abs=0.03)
    assert with_bg.gr[si_o] < 0  # with it, only the density baseline is left there


@pytest.mark.parametrize("options, parameter", [
    ({}, "composition"),
    ({"composition": "SiO2", "qmax": 40.0}, "qmax"),
    ({"composition": "SiO2", "rpoly": -1}, "rpoly"),
    ({"composition": "Qq2"}, "composition"),
])
def test_bad_input_is_refused_naming_the_parameter(options, parameter):
    q = np.linspace(0.3, 30.0, 500)
    with pytest.raises(ValueError, match=parameter):
        reduce_pattern(q, np.ones_like(q), PdfSettings(**options))
    with pytest.raises(ValueError, match=parameter):
        VoxelTransform(q, PdfSettings(**options), np.ones_like(q))


def test_background_of_another_geometry_is_refused():
    q = np.linspace(0.3, 30.0, 500)
    other = np.linspace(0.3, 25.0, 500)  # another distance or wavelength: another Q axis
    with pytest.raises(ValueError, match="background"):
        reduce_pattern(q, np.ones_like(q), PdfSettings(composition="SiO2"), background=(other, np.ones_like(q)))


def test_voxel_transform_is_one_matrix_and_matches_one_pattern():
    """Many patterns through one GEMM: a pure voxel's G(r) correlates with the single-pattern
    reduction, and G scales with the amount of material in the voxel."""
    q = np.linspace(0.3, 30.0, 800)
    patterns = np.stack([np.interp(q, pdf_sample.Q_GRID, pdf_sample.phase_pattern(p)) for p in PHASES]) * 1e4
    settings = PdfSettings(composition="SiO2", qmin=0.8, qmax=25.0, rmax=20.0)
    transform = VoxelTransform(q, settings, patterns.mean(axis=0))
    assert transform.matrix.shape == (settings.r.size, int(transform.select.sum()))
    g = transform.apply(np.stack([patterns[0], 0.5 * patterns[0]]))
    np.testing.assert_allclose(g[1], 0.5 * g[0], rtol=1e-4, atol=1e-4)
    single = reduce_pattern(q, patterns[0], settings).gr
    window = settings.r >= 1.0
    assert np.corrcoef(g[0][window], single[window])[0, 1] > 0.95


def _static_entry(path, entry, q, pattern, poni="config/pdfct/pilatus2m_pdf.poni"):
    """An entry of a static measurement: its integrated patterns, as the integration writes them."""
    import h5py

    from bliss_lite.processing.integration_settings import IntegrationSettings
    from bliss_lite.processing.nexus_output import write_integration

    with h5py.File(path, "a") as h5:
        h5.create_group(entry)
    settings = IntegrationSettings.from_poni(poni, npt=q.size, unit="q_A^-1")
    write_integration(str(path), entry, q, settings, np.stack([pattern, pattern]).astype(np.float32))


def test_pdf_of_a_static_measurement_as_a_job(capillary, tmp_path):
    """`pdf_scan` on a static entry: S(Q), F(Q), G(r) of its mean pattern, the empty capillary
    measured in another entry of the same geometry subtracted; another geometry refused."""
    import h5py

    from bliss_lite.processing.jobs import call_plugin, load_plugins

    load_plugins()
    q, sample, empty = capillary
    path = tmp_path / "static.h5"
    _static_entry(path, "1.1", q, sample)
    _static_entry(path, "2.1", q, empty)
    _static_entry(path, "3.1", q, empty, poni="config/xrdct/pilatus2m.poni")  # 0.35 m, another energy
    options = {"composition": "CeO2", "rmax": 20.0, "background": {"filename": str(path), "entry": "2.1"}}
    out = call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": options})
    assert out["kind"] == "static"
    with h5py.File(path) as h5:
        gr, r = h5["1.1/pdf/gr/G"][()], h5["1.1/pdf/gr/r"][()]
        assert h5["1.1/pdf/gr/r"].attrs["units"] == "A" and h5["1.1/pdf/sq/Q"].attrs["units"] == "A^-1"
        assert json.loads(h5["1.1/pdf/configuration"][()])["composition"] == "CeO2"
    window = r >= 1.0
    assert np.corrcoef(gr[window], reference("CeO2_powder", r)[window])[0, 1] >= 0.95
    with pytest.raises(ValueError, match="background.*geometry"):
        call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1",
                                 "pdf": {**options, "background": {"filename": str(path), "entry": "3.1"}}})
    with pytest.raises(ValueError, match="composition"):
        call_plugin("pdf_scan", {"filename": str(path), "entry": "1.1", "pdf": {"rmax": 20.0}})
