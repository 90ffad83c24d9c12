"""`class: pilatus2m` in the YAML: the simulator in this process, or with `server: host:port`
the driver of the simulator process (simulators/pilatus_server.py). `frames_per_file`: frames
in each data file of a scan (default scan_files.DEFAULT_FRAMES_PER_FILE)."""
from __future__ import annotations

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, read_fields
from bliss_lite.controllers.detectors.pilatus import Pilatus2M
from bliss_lite.controllers.detectors.pilatus_geometry import Roi
from bliss_lite.controllers.detectors.pilatus_remote import RemotePilatus
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE
from bliss_lite.protocols import Sample

PILATUS_FIELDS = (
    Field("sample", "ref", None),
    Field("roi", "list", None),
    Field("cbf_directory", "str", None),
    Field("server", "str", None),  # host:port of simulators/pilatus_server.py; none: in-process
    Field("frames_per_file", "int", DEFAULT_FRAMES_PER_FILE, lambda n: None if n >= 1 else "must be >= 1"),
)


def create(name, node, config):
    values = read_fields(node, PILATUS_FIELDS, f"detector '{name}'")
    sample = config.resolve(values["sample"]) if values["sample"] is not None else None
    if sample is not None and not isinstance(sample, Sample):
        raise ConfigError(f"{where(node, 'sample')}: detector '{name}': {values['sample']} is not a sample")
    roi = None
    if values["roi"] is not None:
        try:
            roi = Roi.of(values["roi"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where(node, 'roi')}: detector '{name}': roi [row, column, rows, columns]: {exc}") from None
    if values["server"] is not None:
        if ":" not in values["server"]:
            raise ConfigError(f"{where(node, 'server')}: detector '{name}': server must be host:port, got {values['server']!r}")
        detector = RemotePilatus(name, values["server"], sample, roi)
    else:
        detector = Pilatus2M(name, sample, roi, values["cbf_directory"])
    detector.frames_per_file = values["frames_per_file"]
    return detector
