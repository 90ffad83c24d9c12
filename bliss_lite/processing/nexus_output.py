"""Processing results in the scan's own NXentry: NXprocess groups with NXdata inside.

    /<entry>/integrate     NXprocess: program, version, date, configuration (JSON)
        results            NXdata: intensity (frames, npt), frame and q or 2th axes (with units)
    /<entry>/instrument/<detector>, monochromator: the geometry as NeXus fields (nexus_geometry.py)
    /<entry>/reconstruct   NXprocess: configuration, centre of rotation, peak_fwhm (the peak
                           width the maps were made with, @units, @source: measured or given)
        volume             NXdata: data (z, y, x, q), axes z, y, x, q
        <phase>            NXdata: map (z, y, x) of each phase (units "1": a volume fraction), axes
                           z, y, x; `residual` the decomposition's RMS misfit; the entry's default
    /<entry>/measurement/integrated -> integrate/results/intensity

Written after the scan has closed its entry (the writer is SWMR and cannot add datasets while
it runs), by reopening the file for appending: the raw data is never touched. The big datasets
(intensity, integrated, the volume's data and the maps) are given either as arrays, written
here, or as `reduction_files.Stored` datasets of a file in the scan's folder, which the
NXprocess refers to by a Virtual Dataset (source path relative to the master's folder): what
the scan hooks and the offline plugins write, height by height and line by line.
"""
from __future__ import annotations

import json
import time

import h5py
import numpy as np

import bliss_lite
from bliss_lite.data.safe_open import open_hdf5
from bliss_lite.processing.nexus_geometry import write_geometry
from bliss_lite.processing.reduction_files import Stored, virtual_dataset

RADIAL_NAMES = {"q_nm^-1": ("q", "nm^-1"), "q_A^-1": ("q", "A^-1"), "2th_deg": ("2th", "deg")}


def _nx(group, nx_class):
    group.attrs["NX_class"] = nx_class
    return group


def _process(entry, name, configuration):
    if name in entry:
        del entry[name]  # a reprocessing replaces the previous result
    process = _nx(entry.create_group(name), "NXprocess")
    process["program"] = "bliss_lite"
    process["version"] = getattr(bliss_lite, "__version__", "0")
    process["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    process["sequence_index"] = 1 if name == "integrate" else 2
    process["sequence_index"].attrs["units"] = "1"  # every number has units, a count or an index "1"
    process["configuration"] = json.dumps(configuration, sort_keys=True)
    process["configuration"].attrs["type"] = "application/json"
    return process


def _dataset(group, name, values, path, units, dtype=np.float32, **options):
    """group[name] with its `units`: a Virtual Dataset of a Stored dataset (its source in the
    reduction file given the same units, so a program reading that file alone finds them
    too), else the array written here."""
    if isinstance(values, Stored):
        dataset = virtual_dataset(group, name, values, path)
        _label_source(values, units)
    else:
        dataset = group.create_dataset(name, data=np.asarray(values, dtype), **options)
    dataset.attrs["units"] = units
    return dataset


def _label_source(stored, units):
    """The units of a reduction file's dataset, written once the file is closed (its writer
    is SWMR and adds no attribute while it runs; a map's unit is known only at the end)."""
    with open_hdf5(stored.path, "a", libver="latest") as h5:
        h5[stored.name].attrs["units"] = units


def write_integration(path, entry, radial, settings, patterns, integrated=None, local_frames=0, name="integrate"):
    """patterns (frames, npt) and integrated (frames,) bool: arrays or Stored datasets."""
    axis, units = RADIAL_NAMES[settings.unit]
    with open_hdf5(path, "a", libver="latest") as h5:
        group = h5[entry]
        process = _process(group, name, settings.to_dict())
        process["frames_integrated_here"] = int(local_frames)
        process["frames_integrated_here"].attrs["units"] = "1"
        results = _nx(process.create_group("results"), "NXdata")
        shape = patterns.shape
        options = {} if isinstance(patterns, Stored) else dict(
            chunks=(min(shape[0], 256) or 1, shape[1]), compression="gzip", compression_opts=1)
        _dataset(results, "intensity", patterns, path, "counts", **options)  # per pixel, solid angle and polarisation corrected
        results[axis] = np.asarray(radial, np.float64)
        results[axis].attrs["units"] = units
        results["frame"] = np.arange(shape[0], dtype=np.int64)  # the scan's frame numbers, the first axis
        results["frame"].attrs["units"] = ""
        if integrated is not None:
            _dataset(results, "integrated", integrated, path, "1", bool)
        results.attrs["signal"] = "intensity"
        results.attrs["axes"] = ["frame", axis]
        results.attrs["frame_indices"] = 0
        results.attrs[f"{axis}_indices"] = 1
        if "instrument" in group:  # pyFAI rebuilds the integrator of the frames as stored (a ROI too) from the file
            from bliss_lite.processing.integrator import azimuthal_integrator

            write_geometry(group, azimuthal_integrator(settings)[0].get_config(), model=settings.geometry.get("detector"))
        process.attrs["default"] = "results"
        measurement = group.get("measurement")
        if measurement is not None:
            if "integrated" in measurement:
                del measurement["integrated"]
            measurement["integrated"] = h5py.SoftLink(f"/{entry}/{name}/results/intensity")


def write_reconstruction(path, entry, volume, x_mm, y_mm, z, radial, unit, maps, configuration, name="reconstruct",
                         map_units=None, profile=None):
    """volume (nz, ny, nx, nq); maps {phase: (nz, ny, nx)}: arrays or Stored datasets;
    map_units {phase: unit} ("1": a volume fraction; "a.u." by default); profile: the peak
    profile the maps were made with ({fwhm, unit, source}), written as `peak_fwhm`."""
    axis, units = RADIAL_NAMES[unit]
    with open_hdf5(path, "a", libver="latest") as h5:
        process = _process(h5[entry], name, configuration)
        if profile is not None:  # one number for a measured width; polynomial coefficients in q if configured so
            fwhm = np.asarray(profile["fwhm"], np.float64)
            process["peak_fwhm"] = fwhm[0] if fwhm.size == 1 else fwhm
            process["peak_fwhm"].attrs.update(units=profile.get("unit", "nm^-1"), source=profile.get("source", ""))
        data = _nx(process.create_group("volume"), "NXdata")
        nz, ny, nx, nq = volume.shape
        _dataset(data, "data", volume, path, "counts/mm",  # normalised counts per mm of path
                 **({} if isinstance(volume, Stored) else {"chunks": (1, ny, nx, nq)}))
        for key, values, unit_name in (("z", z, "mm"), ("y", y_mm, "mm"), ("x", x_mm, "mm"), (axis, radial, units)):
            data[key] = np.asarray(values, np.float64)
            data[key].attrs["units"] = unit_name
        data.attrs["signal"] = "data"
        data.attrs["axes"] = ["z", "y", "x", axis]
        for phase, stack in maps.items():
            group = _nx(process.create_group(phase), "NXdata")
            _dataset(group, "map", stack, path, (map_units or {}).get(phase, "a.u."))
            for key in ("z", "y", "x"):
                group[key] = h5py.SoftLink(f"/{entry}/{name}/volume/{key}")
            group.attrs["signal"] = "map"
            group.attrs["axes"] = ["z", "y", "x"]
        first = next(iter(maps), None)
        process.attrs["default"] = first or "volume"
        h5[entry].attrs["default"] = name  # an XRD-CT entry opens on its phase maps
