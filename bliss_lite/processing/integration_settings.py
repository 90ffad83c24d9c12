"""What an azimuthal integration needs, as one JSON-able value: it travels to worker processes
on other hosts (through Redis) and into the NXprocess that records how patterns were made.

The geometry is carried as pyFAI's own configuration dict (distance, PONI, rotations,
wavelength, detector), not as a file path, so a remote worker needs no shared file system.
Every field is checked here, once, with a message that names it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

UNITS = ("q_nm^-1", "2th_deg", "q_A^-1")
SPLITS = ("no", "bbox")
OUTLIERS = ("none", "sigma_clip", "trimmed_mean")


def cpu_only_reason(outliers):
    """Why these integration options cannot run on the GPU, or None: outlier rejection (pyFAI's
    sigma clipping and trimmed mean) runs on the CPU only. One rule for the integrator, the
    hook's check before a scan and the workers' log."""
    return None if outliers == "none" else f"outlier rejection ({outliers}) runs on the CPU only"


@dataclass(frozen=True)
class IntegrationSettings:
    geometry: dict  # pyFAI AzimuthalIntegrator.get_config() of the full detector
    npt: int = 1000
    unit: str = "q_nm^-1"
    split: str = "no"  # pixel splitting: "no" (each pixel in one bin) or "bbox"
    roi: tuple | None = None  # (row, column, rows, columns) of the full frame; None: full frame
    polarization_factor: float | None = 0.99
    solid_angle: bool = True
    dark: str | None = None  # file (EDF/CBF via fabio, or .npy) of the detector's full frame or ROI
    flat: str | None = None
    outliers: str = "none"  # zingers: "sigma_clip" (pyFAI sigma_clip_ng) or "trimmed_mean" (medfilt1d_ng)
    thres: float = 5.0  # sigma clipping: cut-off in standard deviations
    max_iter: int = 5  # sigma clipping: cycles
    percentile: tuple = (10.0, 90.0)  # trimmed mean: kept quantiles, in percent
    radial_range: tuple | None = None  # (min, max) in `unit`; None: the pixels' whole range
    extra: dict = field(default_factory=dict)  # free-form notes kept with the settings

    def __post_init__(self):
        if not isinstance(self.geometry, dict) or "dist" not in self.geometry:
            raise ValueError(f"integration: geometry must be a pyFAI configuration dict with 'dist', got {self.geometry!r}")
        if not isinstance(self.npt, int) or isinstance(self.npt, bool) or not 2 <= self.npt <= 100000:
            raise ValueError(f"integration: npt must be a whole number in 2..100000, got {self.npt!r}")
        for name, allowed in (("unit", UNITS), ("split", SPLITS), ("outliers", OUTLIERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"integration: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.roi is not None:
            from bliss_lite.controllers.detectors.pilatus_geometry import Roi

            roi = Roi.of(tuple(int(v) for v in self.roi))
            object.__setattr__(self, "roi", (roi.row, roi.column, roi.rows, roi.columns))
        if self.polarization_factor is not None and not -1 <= self.polarization_factor <= 1:
            raise ValueError(f"integration: polarization_factor must be in [-1, 1] or None, got {self.polarization_factor!r}")
        if not self.thres > 0 or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"integration: thres must be > 0 and max_iter >= 1, got {self.thres!r}, {self.max_iter!r}")
        lo, hi = self.percentile
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"integration: percentile must be (low, high) with 0 <= low < high <= 100, got {self.percentile!r}")
        object.__setattr__(self, "percentile", (float(lo), float(hi)))
        if self.radial_range is not None:
            lo, hi = (float(v) for v in self.radial_range)
            if not lo < hi:
                raise ValueError(f"integration: radial_range must be (min, max) with min < max, got {self.radial_range!r}")
            object.__setattr__(self, "radial_range", (lo, hi))

    @classmethod
    def from_poni(cls, poni_path, **options):
        """Settings whose geometry is read from a PONI file (pyFAI)."""
        import pyFAI

        from bliss_lite.config.file_checks import checked_file

        path = checked_file(poni_path, "poni", "integration: PONI file")
        try:
            keys = {line.split(":", 1)[0].strip().lower() for line in path.read_text(encoding="utf-8").splitlines()
                    if ":" in line and not line.lstrip().startswith("#")}
            if not {"distance", "poni1", "poni2"} <= keys:  # pyFAI takes any text, with defaults for the rest
                raise ValueError("no Distance, Poni1 and Poni2 lines")
            ai = pyFAI.load(str(path))
        except Exception as exc:  # noqa: BLE001 - pyFAI's reader fails in many ways: named with the file
            raise ValueError(f"integration: PONI file {path}: not a PONI file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        return cls(geometry=json.loads(json.dumps(ai.get_config(), default=_plain)), **options)

    def replace(self, **changes):
        return IntegrationSettings(**{**self.to_dict(), **changes})

    def to_dict(self):
        return json.loads(json.dumps(asdict(self), default=_plain))

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"integration: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        for name in ("roi", "percentile", "radial_range"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


def _plain(value):
    """JSON for pyFAI's enums (detector orientation) and numpy scalars."""
    if hasattr(value, "value"):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")
