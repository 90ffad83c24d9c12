"""The detector geometry and the beam as NeXus fields, so other programs (pyFAI, silx, DAWN)
rebuild the integration from the file alone, without the PONI file it came from.

    /<entry>/instrument/<detector>     NXdetector: distance (m), x_pixel_size, y_pixel_size (m),
                                       beam_center_x, beam_center_y (pixel), sensor_material,
                                       sensor_thickness (m), poni/ (the PONI, field by field)
    /<entry>/instrument/monochromator  NXmonochromator: wavelength (Angstrom), energy (keV)

`poni/` (NXcollection) holds pyFAI's geometry as it stands in a PONI file: dist, poni1, poni2
(m), rot1, rot2, rot3 (rad), wavelength (m), detector and detector_config (JSON).
`integrator_from_nexus` makes pyFAI's AzimuthalIntegrator from them. Written by the
integration's NXprocess writer, after the scan has closed its entry.
"""
from __future__ import annotations

import json

import numpy as np

HC_KEV_ANGSTROM = 12.398419843320026  # h c, keV Angstrom
SENSORS = {"Pilatus2M": ("CdTe", 1.0e-3), "Pilatus2MCdTe": ("CdTe", 1.0e-3)}  # ID15's high-energy detectors


def detector_group(entry):
    """The entry's area detector: the NXdetector of instrument/ whose data are frames (3-D)."""
    for group in entry["instrument"].values():
        if group.attrs.get("NX_class") == "NXdetector" and "data" in group and group["data"].ndim == 3:
            return group
    return None


def _put(group, name, value, units=None):
    if name in group:
        del group[name]
    group[name] = value
    if units is not None:
        group[name].attrs["units"] = units
    return group[name]


def write_geometry(entry, geometry, detector=None, model=None):
    """The geometry (pyFAI get_config() dict) into the entry's detector (found if not given) and
    its monochromator; `model`: the detector's model name (a ROI's geometry has a generic
    detector), for its sensor."""
    import pyFAI

    detector = detector if detector is not None else detector_group(entry)
    ai = pyFAI.integrator.azimuthal.AzimuthalIntegrator()
    ai.set_config(dict(geometry))
    fit2d = ai.getFit2D()
    if detector is not None:
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
        if "poni" in detector:
            del detector["poni"]
        poni = detector.create_group("poni")
        poni.attrs["NX_class"] = "NXcollection"
        for key, units in (("dist", "m"), ("poni1", "m"), ("poni2", "m"), ("rot1", "rad"), ("rot2", "rad"),
                           ("rot3", "rad"), ("wavelength", "m")):
            _put(poni, key, float(getattr(ai, key)), units)
        _put(poni, "detector", ai.detector.name)
        config = ai.detector.get_config()
        _put(poni, "detector_config", json.dumps(config, default=_plain))
    if ai.wavelength:
        instrument = entry["instrument"]
        mono = instrument.require_group("monochromator")
        mono.attrs["NX_class"] = "NXmonochromator"
        angstrom = ai.wavelength * 1e10
        _put(mono, "wavelength", float(angstrom), "Angstrom")
        _put(mono, "energy", float(HC_KEV_ANGSTROM / angstrom), "keV")


def integrator_from_nexus(path, entry):
    """pyFAI's AzimuthalIntegrator of a scan entry, from its NeXus fields alone."""
    import pyFAI

    from bliss_lite.data.safe_open import open_hdf5

    with open_hdf5(path) as h5:
        detector = detector_group(h5[entry])
        if detector is None or "poni" not in detector:
            raise ValueError(f"{path} entry {entry}: no detector geometry (instrument/<detector>/poni)")
        poni = detector["poni"]
        config = {key: float(poni[key][()]) for key in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")}
        config["detector"] = poni["detector"].asstr()[()]
        config["detector_config"] = json.loads(poni["detector_config"].asstr()[()])
    config["poni_version"] = 2
    ai = pyFAI.integrator.azimuthal.AzimuthalIntegrator()
    ai.set_config(config)
    return ai


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return getattr(value, "value", str(value))  # pyFAI's Orientation enum: its number
