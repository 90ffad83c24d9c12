"""Detector frames of the phantom: each phase's powder pattern rendered once through a pyFAI
geometry, then a frame is a weighted sum of those images plus Poisson noise.

Crystalline phases get Gaussian peaks at q = 2 pi / d for the d-spacings of their pyFAI
calibrant (intensity falling as d^2), the amorphous matrix two broad humps. The frame at
(x, omega, z) is flux * exposure * transmission * sum(path length of phase * image of phase):
the pencil-beam line integral, cheap enough for 250 Hz with small frames; full frames can be
pre-rendered in a bank for throughput runs (docs/architecture.md).
"""
from __future__ import annotations

import numpy as np

from bliss_lite.controllers.detectors.pilatus_geometry import GAP_VALUE, Roi, gap_mask

PEAK_FWHM_Q = 0.35  # nm^-1, about one pixel at 0.35 m
AMORPHOUS_HUMPS = ((20.0, 6.0, 1.0), (38.0, 9.0, 0.5))  # (q, fwhm, height) in nm^-1


def load_geometry(poni_path):
    import pyFAI

    from bliss_lite.config.file_checks import checked_file

    checked_file(poni_path, "poni", "sample: PONI file")  # regular, bounded: before pyFAI reads it
    return pyFAI.load(str(poni_path))


def phase_pattern(calibrant, q):
    """1-D powder pattern (peak height 1 for the strongest) of a phase on the q grid (nm^-1)."""
    sigma = lambda fwhm: fwhm / 2.3548  # noqa: E731
    pattern = np.zeros_like(q, dtype=float)
    if calibrant is None:
        for center, fwhm, height in AMORPHOUS_HUMPS:
            pattern += height * np.exp(-0.5 * ((q - center) / sigma(fwhm)) ** 2)
        return pattern
    from pyFAI.calibrant import get_calibrant

    spacings = np.asarray(get_calibrant(calibrant).dspacing, float)  # Angstrom
    for d in spacings:
        center = 20 * np.pi / d  # q in nm^-1 for d in Angstrom
        if center > q.max() + 1:
            continue
        pattern += (d / spacings[0]) ** 2 * np.exp(-0.5 * ((q - center) / sigma(PEAK_FWHM_Q)) ** 2)
    return pattern


class DiffractionModel:
    """Per-phase detector images on a ROI, and frames of the phantom at any beam position."""

    def __init__(self, phantom, geometry, roi=None, flux=2.0e5, seed=None):
        self.phantom = phantom
        self.roi = roi if roi is not None else Roi()  # the full frame
        self.flux = flux  # counts per second in the brightest pixel of 1 mm of a phase
        self.mask = gap_mask(roi)
        q = geometry.array_from_unit(unit="q_nm^-1")[roi.slices]
        correction = (geometry.solidAngleArray() * geometry.polarization(factor=0.99))[roi.slices]
        self.q = q
        self.images = {}
        grid = np.linspace(0.0, float(q.max()) + 1.0, 40000)  # 1-D patterns, then one interpolation
        for phase in phantom.phases:
            image = np.interp(q, grid, phase_pattern(phase.calibrant, grid)) * correction
            image[self.mask] = 0.0
            self.images[phase.name] = (image / max(image.max(), 1e-12)).astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def expected(self, x, omega, z, exposure):
        """(expected counts image, transmission, path lengths) for one beam position."""
        lengths = self.phantom.path_lengths(x, omega, z)
        lengths = {k: float(v) for k, v in lengths.items()}
        transmission = float(self.phantom.transmission(lengths))
        image = np.zeros(self.roi.shape, dtype=np.float32)
        for name, length in lengths.items():
            if length > 0:
                image += np.float32(length) * self.images[name]
        image *= np.float32(self.flux * exposure * transmission)
        return image, transmission, lengths

    def frame(self, x, omega, z, exposure):
        """(int32 frame with Poisson noise and gaps at -1, transmission)."""
        image, transmission, _ = self.expected(x, omega, z, exposure)
        counts = self.rng.poisson(image).astype(np.int32)
        counts[self.mask] = GAP_VALUE
        return counts, transmission
