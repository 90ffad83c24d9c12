"""How the reconstruction turns a slice (n, n, nq) into phase maps: full-pattern decomposition
(decomposition.py, the default: maps, plus the fit's RMS residual) or a q window per phase
(phase_maps.py, `method="roi"`).

Everything it needs comes from the options (configuration or job) and from the scan's own data:
the phases, the instrument's peak profile (given, or one FWHM measured from the first height's
summed pattern at the isolated reflections of its phases, peak_width.py), measured references
and standards. Built once per scan (`prepare`), at the first height reconstructed, so every
height gets the same model.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.processing.decomposition import RESIDUAL, build_model, check_phases, is_computed

METHODS = ("decomposition", "roi")


class PhaseMapper:
    def __init__(self, phases, method="decomposition", profile=None, peak_fwhm=None, background="auto", standards=None,
                 roi_width=0.6):
        from bliss_lite.processing.references import profile_of

        if method not in METHODS:
            raise ValueError(f"maps must be one of {', '.join(METHODS)}, got {method!r}")
        check_phases(phases)
        if background != "auto" and (not isinstance(background, int) or isinstance(background, bool)
                                     or not -1 <= background <= 6):
            raise ValueError(f"background must be 'auto' or a polynomial degree -1 (none) .. 6, got {background!r}")
        if standards is not None and (not isinstance(standards, dict) or set(standards) - set(phases)):
            raise ValueError(f"standards must map phases ({', '.join(phases)}) to {{pattern or scan, thickness_mm}}, "
                             f"got {standards!r}")
        self.phases, self.method = dict(phases), method
        self.profile = profile_of(profile if profile is not None else peak_fwhm)
        self.background, self.standards, self.roi_width = background, standards, roi_width
        self.model = self.rois = None

    @property
    def names(self):
        """The maps made for each height: the phases, and the residual for a decomposition."""
        return list(self.phases) + ([RESIDUAL] if self.method == "decomposition" else [])

    @property
    def ready(self):
        return self.model is not None or self.rois is not None

    @property
    def units(self):
        if self.model is not None:
            return {**self.model.units, RESIDUAL: "a.u."}
        return {name: "a.u." for name in self.names}

    def prepare(self, radial, summed=None, reference_i0=1.0):
        """The model (or the ROIs) on the q axis `radial` (nm^-1), once; `summed`: a summed
        pattern of the scan (nq,), for what must be measured from the data."""
        if self.ready:
            return
        radial = np.asarray(radial, float)
        summed = None if summed is None else np.asarray(summed, float)
        if self.method == "decomposition":
            self.model = build_model(self.phases, radial, summed, self.profile, self.background, self.standards,
                                     reference_i0)
            self.profile = self.model.profile
            self._say_fallback()
            return
        self.rois = self._rois(radial, summed)
        self._say_fallback()

    def _say_fallback(self):
        if self.profile is not None and self.profile.source.startswith("fallback"):
            from bliss_lite.processing.hook_registry import warn

            warn(f"phase maps: peak width {self.profile.fwhm[0]:.4g} nm^-1, {self.profile.source}; give peak_fwhm")

    def _rois(self, radial, summed):
        from bliss_lite.processing.peak_width import measure_profile
        from bliss_lite.processing.phase_maps import phase_rois

        calibrants = {}
        for name, spec in self.phases.items():
            if spec is not None and not is_computed(spec):
                raise ValueError(f"maps 'roi': phase {name!r} needs a calibrant name or None (amorphous)")
            calibrants[name] = spec if spec is None or isinstance(spec, str) else spec.get("calibrant")
        if self.profile is None and summed is not None and any(calibrants.values()):
            self.profile = measure_profile(radial, summed, {n: c for n, c in calibrants.items() if c},
                                           source="the scan's summed pattern")
        fwhm = None if self.profile is None else float(np.median(self.profile.width(radial)))
        step = float(np.median(np.diff(radial)))
        width = max(self.roi_width, 4.5 * step)  # a ROI needs a few bins, whatever the binning
        return phase_rois(calibrants, float(radial.min()), float(radial.max()), width, peak_fwhm=fwhm)

    def maps(self, image, radial):
        """{name: map (n, n)} on the host of a slice (n, n, nq), NumPy or CuPy."""
        if self.model is not None:
            maps, residual = self.model.decompose(image)
            return {**maps, RESIDUAL: residual}
        from bliss_lite.processing.gpu import to_host
        from bliss_lite.processing.phase_maps import phase_maps

        return phase_maps(to_host(image), radial, self.rois)

    def configuration(self):
        if self.model is not None:
            return self.model.to_dict()
        return {"method": self.method, "profile": None if self.profile is None else self.profile.to_dict(),
                "background_degree": self.background}
