"""SIRT reconstruction of every q bin at once, with the back-projector of `fbp` and its exact
adjoint as forward projector (pixel-driven, linear interpolation in x).

FBP is one shot and noisy with few angles or counts; SIRT (x += C A^T R (b - A x), R and C
the inverse row and column sums of A) converges to the weighted least-squares solution, can be
kept non-negative, and is useful from an FBP start for a few iterations.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from bliss_lite.processing.fbp import backproject, detector_bins, fbp
from bliss_lite.processing.tomo_grid import (
    as_stack,
    check_grid,
    index_lines,
    pixel_area,
)
from bliss_lite.protocols import Backend


@njit(parallel=True, fastmath=True, cache=True)
def _forward(image, f0, dfc, dfr, scale, out):
    """out[a, :, :] = scale * sum over pixels of image[row, col, :] spread onto the two detector
    bins around f0[a] + col dfc[a] + row dfr[a]: the transpose of the back-projector."""
    n, _, nq = image.shape
    n_x = out.shape[1]
    for a in prange(f0.shape[0]):
        proj = out[a]
        proj[:] = 0.0
        for row in range(n):
            for col in range(n):
                i, w = detector_bins(f0[a] + row * dfr[a] + col * dfc[a], n_x)
                if i < 0:
                    continue
                w0 = np.float32(1.0) - w
                v, p0, p1 = image[row, col], proj[i], proj[i + 1]
                for q in range(nq):
                    p0[q] += w0 * v[q]
                    p1[q] += w * v[q]
        for i in range(n_x):
            for q in range(nq):
                proj[i, q] *= scale


def forward_project(image, x_mm, omega_deg, centre):
    """Line integrals (mm x image units) of an (n, n[, nq]) image on the (omega, x) grid:
    (n_omega, n_x[, nq]) float32, each pixel's area spread over the detector bins by the
    back-projector's interpolation weights (so A^T = area/dx * backproject)."""
    image = np.asarray(image, np.float32)
    squeeze = image.ndim == 2
    stack = np.ascontiguousarray(image[..., None] if squeeze else image)
    x_mm, omega_deg, dx = check_grid(x_mm, omega_deg)
    n = stack.shape[0]
    out = np.empty((omega_deg.size, x_mm.size, stack.shape[2]), np.float32)
    _forward(stack, *index_lines(x_mm, omega_deg, centre, n), np.float32(pixel_area(x_mm, n) / abs(dx)), out)
    return out[..., 0] if squeeze else out


def sirt(sino, x_mm, omega_deg, centre, n=None, iterations=50, nonnegative=True, x0=None, callback=None,
         backend=Backend.CPU):
    """SIRT of (n_omega, n_x[, nq]) line integrals -> (n, n[, nq]) float32, same units as fbp.
    `x0`: None (zeros), "fbp", or a start image. `callback(k, image, residual)` after each
    iteration, residual = ||b - A x||_R before the update (it decreases for plain SIRT).
    `backend`: "cpu", "gpu" or "auto" (`processing/gpu/sirt.py`; the callback then gets CuPy images)."""
    from bliss_lite.processing.gpu import resolve_backend

    if resolve_backend(backend, "reconstruction") == Backend.GPU:
        from bliss_lite.processing.gpu import sirt as gpu_sirt

        return gpu_sirt.sirt(sino, x_mm, omega_deg, centre, n, iterations, nonnegative, x0, callback)
    stack, squeeze = as_stack(sino)
    stack = np.asarray(stack, np.float32)
    x_mm, omega_deg, dx = check_grid(x_mm, omega_deg)
    n = x_mm.size if n is None else int(n)
    nq = stack.shape[2]
    if x0 is None:
        image = np.zeros((n, n, nq), np.float32)
    elif isinstance(x0, str) and x0 == "fbp":
        image = fbp(stack, x_mm, omega_deg, centre, n)
    else:
        image = np.array(x0, np.float32).reshape(n, n, nq)
    if nonnegative:
        np.maximum(image, 0, out=image)
    scale = np.float32(pixel_area(x_mm, n) / abs(dx))
    rows = forward_project(np.ones((n, n, 1), np.float32), x_mm, omega_deg, centre)
    inv_rows = _safe_inverse(rows)  # R: 1 / (A 1), per ray
    cols = backproject(np.ones((omega_deg.size, x_mm.size, 1), np.float32), x_mm, omega_deg, centre, n, scale)
    inv_cols = _safe_inverse(cols)  # C: 1 / (A^T 1), per pixel
    for k in range(int(iterations)):
        residual = stack - forward_project(image, x_mm, omega_deg, centre)
        norm = float(np.sqrt(np.sum(inv_rows * residual * residual)))
        residual *= inv_rows
        image += inv_cols * backproject(residual, x_mm, omega_deg, centre, n, scale)
        if nonnegative:
            np.maximum(image, 0, out=image)
        if callback is not None:
            callback(k, image, norm)
    return image[..., 0] if squeeze else image


def _safe_inverse(values):
    out = np.zeros_like(values, dtype=np.float32)
    np.divide(1.0, values, out=out, where=values > 1e-12 * max(float(values.max()), 1e-30))
    return out
