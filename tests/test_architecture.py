"""The seams of docs/architecture.md hold: no import cycles, protocols that the shipped devices
implement, one ScanContext per session, hooks handed in by whoever opens the session, and
reduction that takes its phases from what the scan recorded, never from the simulator."""
import json

import grimp
import h5py
import numpy as np
import pytest

from bliss_lite.controllers.detectors.pilatus import Pilatus2M
from bliss_lite.controllers.detectors.pilatus_remote import RemotePilatus
from bliss_lite.protocols import Axis, Backend, Counter, Detector, EndReason, MeasurementGroup, Sample, ScanState


def test_no_module_imports_one_that_imports_it_back():
    """Imports inside functions count too (grimp reads every import statement); a cycle is a
    set of modules that reach each other (a strongly connected component of the import graph)."""
    graph = grimp.build_graph("bliss_lite", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    reaches = {}
    for start in edges:  # modules reachable from each module (the graph is ~120 modules)
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reaches[start] = seen
    components = {tuple(sorted(m for m in reaches[a] if a in reaches[m])) for a in edges if a in reaches[a]}
    assert sorted(c for c in components if len(c) > 1) == []  # a module may name itself (a __main__ block)


def test_enums_equal_the_words_stored_in_files_and_redis():
    assert EndReason.USER_ABORT == "USER_ABORT" and json.dumps(EndReason.SUCCESS) == '"SUCCESS"'
    assert f"{ScanState.CLOSED}" == "CLOSED" and Backend("gpu") is Backend.GPU
    with pytest.raises(ValueError):
        Backend("tpu")


def test_shipped_objects_implement_the_protocols(test_session):
    ns = test_session
    assert isinstance(ns["pilatus"], Detector) and isinstance(ns["xrdct_sample"], Sample)
    assert isinstance(ns["m0"], Axis) and not isinstance(ns["diode1"], Axis)
    assert isinstance(ns["diode1"], Counter) and isinstance(ns["test_mg"], MeasurementGroup)
    # the simulator and the TCP driver are siblings: neither is built on the other
    assert not issubclass(RemotePilatus, Pilatus2M) and not issubclass(Pilatus2M, RemotePilatus)
    remote = RemotePilatus("remote", "127.0.0.1:1")
    remote.rate_cap = 100.0  # max_rate then needs no connection
    assert isinstance(remote, Detector) and remote.min_latency == Pilatus2M.min_latency


def test_each_session_has_its_own_scan_context(scan_session):
    from bliss_lite.shell.runner import open_session

    first = scan_session
    first["ascan"](first["m0"], 4, 6, 10, 0.001, first["gauss"])
    first["plotselect"]("gauss")
    context = first["SESSION"].scan_context
    assert first["SCANS"] is context.scans and len(context.scans) == 1
    assert context.selected_counter() == "gauss" and first["SCANS"][-1].context is context

    session, second = open_session("test")
    assert session.scan_context is not context
    assert len(second["SCANS"]) == 0 and session.scan_context.selected_counter() is None
    second["ct"](0.001, second["diode1"])
    assert len(second["SCANS"]) == 1 and len(first["SCANS"]) == 1  # nothing crosses sessions
    closed = []
    session.scan_context.on_close(lambda: closed.append("workers stopped"))
    session.close()
    assert closed == ["workers stopped"]


def test_the_active_measurement_group_belongs_to_its_session(test_session):
    from bliss_lite.controllers.counters.measurement_group import active_mg
    from bliss_lite.shell.runner import open_session

    session, ns = open_session("test")
    assert active_mg() is ns["test_mg"] and session.active_mg is ns["test_mg"]
    assert test_session["SESSION"].active_mg is test_session["test_mg"]  # its own group, not the new one's
    assert test_session["test_mg"] is not ns["test_mg"]


def test_an_xrdct_with_hooks_needs_a_session_opened_with_processing(scan_session):
    ns = scan_session
    omega, x, z = ns["omega"], ns["x"], ns["z"]
    ns["SESSION"].scan_context.make_hooks = None  # as a session opened without the processing layer
    before = list(ns["SCANS"])
    with pytest.raises(ValueError, match=r"xrdct: hooks \['integration'\] asked for, but this session was opened "
                                         r"without processing"):
        ns["xrdct"](omega, x, z, -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x", hooks=["integration"])
    assert list(ns["SCANS"]) == before and (omega.position, x.position, z.position) == (0.0, 0.0, 0.0)
    scan = ns["xrdct"](omega, x, z, -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x", hooks=[])  # it runs
    assert scan.end_reason == "SUCCESS" and [h.name for h in scan.hooks] == ["sweep_report"]  # no processing


def test_reduction_takes_the_phases_the_scan_recorded(scan_session):
    """The scan records its sample's description; the reconstruction uses its phases. An entry
    that recorded none is refused offline until the job names the phases."""
    from bliss_lite.processing.reconstruction_hook import make_reconstruction_hook
    from bliss_lite.processing.scan_plugins import reconstruct_scan

    ns = scan_session
    recorded = ns["xrdct_sample"].description()
    assert recorded["phases"] == {p.name: p.calibrant for p in ns["xrdct_sample"].phantom.phases}
    assert recorded["peak_fwhm_unit"] == "nm^-1" and recorded["poni"].endswith(".poni")
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0], 0.008, n_omega=6, fast_axis="x",
                       hooks={"integration": {"workers": 0, "npt": 200}, "reconstruction": {}})
    assert scan.scan_info["sample"] == recorded
    assert scan.hook("reconstruction").phases == recorded["phases"]
    job = {"filename": scan.filename, "entry": scan.entry}
    assert sorted(reconstruct_scan(job)["phases"]) == sorted(recorded["phases"])  # offline: the recorded sample's
    assert reconstruct_scan({**job, "reconstruction": {"phases": {"ceria": "CeO2"}}})["phases"] == ["ceria"]
    assert sorted(reconstruct_scan(job)["phases"]) == sorted(recorded["phases"])  # not the last job's
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert json.loads(h5[f"{scan.entry}/scan_info"][()])["sample"] == recorded

    with pytest.raises(ValueError, match="the scan recorded no sample with phases"):
        make_reconstruction_hook({}, {"scan_info": {"xrdct": {}}})

    with h5py.File(scan.filename, "a", locking=False) as h5:  # an entry as a real detector would leave it
        info = json.loads(h5[f"{scan.entry}/scan_info"][()])
        del info["sample"]
        del h5[f"{scan.entry}/scan_info"]
        h5[f"{scan.entry}/scan_info"] = json.dumps(info)
    job = {"filename": scan.filename, "entry": scan.entry}
    with pytest.raises(ValueError, match=r"recorded no sample phases: give reconstruction.phases"):
        reconstruct_scan(job)  # an earlier reconstruction's phases are no source: the job or the sample only
    result = reconstruct_scan({**job, "reconstruction": {"phases": {"ceria": "CeO2"}}})
    assert result["phases"] == ["ceria"]
    with h5py.File(scan.filename, "r", locking=False) as h5:
        process = h5[f"{scan.entry}/reconstruct"]
        maps = [k for k in process if isinstance(process[k], h5py.Group) and k != "volume"]
        assert maps == ["ceria", "residual"] and json.loads(process["configuration"][()])["phases"] == {"ceria": "CeO2"}
        ceria = process["ceria/map"][()]
        assert ceria.shape[0] == 1 and np.isfinite(ceria).all() and ceria.max() > 0
