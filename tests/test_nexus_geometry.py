"""The detector geometry and the wavelength as standard NeXus fields in the raw entry, written
when the scan starts: a scan without processing, or killed before any, holds them, and pyFAI
builds the PONI's geometry from those fields alone (not from the project's own poni/ copy)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest


def chain(h5, detector):
    """[(name, type, vector, value, units)] of the NXtransformations a detector depends on, in
    the order NeXus applies them (the detector's own first)."""
    links, path = [], detector["depends_on"].asstr()[()]
    while path != ".":
        field = h5[path]
        links.append((path.split("/")[-1], field.attrs["transformation_type"], tuple(field.attrs["vector"]),
                      float(field[()]), field.attrs["units"]))
        path = field.attrs["depends_on"]
    return links


def rotation(vector, angle):
    axis = np.asarray(vector, float) / np.linalg.norm(vector)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def pixel_positions(h5, detector, rows, columns):
    """NeXus lab coordinates (x, y, z) of the given pixels' centres: their offsets placed by the
    transformation chain, as any NeXus reader does."""
    points = np.stack([detector["x_pixel_offset"][()][columns], detector["y_pixel_offset"][()][rows],
                       np.zeros(len(rows))])
    for _, kind, vector, value, units in chain(h5, detector):
        assert units in ("m", "rad")
        if kind == "translation":
            points = points + np.asarray(vector, float)[:, None] / np.linalg.norm(vector) * value
        else:
            points = rotation(vector, value) @ points
    return points


def pyfai_from_nexus_fields(detector, monochromator, shape):
    """pyFAI's integrator from the standard fields alone: pixel sizes, the direct-beam distance
    and centre (pyFAI's Fit2D conversion), the rotations of the chain, the wavelength."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    assert detector["x_pixel_size"].attrs["units"] == detector["y_pixel_size"].attrs["units"] == "m"
    assert detector["beam_center_x"].attrs["units"] == detector["beam_center_y"].attrs["units"] == "pixel"
    assert detector["distance"].attrs["units"] == "m" and monochromator["wavelength"].attrs["units"] == "Angstrom"
    pixel1, pixel2 = float(detector["y_pixel_size"][()]), float(detector["x_pixel_size"][()])
    ai = AzimuthalIntegrator(detector=Detector(pixel1, pixel2, max_shape=shape),
                             wavelength=float(monochromator["wavelength"][()]) * 1e-10)
    ai.setFit2D(float(detector["distance"][()]) * 1e3, float(detector["beam_center_x"][()]),
                float(detector["beam_center_y"][()]), pixelX=pixel2 * 1e6, pixelY=pixel1 * 1e6)
    return ai


def test_a_raw_xrdct_killed_before_any_processing_holds_the_geometry_pyfai_rebuilds(scan_session, shared_redis,
                                                                                    data_root, tmp_path):
    """An xrdct with hooks=[] killed during its fourth line: its entry (never closed) holds the
    detector's distance, pixel size, beam centre and the NXtransformations of its placement
    with units, and the wavelength and energy; pyFAI built from these fields equals the
    PONI's geometry of the recorded ROI, pixel for pixel."""
    import pyFAI

    from bliss_lite.data.safe_open import open_hdf5
    from tests.test_resume import _killed_scan

    filename = _killed_scan(data_root, shared_redis, tmp_path / "run2", lines_before_kill=3)
    with open_hdf5(filename) as h5:
        entry = h5["1.1"]
        assert entry["end_reason"][()] == b""  # killed: never closed, nothing integrated
        assert "integrate" not in entry
        info = json.loads(entry["scan_info"][()])
        detector, mono = entry["instrument/pilatus"], entry["instrument/monochromator"]
        assert mono.attrs["NX_class"] == "NXmonochromator" and mono["energy"].attrs["units"] == "keV"
        energy = float(mono["energy"][()])
        shape = detector["data"].shape[1:]
        rebuilt = pyfai_from_nexus_fields(detector, mono, shape)
        links = chain(h5, detector)
        assert [(n, kind, v) for n, kind, v, _, _ in links] == [
            ("distance", "translation", (0, 0, 1)), ("rot1", "rotation", (0, -1, 0)), ("rot2", "rotation", (1, 0, 0)),
            ("rot3", "rotation", (0, 0, 1))]
        rotations = {name: value for name, _, _, value, _ in links[1:]}
        rows, columns = np.array([0, 7, shape[0] - 1]), np.array([0, 100, shape[1] - 1])
        placed = pixel_positions(h5, detector, rows, columns)

    full = pyFAI.load(info["sample"]["poni"])  # the PONI file the sample names
    row, column, n_rows, n_columns = info["xrdct"]["roi"]
    assert (n_rows, n_columns) == shape
    assert rebuilt.dist == pytest.approx(full.dist, rel=1e-12)
    assert rebuilt.poni1 == pytest.approx(full.poni1 - row * full.detector.pixel1, abs=1e-12)
    assert rebuilt.poni2 == pytest.approx(full.poni2 - column * full.detector.pixel2, abs=1e-12)
    assert rebuilt.wavelength == pytest.approx(full.wavelength, rel=1e-12)
    assert rotations == pytest.approx({"rot1": full.rot1, "rot2": full.rot2, "rot3": full.rot3}, abs=1e-15)
    assert energy == pytest.approx(full.energy, rel=1e-9)  # keV
    window = (slice(row, row + n_rows), slice(column, column + n_columns))
    # pyFAI computes pixel positions in float32: 1e-6 rad is a five-hundredth of a pixel here
    np.testing.assert_allclose(rebuilt.twoThetaArray(), full.twoThetaArray()[window], rtol=0, atol=1e-6)
    z, y, x = full.calc_pos_zyx(d1=rows + row, d2=columns + column)
    np.testing.assert_allclose(placed, np.stack([-x, y, z]), atol=1e-12)  # pyFAI's axis 2 is NeXus's -x


def test_a_tilted_detector_is_placed_by_its_transformations_as_pyfai_places_it(tmp_path):
    """Rotations written as NXtransformations: each pixel's position from the chain equals
    pyFAI's; pyFAI built from the chain's distance and rotations and the pixel offsets
    equals the geometry written; the integration writes them again over the raw ones."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from bliss_lite.data.nexus_parts import write_detector_geometry
    from bliss_lite.processing.nexus_geometry import write_geometry

    geometry = AzimuthalIntegrator(dist=0.21, poni1=0.031, poni2=0.044, rot1=0.05, rot2=-0.08, rot3=0.3,
                                   detector=Detector(100e-6, 172e-6, max_shape=(300, 400)), wavelength=0.7e-10)
    with h5py.File(tmp_path / "tilted.h5", "w") as h5:
        entry = h5.create_group("1.1")
        instrument = entry.create_group("instrument")
        detector = instrument.create_group("pilatus")
        detector.attrs["NX_class"] = "NXdetector"
        detector.create_dataset("data", shape=(2, 300, 400), dtype=np.int32)
        flat = AzimuthalIntegrator(dist=0.5, poni1=0.01, poni2=0.01, detector=geometry.detector, wavelength=1e-10)
        write_detector_geometry(instrument, detector, flat)  # as the scan starts: replaced below
        write_geometry(entry, geometry.get_config())
        links = chain(h5, detector)
        rows, columns = np.array([0, 150, 299, 17]), np.array([0, 399, 200, 3])
        placed = pixel_positions(h5, detector, rows, columns)
        values = {name: value for name, _, _, value, _ in links}
        pixel1, pixel2 = detector["y_pixel_size"][()], detector["x_pixel_size"][()]
        rebuilt = AzimuthalIntegrator(dist=values["distance"], rot1=values["rot1"], rot2=values["rot2"],
                                      rot3=values["rot3"], poni1=0.5 * pixel1 - detector["y_pixel_offset"][0],
                                      poni2=detector["x_pixel_offset"][0] + 0.5 * pixel2,
                                      detector=Detector(pixel1, pixel2, max_shape=(300, 400)),
                                      wavelength=instrument["monochromator/wavelength"][()] * 1e-10)
        assert instrument["monochromator/energy"][()] == pytest.approx(geometry.energy, rel=1e-9)
    z, y, x = geometry.calc_pos_zyx(d1=rows, d2=columns)
    np.testing.assert_allclose(placed, np.stack([-x, y, z]), atol=1e-12)
    for key in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert getattr(rebuilt, key) == pytest.approx(getattr(geometry, key), rel=1e-12, abs=1e-15), key
    np.testing.assert_allclose(rebuilt.twoThetaArray(), geometry.twoThetaArray(), rtol=0, atol=1e-6)  # float32 positions


def test_frames_of_an_unknown_roi_get_the_wavelength_alone(tmp_path):
    """The frames' shape is neither the whole detector's nor a recorded ROI's: where their
    pixels lie is unknown, so only the whole detector's geometry comes back (for the beam)."""
    from bliss_lite.data.nexus_parts import frames_geometry
    from tests.conftest import CONFIG_DIR

    poni = CONFIG_DIR / "xrdct" / "pilatus2m.poni"
    whole, full = frames_geometry(poni)
    assert whole is full and whole.detector.shape == (1679, 1475) and whole.dist == pytest.approx(0.35)
    roi, _ = frames_geometry(poni, (816, 700, 48, 160), (48, 160))
    assert roi.detector.shape == (48, 160) and roi.poni1 == pytest.approx(full.poni1 - 816 * 172e-6)
    unknown, full = frames_geometry(poni, None, (48, 160))
    assert unknown is None and full.wavelength == pytest.approx(1.4e-11)


@pytest.mark.parametrize("extra, placed", [({"roi": [816, 700, 48, 160]}, True), ({}, False)])
def test_the_writer_places_frames_of_a_recorded_roi_and_gives_the_wavelength_alone_else(tmp_path, extra, placed):
    """A frame channel that records its ROI gets the geometry of those pixels; frames of a
    ROI nobody recorded (48 x 160 of a 1679 x 1475 detector) get the wavelength alone."""
    import pyFAI

    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter
    from tests.conftest import CONFIG_DIR

    poni = CONFIG_DIR / "xrdct" / "pilatus2m.poni"
    spec = ChannelSpec("pilatus", "int32", (48, 160), "counts", encoding="bslz4", extra=extra)
    writer = EntryWriter(tmp_path / "roi.h5", 1, title="fscan", counters=[spec], scan_info={"sample": {"poni": str(poni)}},
                         npoints=2)
    writer.close()
    full = pyFAI.load(str(poni))
    with h5py.File(tmp_path / "roi.h5", "r") as h5:
        instrument = h5["1.1/instrument"]
        assert instrument["monochromator/wavelength"][()] == pytest.approx(full.wavelength * 1e10, rel=1e-12)
        detector = instrument["pilatus"]
        assert ("distance" in detector, "transformations" in detector, "poni" in detector) == (placed,) * 3
        if placed:
            rebuilt = pyfai_from_nexus_fields(detector, instrument["monochromator"], (48, 160))
            assert rebuilt.poni1 == pytest.approx(full.poni1 - 816 * full.detector.pixel1, abs=1e-12)
            assert rebuilt.poni2 == pytest.approx(full.poni2 - 700 * full.detector.pixel2, abs=1e-12)
            assert rebuilt.dist == pytest.approx(full.dist, rel=1e-12)


def test_an_fscan_of_a_roi_holds_the_geometry_of_its_frames(scan_session):
    """fscan records where its frames sit on the detector (the frame channel's ROI): its raw
    entry has the distance and the beam centre of those frames, as pyFAI places them."""
    import pyFAI

    from bliss_lite.data.safe_open import open_hdf5

    ns = scan_session
    pilatus = ns["pilatus"]
    scan = ns["fscan"](ns["omega"], 0.0, 3.0, 4, 0.01, pilatus)
    row, column, n_rows, n_columns = pilatus.roi.row, pilatus.roi.column, pilatus.roi.rows, pilatus.roi.columns
    with open_hdf5(scan.filename) as h5:
        entry = h5[scan.entry]
        info = json.loads(entry["scan_info"][()])
        detector, mono = entry["instrument/pilatus"], entry["instrument/monochromator"]
        assert detector["data"].shape[1:] == (n_rows, n_columns)
        rebuilt = pyfai_from_nexus_fields(detector, mono, (n_rows, n_columns))
    full = pyFAI.load(info["sample"]["poni"])
    assert rebuilt.dist == pytest.approx(full.dist, rel=1e-12)
    assert rebuilt.poni1 == pytest.approx(full.poni1 - row * full.detector.pixel1, abs=1e-12)
    assert rebuilt.poni2 == pytest.approx(full.poni2 - column * full.detector.pixel2, abs=1e-12)
    assert rebuilt.wavelength == pytest.approx(full.wavelength, rel=1e-12)
