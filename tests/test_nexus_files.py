"""The NeXus files other programs use without hand-work: pyFAI rebuilds the integrator from the
file alone, every dataset carries its units, i0 and it are monitors, the sample is an NXsample
with its stages, and silx opens each entry on what the scan is for: an XRD-CT on its phase maps,
a mesh as an image, a step scan on its selected counter."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest


@pytest.fixture
def xrdct_file(scan_session):
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -1, 1, 8, [0.0], 0.015, n_omega=8, fast_axis="x",
                       hooks={"integration": {"workers": 0, "npt": 200}, "reconstruction": {}})
    return scan, scan.hook("integration")


def test_an_xrdct_file_is_usable_by_pyfai_and_silx(xrdct_file):
    """One scan (they are slow here): each check below is its own function."""
    pyfai_rebuilds_the_integrator_from_the_file(xrdct_file)
    reduced_datasets_carry_units_and_frame_axes(xrdct_file)
    silx_opens_an_xrdct_entry_on_its_phase_maps(xrdct_file)
    monitors_and_sample_are_described(xrdct_file)
    assert punx_findings(xrdct_file[0].filename) == []


# punx's known false positives, each with why it is allowed:
KNOWN = (
    ("ERROR", "validItemName", r"/\d+\.\d+$"),  # entry names "1.1": an old strict name rule; BLISS and the contract use them
    ("WARN", "validItemName", r"NXcollection contains non-NeXus content"),  # NXcollection is free-form by definition
    ("WARN", "", r"\."),  # "." in @axes: NeXus's own placeholder for an axis without coordinates
)


def punx_findings(path):
    """ERROR and WARN lines of `punx validate` on a file, less the known false positives."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    punx = Path(sys.executable).with_name("punx")
    if not punx.exists():
        pytest.skip("punx is not installed (pip install punx: the test extras)")
    report = subprocess.run([str(punx), "validate", str(path)], capture_output=True, text=True, timeout=300).stdout
    findings = []
    for line in report.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in ("ERROR", "WARN"):
            continue
        if any(parts[1] == status and test in line and (re.search(pattern, parts[0]) or re.search(pattern, line))
               for status, test, pattern in KNOWN[:2]):
            continue
        if parts[0].endswith("@axes") and re.search(KNOWN[2][2], line):
            continue
        findings.append(" ".join(parts))
    return findings


def without_units(group):
    """Numeric datasets of a group that carry no units, following soft and external links and
    each Virtual Dataset into its sources (the data files' frames, the reduction files'
    patterns, volume and maps): a source is named "file::dataset"."""
    from bliss_lite.data.safe_open import open_hdf5

    missing, seen = [], set()
    folder = Path(group.file.filename).parent

    def check(name, dataset):
        if dataset.dtype.kind in "biuf" and "units" not in dataset.attrs:
            missing.append(name)

    def visit(name, item):
        key = (item.file.filename, item.name)
        if key in seen:
            return
        seen.add(key)
        if isinstance(item, h5py.Group):
            for child in item:
                visit(f"{name}/{child}", item[child])  # item[child] follows soft and external links
            return
        check(name, item)
        if item.is_virtual:
            for source in {(s.file_name, s.dset_name) for s in item.virtual_sources()}:
                path = Path(item.file.filename) if source[0] == "." else folder / source[0]
                with open_hdf5(path) as h5:  # SWMR: a killed scan's data file is still marked open
                    check(f"{source[0]}::{source[1]}", h5[source[1]])

    for child in group:
        visit(child, group[child])
    return missing


def test_step_scans_open_on_their_plot_with_units_and_pass_punx(scan_session):
    """ascan, a2scan, amesh, dmesh (back and forth), loopscan, timescan: punx finds only the known
    false positives; every number has units; silx opens each on its default plot: the selected
    counter of a step scan, the image of a mesh with both motors as axes."""
    from silx.io.nxdata import get_default

    ns = scan_session
    ns["plotselect"](ns["diode2"])
    counters = (ns["diode1"], ns["diode2"])
    scans = {"ascan": ns["ascan"](ns["m0"], 0, 1, 4, 0.001, *counters),
             "a2scan": ns["a2scan"](ns["m0"], 0, 1, ns["m1"], 1, 2, 3, 0.001, *counters),
             "amesh": ns["amesh"](ns["m0"], 0, 1, 2, ns["m1"], 0, 1, 3, 0.001, *counters),
             "dmesh": ns["dmesh"](ns["m0"], -1, 1, 4, ns["m1"], 0, 1, 2, 0.001, *counters, backnforth=True),
             "loopscan": ns["loopscan"](3, 0.001, *counters), "timescan": ns["timescan"](0.001, *counters, npoints=3)}
    filename = scans["ascan"].filename
    assert all(scan.filename == filename for scan in scans.values())
    assert punx_findings(filename) == []
    with h5py.File(filename, "r") as h5:
        for kind, scan in scans.items():
            entry = h5[scan.entry]
            assert without_units(entry) == [], (kind, without_units(entry))
            assert entry["instrument/diode1/data"].attrs["units"] == "a.u."  # no unit configured: says so
            assert entry["sample"].attrs["NX_class"] == "NXsample" and entry["sample/name"].asstr()[()] == "sample"
            default = get_default(entry)
            assert default is not None and default.is_valid, kind
            if kind.endswith("mesh"):
                assert default.group.name == f"/{scan.entry}/mesh" and default.signal.name.endswith("/diode2")
                slow, fast = (n for n in ("m1", "m0"))
                assert [a.name.split("/")[-1] for a in default.axes] == [slow, fast]
                rows, cols = scan.scan_info["shape"]
                assert default.signal.shape == (rows, cols)
                flat = entry["measurement/diode2"][()].reshape(rows, cols)
                if kind == "dmesh":  # back and forth: every other line put back in order
                    flat[1::2] = flat[1::2, ::-1]
                    assert np.all(np.diff(default.axes[1][()]) > 0)
                np.testing.assert_array_equal(default.signal[()], flat)
                np.testing.assert_allclose(default.axes[0][()], entry["measurement/m1"][::cols])
            else:
                assert default.group.name == f"/{scan.entry}/plotselect", kind
                assert default.signal.ndim == 1 and default.signal.name.endswith("/diode2"), kind  # the selected one


def scan_commands():
    """Every scan the shell offers: its scan commands, less the peak tools and suspend_when."""
    from bliss_lite.scans.peaks import __all__ as peak_tools
    from bliss_lite.shell.scan_commands import __all__ as commands

    return set(commands) - set(peak_tools) - {"suspend_when"}


def test_every_scan_type_passes_punx_with_units_through_its_links(scan_session, shared_redis, data_root, tmp_path):
    """Each scan command of the shell (the step scans, ct and sct, fscan with its detector's VDS
    and `valid`, an xrdct with a line of invalid frames, the N.2 entry of a resumed xrdct with its reduction
    files) makes entries punx finds nothing wrong with beyond the known false positives, and
    every number, followed through links into the data and reduction files, has units."""
    from tests.test_resume import HOOKS, _killed_scan
    from tests.test_suspenders import _when

    ns = scan_session
    counters = (ns["diode1"], ns["diode2"])
    m0, m1 = ns["m0"], ns["m1"]
    makers = {
        "ct": lambda: ns["ct"](0.001, *counters, save=True), "sct": lambda: ns["sct"](0.001, *counters),
        "ascan": lambda: ns["ascan"](m0, 0, 1, 3, 0.001, *counters),
        "dscan": lambda: ns["dscan"](m0, -1, 1, 3, 0.001, *counters),
        "a2scan": lambda: ns["a2scan"](m0, 0, 1, m1, 1, 2, 3, 0.001, *counters),
        "d2scan": lambda: ns["d2scan"](m0, -1, 1, m1, 0, 1, 3, 0.001, *counters),
        "anscan": lambda: ns["anscan"]([(m0, 0, 1), (m1, 1, 2)], 3, 0.001, *counters),
        "dnscan": lambda: ns["dnscan"]([(m0, 0, 1), (m1, 1, 2)], 3, 0.001, *counters),
        "amesh": lambda: ns["amesh"](m0, 0, 1, 2, m1, 0, 1, 2, 0.001, *counters),
        "dmesh": lambda: ns["dmesh"](m0, -1, 1, 2, m1, 0, 1, 2, 0.001, *counters, backnforth=True),
        "lookupscan": lambda: ns["lookupscan"]([(m0, [0, 0.5, 1]), (m1, [1, 2, 3])], 0.001, *counters),
        "pointscan": lambda: ns["pointscan"](m0, [0, 0.5, 1], 0.001, *counters),
        "timescan": lambda: ns["timescan"](0.001, *counters, npoints=3),
        "loopscan": lambda: ns["loopscan"](3, 0.001, *counters),
        "fscan": lambda: ns["fscan"](ns["omega"], 0, 2, 12, 0.01, ns["pilatus"], ns["diode1"]),
        "xrdct": lambda: ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008, n_omega=6,
                                     fast_axis="x", hooks=[], suspenders=[floor]),
        "resume_scan": lambda: ns["resume_scan"](str(_killed_scan(data_root, shared_redis, tmp_path / "run2", 3)),
                                                 "1.1", hooks=HOOKS),
    }
    assert set(makers) == scan_commands()  # a new scan command is added here too
    floor = ns["suspend_when"](ns["ring_current"], below=10, resume_above=150, settle_s=0.05)
    scans = {}
    for command, make in makers.items():
        if command == "xrdct":  # a beam loss in its third line: that line's frames stay, marked invalid
            _when(ns, lambda s: s.data.count("pilatus") >= 9, lambda s: ns["ring"].lose_beam(0.3))
        scans[command] = make()
    assert scans["resume_scan"].entry == "1.2"
    files = {}
    for command, scan in scans.items():
        files.setdefault(scan.filename, []).append((command, scan.entry))
    assert len(files) == 2  # the session's file, and the killed scan's
    for filename, entries in files.items():
        assert punx_findings(filename) == [], filename
        with h5py.File(filename, "r", locking=False) as h5:
            if Path(filename).name == "killed.h5":
                entries.append(("xrdct killed", "1.1"))  # its raw entry, never closed
            for command, name in entries:
                entry = h5[name]
                assert entry.attrs["NX_class"] == "NXentry", command
                assert without_units(entry) == [], (command, without_units(entry))
            fscan = h5[scans["fscan"].entry] if filename == scans["fscan"].filename else None
            if fscan is not None:
                assert fscan["instrument/pilatus/data"].is_virtual and fscan["instrument/pilatus/valid"][()].all()
                xrdct = h5[scans["xrdct"].entry]
                valid = xrdct["instrument/pilatus/valid"][()]
                assert valid.sum() == 24 and len(valid) > 24 and xrdct["instrument/pilatus/data"].shape[0] == len(valid)
    with h5py.File(scans["resume_scan"].filename, "r", locking=False) as h5:
        sources = {s.file_name for s in h5["1.2/integrate/results/intensity"].virtual_sources()}
        assert sources == {"killed_scan0001_2/integrated.h5"}  # the units check went into it


def monitors_and_sample_are_described(xrdct_file):
    """i0 and it are NXmonitors; the NXsample names the sample and its stages, with the stages'
    positions as NXtransformations chained sample side first; every number has units."""
    scan, _ = xrdct_file
    with h5py.File(scan.filename, "r") as h5:
        entry = h5[scan.entry]
        instrument = entry["instrument"]
        assert instrument["i0"].attrs["NX_class"] == "NXmonitor" and instrument["it"].attrs["NX_class"] == "NXmonitor"
        assert instrument["i0/data"].attrs["units"] == "counts"
        sample = entry["sample"]
        assert sample.attrs["NX_class"] == "NXsample" and sample["name"].asstr()[()] == "xrdct_sample"
        assert sample["omega"].attrs["NX_class"] == "NXpositioner"  # a link to the stage's positions
        transformations = sample["transformations"]
        chain, path = [], sample["depends_on"].asstr()[()]
        while path != ".":
            field = h5[path]
            chain.append((path.split("/")[-1], field.attrs["transformation_type"], list(field.attrs["vector"])))
            path = field.attrs["depends_on"]
        assert chain == [("omega", "rotation", [0, 1, 0]), ("x", "translation", [1, 0, 0]),
                         ("z", "translation", [0, 1, 0])]
        np.testing.assert_array_equal(transformations["omega"][()], entry["measurement/omega"][()])
        assert transformations["x"].attrs["units"] == "mm"
        assert without_units(entry) == []


def pyfai_rebuilds_the_integrator_from_the_file(xrdct_file):
    from bliss_lite.processing.integrator import azimuthal_integrator
    from bliss_lite.processing.nexus_geometry import integrator_from_nexus

    scan, integration = xrdct_file
    rebuilt = integrator_from_nexus(scan.filename, scan.entry)
    expected, _ = azimuthal_integrator(integration.settings)
    got, want = rebuilt.get_config(), expected.get_config()
    for key in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), key
    assert rebuilt.detector.shape == expected.detector.shape
    np.testing.assert_allclose(rebuilt.array_from_unit(unit="q_nm^-1"), expected.array_from_unit(unit="q_nm^-1"),
                               rtol=1e-12)
    with h5py.File(scan.filename, "r") as h5:
        instrument = h5[f"{scan.entry}/instrument"]
        detector = instrument["pilatus"]
        assert detector["distance"][()] == pytest.approx(want["dist"]) and detector["distance"].attrs["units"] == "m"
        assert detector["x_pixel_size"][()] == pytest.approx(172e-6) and detector["sensor_material"].asstr()[()] == "CdTe"
        assert instrument["monochromator/energy"][()] == pytest.approx(88.56, rel=1e-3)  # 0.14 Angstrom
        assert instrument["monochromator/energy"].attrs["units"] == "keV"


def reduced_datasets_carry_units_and_frame_axes(xrdct_file):
    scan, _ = xrdct_file
    with h5py.File(scan.filename, "r") as h5:
        entry = h5[scan.entry]
        results = entry["integrate/results"]
        assert results["intensity"].attrs["units"] == "counts" and results["q"].attrs["units"] == "nm^-1"
        assert list(results.attrs["axes"]) == ["frame", "q"]
        np.testing.assert_array_equal(results["frame"][()], np.arange(results["intensity"].shape[0]))
        process = entry["reconstruct"]
        assert process["volume/data"].attrs["units"] == "counts/mm"
        for name in ("matrix", "CeO2", "residual"):
            assert process[f"{name}/map"].attrs["units"] == "a.u.", name


def silx_opens_an_xrdct_entry_on_its_phase_maps(xrdct_file):
    from silx.io.nxdata import get_default

    scan, _ = xrdct_file
    with h5py.File(scan.filename, "r") as h5:
        default = get_default(h5[scan.entry])
        assert default is not None and default.is_valid
        assert default.group.name == f"/{scan.entry}/reconstruct/{next(iter(scan.hook('reconstruction').phases))}"
        assert default.signal.ndim == 3 and [a.name.split("/")[-1] for a in default.axes] == ["z", "y", "x"]
