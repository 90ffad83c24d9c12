"""The detector geometry and the beam as NeXus fields, so other programs (pyFAI, silx, DAWN)
rebuild the integration from the file alone, without the PONI file it came from.

    /<entry>/instrument/<detector>     NXdetector: distance (m), x_pixel_size, y_pixel_size (m),
                                       beam_center_x, beam_center_y (pixel), sensor_material,
                                       sensor_thickness (m), x_pixel_offset, y_pixel_offset (m),
                                       depends_on and transformations/ (NXtransformations:
                                       distance, rot1, rot2, rot3), poni/ (the PONI, field by field)
    /<entry>/instrument/monochromator  NXmonochromator: wavelength (Angstrom), energy (keV)

The fields and their conventions: data/nexus_parts.py (`write_detector_geometry`), which the
writer also uses to put them in the raw entry when the scan starts. `poni/` (NXcollection)
holds pyFAI's geometry as it stands in a PONI file: dist, poni1, poni2 (m), rot1, rot2, rot3
(rad), wavelength (m), detector and detector_config (JSON). `integrator_from_nexus` makes
pyFAI's AzimuthalIntegrator from them. `write_geometry` writes them again for the frames the
integration integrated, after the scan has closed its entry.
"""
from __future__ import annotations

import json

from bliss_lite.data.nexus_parts import write_detector_geometry


def detector_group(entry):
    """The entry's area detector: the NXdetector of instrument/ whose data are frames (3-D)."""
    for group in entry["instrument"].values():
        if group.attrs.get("NX_class") == "NXdetector" and "data" in group and group["data"].ndim == 3:
            return group
    return None


def write_geometry(entry, geometry, detector=None, model=None):
    """The geometry (pyFAI get_config() dict) into the entry's detector (found if not given) and
    its monochromator; `model`: the detector's model name (a ROI's geometry has a generic
    detector), for its sensor."""
    import pyFAI

    detector = detector if detector is not None else detector_group(entry)
    ai = pyFAI.integrator.azimuthal.AzimuthalIntegrator()
    ai.set_config(dict(geometry))
    write_detector_geometry(entry["instrument"], detector, ai, model)


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
