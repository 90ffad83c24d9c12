"""The parts of a scan's NXentry that other programs look for beyond the raw channels: units on
every dataset, the NXsample, and a default plot that shows what the scan is for.

- units: a channel's own; one that has none configured gets "1" (flags, frame numbers: things
  counted) or "a.u." (a value whose unit nobody gave), so no dataset is left without.
- NXsample `sample`: its name (the recorded sample description's, else the file's sample) and,
  where the description says how it is mounted (`stages`), links to the stages' NXpositioner
  groups and NXtransformations whose fields are the stages' positions (links to the recorded
  values, or the start snapshot for a stage not scanned), chained by `depends_on`.
- a mesh (amesh, dmesh) opens as an image: NXdata `mesh` (slow, fast) of the selected counter,
  both motors as axes, written when the entry closes (SWMR adds no dataset while it runs);
  a step scan opens on `plotselect`, its selected counter against its first motor.
"""
from __future__ import annotations

import warnings

import h5py
import numpy as np


def unit_of(spec):
    """The unit written for a channel (a ChannelSpec)."""
    if spec.unit:
        return spec.unit
    return "1" if np.dtype(spec.dtype).kind in "biu" else "a.u."


def create_sample(entry, name, description, recorded):
    """entry/sample (NXsample); `recorded`: {axis: its NXpositioner group} of the scan."""
    sample = entry.create_group("sample")
    sample.attrs["NX_class"] = "NXsample"
    sample["name"] = str((description or {}).get("name") or name)
    stages = [s for s in (description or {}).get("stages") or () if isinstance(s, dict) and s.get("axis")]
    if not stages:
        return sample
    transformations = sample.create_group("transformations")
    transformations.attrs["NX_class"] = "NXtransformations"
    paths = [f"{transformations.name}/{s['axis']}" for s in stages]
    snapshot = entry.get("instrument/positioners")
    for k, stage in enumerate(stages):
        axis = stage["axis"]
        if axis in recorded:
            sample[axis] = h5py.SoftLink(recorded[axis].name)  # its positions, point by point
            field = recorded[axis]["value"]
            transformations[axis] = h5py.SoftLink(field.name)
        elif snapshot is not None and axis in snapshot:
            field = transformations.create_dataset(axis, data=snapshot[axis][()])
            field.attrs["units"] = snapshot[axis].attrs.get("units", "a.u.")
        else:
            continue
        field.attrs["transformation_type"] = stage.get("type", "translation")
        field.attrs["vector"] = np.asarray(stage.get("vector", (0, 0, 1)), np.float64)
        field.attrs["depends_on"] = paths[k + 1] if k + 1 < len(paths) else "."
    sample["depends_on"] = paths[0]
    return sample


def mesh_bytes(scan_info):
    """Bytes the mesh image may add to the file (image, axes, metadata), 0 if not a mesh."""
    shape = scan_info.get("shape") if scan_info else None
    if not shape or len(shape) != 2:
        return 0
    rows, cols = (int(n) for n in shape)
    return 8 * (rows * cols + rows + cols) + 16384


def write_mesh_image(entry, scan_info, signal):
    """entry/mesh: the counter `signal` of a mesh as an image (slow, fast), points not measured
    NaN, lines of a back-and-forth mesh put back in order; the entry's default. None if the
    entry is not a finished mesh with that counter."""
    shape, motors = scan_info.get("shape"), scan_info.get("motors") or []
    measurement = entry.get("measurement")
    if not shape or len(shape) != 2 or len(motors) < 2 or measurement is None or signal not in measurement:
        return None
    rows, cols = (int(n) for n in shape)
    fast, slow = motors[0], motors[1]
    values = {name: measurement[name][:rows * cols] for name in (signal, fast, slow)}
    grid = {}
    for name, data in values.items():
        flat = np.full(rows * cols, np.nan)
        flat[:data.size] = data
        image = flat.reshape(rows, cols)
        if scan_info.get("backnforth"):
            image[1::2] = image[1::2, ::-1]
        grid[name] = image
    if "mesh" in entry:
        del entry["mesh"]
    mesh = entry.create_group("mesh")
    mesh.attrs["NX_class"] = "NXdata"
    mesh.create_dataset(signal, data=grid[signal])
    mesh[signal].attrs["units"] = measurement[signal].attrs.get("units", "a.u.")
    with warnings.catch_warnings():  # a line not measured: its position NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mesh.create_dataset(fast, data=np.nanmean(grid[fast], axis=0))
        mesh.create_dataset(slow, data=np.nanmean(grid[slow], axis=1))
    for name in (fast, slow):
        mesh[name].attrs["units"] = measurement[name].attrs.get("units", "a.u.")
    mesh.attrs["signal"] = signal
    mesh.attrs["axes"] = [slow, fast]
    mesh.attrs[f"{slow}_indices"] = 0
    mesh.attrs[f"{fast}_indices"] = 1
    entry.attrs["default"] = "mesh"
    return mesh
