"""What the offline reduction jobs read from their input before any work: the stored JSON of
an earlier reduction, the integration settings, the output entry and the reduction file it
goes to. Shared by the in-process jobs (scan_plugins.py) and their Dask forms
(dask_integrate.py, dask_reconstruct.py), which scan_plugins also calls: kept apart so
neither imports the other back.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bliss_lite.data.safe_open import open_hdf5


def _stored_json(path, group, dataset):
    """The JSON stored in `group/dataset` (e.g. "1.1/integrate", "configuration"), None when
    the group or the dataset is not there; a ValueError when the entry itself is missing."""
    entry = group.split("/")[0]
    with open_hdf5(path) as h5:
        if entry not in h5:
            raise ValueError(f"{path}: no entry {entry!r}")
        node = h5[group].get(dataset) if group in h5 else None
        return None if node is None else json.loads(node[()])


def integration_settings(options, stored=None, roi=None):
    """Settings from `options` (IntegrationSettings fields, `poni` for the geometry) over the
    ones stored with an earlier integration (`stored`), else the scan's detector ROI."""
    from bliss_lite.processing.integration_settings import IntegrationSettings

    options = dict(options or {})
    poni = options.pop("poni", None)
    if poni is not None:
        base = IntegrationSettings.from_poni(poni, **({} if stored is None else
                                                      {k: v for k, v in stored.items() if k != "geometry"}))
    elif stored is not None:
        base = IntegrationSettings.from_dict(stored)
    else:
        raise ValueError("integration: give `poni` (a PONI file): this scan has no earlier integration to start from")
    if roi and "roi" not in options and stored is None:
        options["roi"] = tuple(roi)
    return base.replace(**options) if options else base


def prepare_integration(data):
    """(settings, scan_info, output path, output entry) of an `integrate_scan` input, the output
    entry created: shared by the in-process run and the Dask one (dask_integrate.py)."""
    _plain_entries(data)
    stored = roi = info = None
    if not data.get("cbf_folder"):
        for key in ("filename", "entry"):
            if key not in data:
                raise ValueError(f"integrate_scan: input needs {key!r} (or cbf_folder)")
        from bliss_lite.processing.frame_sources import hdf5_scan

        stored = _stored_json(data["filename"], f"{data['entry']}/integrate", "configuration")
        info = hdf5_scan(data["filename"], data["entry"], data.get("detector", "pilatus"), channels=False).scan_info
        roi = ((info or {}).get("xrdct") or {}).get("roi")
    settings = integration_settings(data.get("integration"), stored, roi)
    output = dict(data.get("output") or {})
    path = output.get("filename") or data.get("filename")
    entry = output.get("entry") or data.get("entry") or "1.1"
    if path is None:
        raise ValueError("integrate_scan: frames from a CBF folder need output.filename")
    with open_hdf5(path, "a") as h5:
        if entry not in h5:
            h5.create_group(entry).attrs["NX_class"] = "NXentry"
    return settings, info, path, entry


def _reduction_file(master, entry, name):
    """`name`.h5 in the folder of the entry's scan beside `master` (data/scan_files.py)."""
    from bliss_lite.data.scan_files import reduction_file

    if re.fullmatch(r"\d+\.\d+", str(entry)):  # "3.1", or a resumed scan's "3.2": its own folder
        return reduction_file(master, str(entry), name)
    number = re.match(r"\d+", str(entry))
    if number is None:  # an entry not named "N.1": a folder named after it
        master = Path(master)
        return master.with_name(f"{master.stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(entry))}") / f"{name}.h5"
    return reduction_file(master, int(number.group()), name)


def _plain_entries(data):
    """Entries are plain names ("3.1"): "../../x" would make groups named ".."."""
    from bliss_lite.config.file_checks import plain_name

    for where, value in (("entry", data.get("entry")), ("output.entry", (data.get("output") or {}).get("entry"))):
        if value is not None:
            plain_name(str(value), f"input {where}")
