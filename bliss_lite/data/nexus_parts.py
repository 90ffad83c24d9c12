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
- the detector geometry and the beam (`write_detector_geometry`), from the PONI the scan's
  sample description names, written with the entry, so a raw scan (no processing, or one
  killed before it) holds them; the integration writes them again for the frames it
  integrated (processing/nexus_geometry.py):

      instrument/<detector>  NXdetector: distance (m: pyFAI's, from the sample to the detector
                             plane), x_pixel_size, y_pixel_size (m), beam_center_x,
                             beam_center_y (pixel, where the direct beam hits, the first pixel
                             spanning 0 to 1, as pyFAI and Fit2D count), sensor_material,
                             sensor_thickness (m); x_pixel_offset, y_pixel_offset (m, of each
                             column's and row's centre from the PONI) and depends_on: the
                             detector placed by NXtransformations `transformations/`:
                             distance (translation along the beam, z) <- rot1 <- rot2 <- rot3
                             (rotations about the sample, rad, pyFAI's angles on the NeXus
                             axes: rot1 about (0, -1, 0), rot2 about (1, 0, 0), rot3 about
                             (0, 0, 1); x horizontal, y up, z along the beam); poni/ (the PONI
                             field by field, for `integrator_from_nexus`)
      instrument/monochromator  NXmonochromator: wavelength (Angstrom), energy (keV)

  pyFAI's pixel (row i, column j) lies at rot3 rot2 rot1 (x_pixel_offset[j], y_pixel_offset[i],
  distance): pyFAI's axis 1 is NeXus's y, its axis 2 NeXus's -x.
"""
from __future__ import annotations

import json
import warnings

import h5py
import numpy as np

HC_KEV_ANGSTROM = 12.398419843320026  # h c, keV Angstrom
SENSORS = {"Pilatus2M": ("CdTe", 1.0e-3), "Pilatus2MCdTe": ("CdTe", 1.0e-3)}  # ID15's high-energy detectors
ROTATIONS = (("rot1", (0, -1, 0)), ("rot2", (1, 0, 0)), ("rot3", (0, 0, 1)))  # pyFAI's, on NeXus's axes


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


def frames_geometry(poni, roi=None, shape=None):
    """(pyFAI AzimuthalIntegrator of the frames as stored, that of the whole detector) from a
    PONI file: a ROI (row, column, rows, columns) gets a detector of its own shape with the
    PONI shifted by the ROI's corner, so every pixel keeps its place. The integrator is None
    where the frames' `shape` is neither the ROI's nor the whole detector's (where the frames'
    pixels lie is then unknown)."""
    import pyFAI
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from bliss_lite.config.file_checks import checked_file

    full = pyFAI.load(str(checked_file(poni, "poni", "sample: PONI file")))
    det = full.detector
    if roi:
        row, column, rows, columns = (int(v) for v in roi)
    else:
        row, column, (rows, columns) = 0, 0, tuple(det.max_shape or ())
    if shape is not None and tuple(shape) != (rows, columns):
        return None, full
    if (row, column) == (0, 0) and tuple(det.max_shape or ()) == (rows, columns):
        return full, full
    small = Detector(det.pixel1, det.pixel2, max_shape=(rows, columns), orientation=int(det.orientation))
    ai = AzimuthalIntegrator(dist=full.dist, poni1=full.poni1 - row * det.pixel1, poni2=full.poni2 - column * det.pixel2,
                             rot1=full.rot1, rot2=full.rot2, rot3=full.rot3, detector=small, wavelength=full.wavelength)
    return ai, full


def _put(group, name, value, units=None):
    if name in group:
        del group[name]
    group[name] = value
    if units is not None:
        group[name].attrs["units"] = units
    return group[name]


def write_detector_geometry(instrument, detector, ai, model=None):
    """pyFAI's geometry `ai` (of the frames as stored) as NeXus fields of the NXdetector group
    `detector` and of instrument/monochromator (module docstring); `model`: the detector's model
    name (a ROI's geometry has a generic detector), for its sensor. Replaces what was there."""
    if detector is not None:
        fit2d = ai.getFit2D()
        _put(detector, "distance", float(ai.dist), "m")
        _put(detector, "x_pixel_size", float(ai.detector.pixel2), "m")
        _put(detector, "y_pixel_size", float(ai.detector.pixel1), "m")
        _put(detector, "beam_center_x", float(fit2d["centerX"]), "pixel")
        _put(detector, "beam_center_y", float(fit2d["centerY"]), "pixel")
        material, thickness = SENSORS.get(str(model or ai.detector.name).replace(" ", ""), (None, None))
        sensor = getattr(ai.detector, "sensor", None)
        if sensor is not None and getattr(sensor, "material", None):
            material = str(sensor.material)
            thickness = getattr(sensor, "thickness", thickness)
        if material is not None:
            _put(detector, "sensor_material", material)
        if thickness:
            _put(detector, "sensor_thickness", float(thickness), "m")
        rows, columns = ai.detector.shape
        _put(detector, "x_pixel_offset", -((np.arange(columns) + 0.5) * ai.detector.pixel2 - ai.poni2), "m")
        _put(detector, "y_pixel_offset", (np.arange(rows) + 0.5) * ai.detector.pixel1 - ai.poni1, "m")
        if "transformations" in detector:
            del detector["transformations"]
        transformations = detector.create_group("transformations")
        transformations.attrs["NX_class"] = "NXtransformations"
        chain = [("distance", float(ai.dist), "translation", (0, 0, 1), "m")]
        chain += [(name, float(getattr(ai, name)), "rotation", vector, "rad") for name, vector in ROTATIONS]
        for k, (name, value, kind, vector, units) in enumerate(chain):
            field = _put(transformations, name, value, units)
            field.attrs["transformation_type"] = kind
            field.attrs["vector"] = np.asarray(vector, np.float64)
            field.attrs["depends_on"] = f"{transformations.name}/{chain[k + 1][0]}" if k + 1 < len(chain) else "."
        _put(detector, "depends_on", f"{transformations.name}/distance")
        if "poni" in detector:
            del detector["poni"]
        poni = detector.create_group("poni")
        poni.attrs["NX_class"] = "NXcollection"
        for key, units in (("dist", "m"), ("poni1", "m"), ("poni2", "m"), ("rot1", "rad"), ("rot2", "rad"),
                           ("rot3", "rad"), ("wavelength", "m")):
            _put(poni, key, float(getattr(ai, key)), units)
        _put(poni, "detector", ai.detector.name)
        _put(poni, "detector_config", json.dumps(ai.detector.get_config(), default=_plain))
    if ai.wavelength:
        mono = instrument.require_group("monochromator")
        mono.attrs["NX_class"] = "NXmonochromator"
        angstrom = ai.wavelength * 1e10
        _put(mono, "wavelength", float(angstrom), "Angstrom")
        _put(mono, "energy", float(HC_KEV_ANGSTROM / angstrom), "keV")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return getattr(value, "value", str(value))  # pyFAI's Orientation enum: its number
