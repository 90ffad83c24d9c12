"""Resuming an interrupted XRD-CT scan: measure only the sweep lines its file lacks.

After SIGKILL of the process, an abort or a failure, scan N's entries (N.1, and N.2, ... of
earlier resumes) hold some complete sweep lines: those whose every grid point has a valid
frame (`measurement/<det>_valid`; a line cut short, or whose flags never reached the file,
counts as not measured). `xrdct(..., resume=(file, "N.1"))` and `resume_scan(file, "N.1")`
plan the scan as it was, check that nothing differs from what the file recorded (the grid,
the count time, the stages, the detector and its ROI, the sample), and measure the other
lines, in their original order and directions, into the continuation entry N.k (BLISS's
numbering of sub-scans), with its own data files (`sample_scan000N_k/`). The reduction takes
the entries as one dataset (processing/continuation.py).

The master file of a killed writer is still marked open for writing: the mark is cleared
(data/file_marks.py) before the continuation entry is added, so resume only once the scan's
process is gone.
"""
from __future__ import annotations

import json
import re

import numpy as np

from bliss_lite.config.session import current_session
from bliss_lite.data.file_marks import clear_write_mark, write_mark
from bliss_lite.data.safe_open import open_hdf5

BLOCK = 1 << 18  # frames read at a time
COMPARED = ("n_x", "n_omega", "z_positions", "x_start", "x_stop", "omega_range", "fast_axis", "snake", "detector",
            "roi")


def scan_number(entry):
    """N of entry "N.k"."""
    match = re.fullmatch(r"(\d+)\.(\d+)", str(entry))
    if match is None:
        raise ValueError(f"resume: entry must be like '3.1', got {entry!r}")
    return int(match.group(1))


def scan_entries(filename, number):
    """The entries of scan `number` in the file, N.1 first: ["3.1", "3.2", ...]."""
    with open_hdf5(filename) as h5:
        subs = sorted(int(m.group(1)) for name in h5 if (m := re.fullmatch(rf"{number}\.(\d+)", name)))
    return [f"{number}.{s}" for s in subs]


def recorded_info(filename, entry):
    """The scan_info the entry recorded (JSON)."""
    with open_hdf5(filename) as h5:
        if entry not in h5:
            raise ValueError(f"resume: {filename} has no entry {entry}")
        return json.loads(h5[f"{entry}/scan_info"][()])


def line_keys(info, omega, x, z):
    """(z index, stepped-axis index, fast-axis index) of frames at these read-backs, on the
    grid of scan_info["xrdct"] (nearest point)."""
    n_x, n_omega = int(info["n_x"]), int(info["n_omega"])
    x_mid = info["x_start"] + (np.arange(n_x) + 0.5) * (info["x_stop"] - info["x_start"]) / n_x
    omega_mid = (np.arange(n_omega) + 0.5) * info["omega_range"] / n_omega
    zs = np.asarray(info["z_positions"], float)
    nearest = lambda values, axis: np.abs(np.asarray(values, float)[:, None] - axis[None, :]).argmin(axis=1)  # noqa: E731
    iz, ix, io = nearest(z, zs), nearest(x, x_mid), nearest(omega, omega_mid)
    return (iz, ix, io) if info["fast_axis"] == "omega" else (iz, io, ix)


def measured_lines(filename, entries, info):
    """{(z index, stepped index)} of the lines complete among the valid frames of `entries`."""
    fast = int(info["n_omega"] if info["fast_axis"] == "omega" else info["n_x"])
    filled = {}
    with open_hdf5(filename) as h5:
        for entry in entries:
            measurement = h5[f"{entry}/measurement"]
            valid_name = next((n for n in measurement if n.endswith("_valid")), None)
            if valid_name is None:
                continue  # no flags: an entry written before suspenders existed cannot be trusted line by line
            valid = measurement[valid_name]
            count = min(len(valid), *(len(measurement[a]) for a in ("omega", "x", "z")))
            for first in range(0, count, BLOCK):
                last = min(first + BLOCK, count)
                keep = np.asarray(valid[first:last], bool)
                if not keep.any():
                    continue
                iz, istep, ifast = line_keys(info, *(measurement[a][first:last][keep] for a in ("omega", "x", "z")))
                for key, cell in zip(zip(iz.tolist(), istep.tolist()), ifast.tolist()):
                    filled.setdefault(key, set()).add(cell)
    return {key for key, cells in filled.items() if len(cells) == fast}


def differences(recorded, planned):
    """What differs between the recorded scan and the one planned now, as text."""
    found = []
    old, new = recorded.get("xrdct", {}), planned.get("xrdct", {})
    for key in COMPARED:
        a, b = old.get(key), new.get(key)
        if isinstance(a, list) or isinstance(b, list):
            same = a is not None and b is not None and len(a) == len(b) and np.allclose(a, b, rtol=0, atol=1e-9)
        elif isinstance(a, float) or isinstance(b, float):
            same = a is not None and b is not None and abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
        else:
            same = a == b
        if not same:
            found.append(f"{key} {b!r} now, {a!r} in the file")
    for key in ("count_time", "motors"):
        if recorded.get(key) != planned.get(key):
            found.append(f"{key} {planned.get(key)!r} now, {recorded.get(key)!r} in the file")
    sample_old, sample_new = recorded.get("sample"), planned.get("sample")
    if sample_old is not None and sample_new is not None and sample_old != sample_new:
        found.append("the sample description differs")
    return found


def plan_continuation(command, resume, info, lines, keys, count_time, axes):
    """(lines still to measure, each with its index in the original plan; the continuation:
    {filename, number, sub, entries}). Refuses, naming what differs, a scan that does not
    match the file, and one with nothing left to measure."""
    if isinstance(resume, (tuple, list)) and len(resume) == 2:
        filename, entry = str(resume[0]), str(resume[1])
    elif isinstance(resume, str):
        session = current_session()
        if session is None or session.scan_context is None:
            raise ValueError(f"{command}: resume='{resume}' needs a session (or give (filename, entry))")
        filename, entry = str(session.scan_context.saving().filename), resume
    else:
        raise TypeError(f"{command}: resume must be (filename, entry) or an entry of the session's file, "
                        f"got {resume!r}")
    number = scan_number(entry)
    entries = scan_entries(filename, number)
    if f"{number}.1" not in entries:
        raise ValueError(f"{command}: cannot resume: {filename} has no entry {number}.1")
    recorded = recorded_info(filename, f"{number}.1")
    if "xrdct" not in recorded:
        raise ValueError(f"{command}: cannot resume {filename} entry {number}.1: it is not an xrdct scan")
    planned = {"xrdct": info["xrdct"], "count_time": count_time, "motors": [a.name for a in axes],
               "sample": info.get("sample")}
    found = differences(recorded, planned)
    if found:
        raise ValueError(f"{command}: cannot resume {filename} entry {number}.1 with other settings: "
                         + "; ".join(found))
    done = measured_lines(filename, entries, info["xrdct"])
    left = [(k, line) for k, (line, key) in enumerate(zip(lines, keys)) if key not in done]
    if not left:
        raise ValueError(f"{command}: {filename} scan {number} ({', '.join(entries)}) has every line measured: "
                         f"nothing to resume")
    sub = max(int(e.split(".")[1]) for e in entries) + 1
    return left, {"filename": filename, "number": number, "sub": sub, "entries": entries,
                  "lines_done": len(done), "lines": len(lines)}


def open_for_continuation(filename):
    """Clear the write mark a killed writer left (the scan's process must be gone)."""
    if write_mark(filename):
        clear_write_mark(filename)
