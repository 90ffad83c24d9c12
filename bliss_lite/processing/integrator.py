"""Azimuthal integration: pyFAI builds the CSR matrix once, a lean engine applies it per frame.

pyFAI's `integrate1d` re-preprocesses every frame (dark, flat, solid angle, polarisation,
mask) before its sparse product: ~45 frames/s on 2 cores for a Pilatus 2M. Those corrections
are the same for every frame, so they are folded into constants here: the mask into the
matrix (masked pixels get no coefficient), the normalisation (solid angle x polarisation x
flat) into one denominator per bin, the dark into one offset per bin. What is left per frame
is one sparse product on the raw counts, and the result is pyFAI's own:

    I[b] = (sum_j A[b,j] (raw_j - dark_j)) / (sum_j A[b,j] norm_j)

Outlier rejection (zingers) follows pyFAI's `sigma_clip_ng` and `medfilt1d_ng` definitions
(see `outliers.py`); it needs per-pixel work and is therefore an option, not the default.

`backend="gpu"` (or "auto" where a GPU is) runs the same product on an NVIDIA GPU
(`processing/gpu/integrate.py`), in batches; outlier rejection stays on the CPU.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import scipy.sparse

from bliss_lite.processing import csr_kernels
from bliss_lite.processing.gpu import on_device
from bliss_lite.processing.integration_settings import IntegrationSettings, cpu_only_reason
from bliss_lite.protocols import Backend


def _method(settings):
    return (settings.split, "csr", "cython")


def azimuthal_integrator(settings: IntegrationSettings):
    """(pyFAI AzimuthalIntegrator of the frames as they arrive, gap mask): a ROI gets a detector
    of its own shape, with the PONI shifted by the ROI's corner, so every pixel keeps its place."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from bliss_lite.controllers.detectors.pilatus_geometry import Roi, gap_mask

    full = AzimuthalIntegrator()
    full.set_config(dict(settings.geometry))
    roi = Roi.of(settings.roi)
    if roi.is_full:
        return full, gap_mask(roi)
    from pyFAI.detectors import Detector

    det = full.detector
    small = Detector(det.pixel1, det.pixel2, max_shape=roi.shape, orientation=int(det.orientation))
    ai = AzimuthalIntegrator(dist=full.dist, poni1=full.poni1 - roi.row * det.pixel1,
                             poni2=full.poni2 - roi.column * det.pixel2, rot1=full.rot1, rot2=full.rot2,
                             rot3=full.rot3, detector=small, wavelength=full.wavelength)
    return ai, gap_mask(roi)


def load_image(path, shape, what):
    """A dark or flat image from a file (fabio formats or .npy), of the frame's shape (or of
    the full frame, then cut to the ROI)."""
    from bliss_lite.config.file_checks import checked_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"integration: {what} file {path} not found")
    checked_file(path, "image", f"integration: {what} file")  # regular, bounded: before any reader sees it
    try:
        image = np.load(path) if path.suffix == ".npy" else __import__("fabio").open(str(path)).data
    except Exception as exc:  # noqa: BLE001 - any reader error: named with the file
        raise ValueError(f"integration: {what} file {path}: cannot read it ({exc})") from None
    return np.asarray(image, dtype=np.float64), path


class LeanIntegrator:
    """Integrates frames of one detector geometry with pyFAI's matrix and constant corrections.
    `backend`: "cpu", "gpu" or "auto" (the GPU when CuPy finds one)."""

    def __init__(self, settings: IntegrationSettings, backend=Backend.CPU):
        from bliss_lite.processing.gpu import resolve_backend

        self.settings = settings
        self.backend = resolve_backend(backend, "integration")
        reason = cpu_only_reason(settings.outliers)
        if self.backend == Backend.GPU and reason:
            if backend == Backend.GPU:
                raise ValueError(f"integration: {reason}; use backend='cpu' or 'auto'")
            self.backend = Backend.CPU
        self.ai, self.mask = azimuthal_integrator(settings)
        self.shape = self.mask.shape
        self.dark = self._correction(settings.dark, "dark")
        self.flat = self._correction(settings.flat, "flat")
        reference = self.reference(np.zeros(self.shape, np.float32))  # builds pyFAI's engine
        self.radial = np.asarray(reference.radial, dtype=np.float64)
        self.unit = settings.unit
        engine = self.ai.engines[reference.method].engine
        data = np.asarray(engine.data, dtype=np.float32).copy()
        indices = np.asarray(engine.indices, dtype=np.int32)
        data[self.mask.reshape(-1)[indices]] = 0.0  # masked pixels never count, whatever pyFAI kept
        self.matrix = scipy.sparse.csr_matrix((data, indices, np.asarray(engine.indptr, np.int32)),
                                              shape=(settings.npt, self.mask.size))
        self.product = csr_kernels.SparseProduct(self.matrix)
        self.norm = self._normalisation()
        self.denominator = self.matrix @ self.norm.reshape(-1)
        self.empty = self.denominator <= 0
        self.denominator[self.empty] = 1.0
        self.dark_sum = None if self.dark is None else self.matrix @ self.dark.reshape(-1)

    def _correction(self, path, what):
        if path is None:
            return None
        from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE, Roi

        image, path = load_image(path, self.shape, what)
        if image.shape == FULL_SHAPE and self.shape != FULL_SHAPE:
            image = image[Roi.of(self.settings.roi).slices]
        if image.shape != self.shape:
            raise ValueError(f"integration: {what} file {path} is {image.shape}, frames are {self.shape}")
        return image

    def _normalisation(self):
        norm = np.ones(self.shape, dtype=np.float64)
        if self.settings.solid_angle:
            norm *= self.ai.solidAngleArray(self.shape, absolute=False)
        if self.settings.polarization_factor is not None:
            norm *= self.ai.polarization(self.shape, factor=self.settings.polarization_factor)
        if self.flat is not None:
            norm *= self.flat
        return norm

    @property
    def npt(self):
        return self.settings.npt

    @functools.cached_property
    def gpu(self):
        """The GPU engine (backend "gpu"): batches, copies overlapped with compute."""
        from bliss_lite.processing.gpu.integrate import GpuIntegrator

        return GpuIntegrator(self)

    def integrate(self, frame) -> np.ndarray:
        """One frame (raw counts, gaps anything) -> float32 pattern on `self.radial`."""
        frame = self._checked(frame)
        if self.backend == Backend.GPU:
            return self.gpu.integrate_frames(frame[None])[0]
        if self.settings.outliers != "none":
            from bliss_lite.processing import outliers

            return outliers.integrate(self, frame).astype(np.float32)
        return self._finish(self.product(frame))

    def integrate_many(self, frames, device=False) -> np.ndarray:
        """(k, rows, columns) frames -> (k, npt) float32 patterns; `device=True` (GPU backend
        only): a CuPy array left on the GPU, e.g. for `fbp(..., backend="gpu")` there."""
        self._check_device(device)
        if device and on_device(frames):  # already on the GPU
            return self.gpu.integrate_device(frames)
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.shape:
            raise ValueError(f"integration: frames must be (k, {self.shape[0]}, {self.shape[1]}), got {frames.shape}")
        if self.backend == Backend.GPU:
            return self.gpu.integrate_frames(frames, device=device)
        if self.settings.outliers != "none":  # per-pixel work: one frame at a time
            return np.stack([self.integrate(f) for f in frames])
        return self._finish(np.stack([self.product(f) for f in frames]))

    def integrate_compressed(self, chunks, dtype=np.int32, device=False) -> np.ndarray:
        """Bitshuffle-LZ4 chunks (`bliss_lite.data.bslz4`) -> (k, npt) float32 patterns; on the
        GPU the compressed bytes cross the bus and are decoded there (`device=True`: the
        patterns stay there, a CuPy array)."""
        self._check_device(device)
        if self.backend == Backend.GPU:
            return self.gpu.integrate_chunks(chunks, dtype, device=device)
        from bliss_lite.data import bslz4

        chunks = list(chunks)
        out = np.empty((len(chunks), self.npt), np.float32)
        for i, chunk in enumerate(chunks):
            out[i] = self.integrate(bslz4.decompress(chunk, self.shape, dtype))
        return out

    @functools.cached_property
    def matrix_squared(self):
        """The matrix with squared coefficients (pyFAI's csr2), for the variance in sigma clipping."""
        return self.matrix.multiply(self.matrix).tocsr()

    @functools.cached_property
    def entries(self):
        """(bin, pixel, coefficient) of every non-zero coefficient, for the trimmed mean's sort."""
        coo = self.matrix.tocoo()
        keep = coo.data != 0
        return coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float64)

    def _check_device(self, device):
        if device and self.backend != Backend.GPU:
            raise ValueError(f"integration: device=True keeps patterns on the GPU, but this integrator's backend "
                             f"is '{self.backend}'")

    def _checked(self, frame):
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"integration: frame is {frame.shape}, the geometry is for {self.shape}")
        return frame

    def _finish(self, sums):
        if self.dark_sum is not None:
            sums = sums - self.dark_sum
        result = sums / self.denominator
        result[..., self.empty] = 0.0
        return result.astype(np.float32)

    def reference(self, frame):
        """pyFAI's own `integrate1d` with the same settings: the definition the lean engine keeps."""
        s = self.settings
        return self.ai.integrate1d(np.asarray(frame), s.npt, unit=s.unit, method=_method(s), mask=self.mask,
                                   correctSolidAngle=s.solid_angle, polarization_factor=s.polarization_factor,
                                   dark=self.dark, flat=self.flat, radial_range=s.radial_range)
