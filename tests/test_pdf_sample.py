"""The PDF-CT sample: Debye scattering from atom positions, checked against analytic cases, and
frames through the total-scattering geometry."""
import numpy as np
import pytest

from bliss_lite.controllers.sample import debye, structures
from bliss_lite.data.atomic_scattering import averages, compton, form_factor, parse_composition


def test_debye_sum_of_a_dimer_is_the_analytic_one():
    d = 1.098
    q = np.linspace(0.1, 30.0, 500)
    f = form_factor("N", q)
    expected = f ** 2 * (1 + np.sin(q * d) / (q * d))  # per atom: (2 f^2 + 2 f^2 sinc(Q d)) / 2
    got = debye.coherent_intensity(structures.dimer("N", d), q)
    assert np.max(np.abs(got - expected) / expected) < 1e-3


def test_form_factors_and_compton_come_from_the_database():
    q = np.array([0.0, 25.0])
    assert form_factor("Ce", q)[0] == pytest.approx(58, abs=0.1)  # f0(0) = Z
    assert compton("O", q)[0] == pytest.approx(0.0, abs=0.05)  # no Compton forward ...
    assert compton("O", q)[1] == pytest.approx(8.0, abs=0.3)  # ... all Z electrons at high Q
    f, f2, _ = averages("SiO2", np.array([0.0]))
    assert f[0] == pytest.approx((14 + 16) / 3, abs=0.05) and f2[0] == pytest.approx((196 + 128) / 3, abs=0.5)
    assert parse_composition("Ce1O2") == {"Ce": 1.0, "O": 2.0}
    with pytest.raises(ValueError, match="composition"):
        parse_composition("Xx2")


@pytest.mark.parametrize("build, distance", [
    (structures.silica_glass, 1.61),  # Si-O
    (structures.fcc_particle, 3.524 / np.sqrt(2)),  # Ni-Ni
    (structures.fluorite_crystal, 5.411 * np.sqrt(3) / 4),  # Ce-O
])
def test_reference_gr_has_its_first_peak_at_the_bond_length(build, distance):
    st = build()
    r = np.arange(1.0, 4.0, 0.001)
    g = debye.reference_gr(st, r)
    first = r[np.argmax(np.where(r < distance + 0.3, g, -np.inf))]
    assert abs(first - distance) < 0.01


def test_silica_network_distances():
    st = structures.silica_glass()
    r, hist = debye.pair_histograms(st)
    near = r < 3.5
    peak = {pair: r[near][np.argmax(h[near])] for pair, h in hist.items()}
    assert peak[("Si", "O")] == pytest.approx(1.61, abs=0.005)
    assert peak[("Si", "Si")] == pytest.approx(3.10, abs=0.01)
    mean_oo = np.average(r[(r > 2.2) & (r < 3.0)], weights=hist[("O", "O")][(r > 2.2) & (r < 3.0)])
    assert mean_oo == pytest.approx(2.63, abs=0.06)
    assert st.formula == "SiO2"


def test_frames_of_the_pdf_sample_reach_q_25_and_hold_air():
    from bliss_lite.controllers.detectors.pilatus_geometry import Roi
    from bliss_lite.controllers.sample.pdf_sample import PdfctSample

    sample = PdfctSample("s", None, None, None, "config/pdfct/pilatus2m_pdf.poni", flux=2e6, seed=1)
    assert sample.energy_kev == pytest.approx(90.0, abs=0.1)
    roi = Roi(848, 100, 96, 1375)
    model = sample.model(roi)
    assert float(model.q.max()) / 10 > 30.0  # 1/A
    inside, _, lengths = model.expected(-0.35, 0.0, 0.0, 0.01)
    sample.specimen = "air"
    outside, _, _ = sample.model(roi).expected(0.0, 0.0, 0.0, 0.01)
    assert lengths["SiO2_glass"] > 0.5 and outside.max() > 0 and inside.sum() > 10 * outside.sum()
    description = PdfctSample("s", None, None, None, "config/pdfct/pilatus2m_pdf.poni").description()
    assert set(description["pdf"]["phases"]) == {"SiO2_glass", "Ni_nano", "CeO2"}
    with pytest.raises(ValueError, match="specimen"):
        sample.specimen = "bucket"
