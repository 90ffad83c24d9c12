"""SIRT of every q bin at once on the GPU, with the back-projector of `gpu/fbp.py` and its
exact transpose as forward projector (the pairing of `processing/sirt.py`).

The CPU forward projector scatters each pixel onto its two detector bins; on the GPU that
would need atomics, so it gathers instead: one thread block per (angle, bin) walks the strip
of pixels whose detector coordinate lies within one bin of it (along the image axis the strip
crosses least steeply: ~3 candidate pixels a row or column), recomputes each
candidate's bin and weight exactly as the back-projector does (`group_bins` in float64), and
adds those that land on this bin, q innermost. The same pixel-bin pairs with the same weights
as the back-projector, so A and A^T stay each other's transpose. Iterations run entirely on
the GPU; only the result crosses back.
"""
from __future__ import annotations

import functools

import numpy as np

from bliss_lite.processing.gpu.fbp import SliceGeometry, fbp_device
from bliss_lite.processing.tomo_grid import as_stack, check_grid, pixel_area

FORWARD = r"""
extern "C" __global__ void forward(const float4* __restrict__ image, const double* __restrict__ f0,
                                   const double* __restrict__ dfc, const double* __restrict__ dfr, int n, int n_x,
                                   int nxp, int nq4, float scale, float4* __restrict__ out)
{
    // block: one (angle a, bin i) and a range of q; thread: one float4 of q. The candidates and
    // their weights are the same for every thread of the block (uniform branches).
    const int a = blockIdx.x / nxp, i = blockIdx.x % nxp;
    const int v = blockIdx.y * blockDim.x + threadIdx.x;
    const double F = f0[a], C = dfc[a], R = dfr[a];
    const bool by_rows = fabs(C) >= fabs(R);  // walk rows, a few columns each (or the reverse)
    const double inv = 1.0 / (by_rows ? C : R), other = by_rows ? R : C;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i < n_x) {
        for (int t = 0; t < n; ++t) {
            // candidates u along the line: F + t other + u step within [i - 1, i + 1]
            const double u1 = (i - 1 - F - t * other) * inv, u2 = (i + 1 - F - t * other) * inv;
            const int lo = max(0, (int)floor(fmin(u1, u2)) - 1), hi = min(n - 1, (int)ceil(fmax(u1, u2)) + 1);
            for (int u = lo; u <= hi; ++u) {
                const int r = by_rows ? t : u, c = by_rows ? u : t;
                const double f = F + r * R + c * C;
                if (!(f >= 0.0 && f <= (double)(n_x - 1))) continue;
                const int b = min((int)f, n_x - 2);
                const float w = (float)(f - b);
                const float weight = b == i ? 1.f - w : (b == i - 1 ? w : 0.f);
                if (weight == 0.f || v >= nq4) continue;
                const float4 x = image[((long long)r * n + c) * nq4 + v];
                acc.x = fmaf(weight, x.x, acc.x);
                acc.y = fmaf(weight, x.y, acc.y);
                acc.z = fmaf(weight, x.z, acc.z);
                acc.w = fmaf(weight, x.w, acc.w);
            }
        }
    }
    if (v < nq4)
        out[((long long)a * nxp + i) * nq4 + v] = make_float4(acc.x * scale, acc.y * scale, acc.z * scale,
                                                              acc.w * scale);
}
"""


@functools.lru_cache(maxsize=None)
def _forward_kernel():
    import cupy

    return cupy.RawModule(code=FORWARD, options=("-std=c++17",)).get_function("forward")


def forward_project(image, g: SliceGeometry, scale, out=None):
    """(n_omega, nxp, nqp) CuPy projections of an (n, n, nqp) CuPy image (padding bins zero)."""
    import cupy

    nqp = image.shape[2]
    if out is None:
        out = cupy.empty((g.n_om, g.nxp, nqp), np.float32)
    nq4 = nqp // 4
    threads = min(256, nq4)
    _forward_kernel()((g.n_om * g.nxp, -(-nq4 // threads)), (threads,),
                      (image, *g.lines, np.int32(g.n), np.int32(g.n_x), np.int32(g.nxp), np.int32(nq4),
                       np.float32(scale), out))
    return out


def _padded(stack, g):
    import cupy

    data = cupy.zeros((g.n_om, g.nxp, g.nqp), np.float32)
    data[:, :g.n_x, :g.nq] = cupy.asarray(stack, np.float32)
    return data


def _safe_inverse(values):
    import cupy

    top = float(values.max()) if values.size else 0.0
    return cupy.where(values > 1e-12 * max(top, 1e-30), 1.0 / cupy.maximum(values, 1e-30), 0.0).astype(np.float32)


def sirt(sino, x_mm, omega_deg, centre, n=None, iterations=50, nonnegative=True, x0=None, callback=None):
    """`processing.sirt.sirt` on the GPU: a NumPy sinogram gives a NumPy image, a CuPy one a
    CuPy image. `callback(k, image, residual)` gets the image as a CuPy array."""
    import cupy

    on_device = isinstance(sino, cupy.ndarray)
    stack, squeeze = as_stack(sino)
    x_mm, omega_deg, dx = check_grid(x_mm, omega_deg)
    g = SliceGeometry(x_mm, omega_deg, centre, n, stack.shape[2], "ramp", "auto")
    if stack.shape[:2] != (g.n_om, g.n_x):
        raise ValueError(f"sinogram shape {stack.shape} does not match {g.n_om} angles x {g.n_x} positions")
    scale = np.float32(pixel_area(x_mm, g.n) / abs(dx))
    b = _padded(stack, g)
    image = cupy.zeros((g.n, g.n, g.nqp), np.float32)
    if isinstance(x0, str) and x0 == "fbp":
        image[..., :g.nq] = fbp_device(cupy.ascontiguousarray(b[:, :g.n_x, :g.nq]), g)
    elif x0 is not None:
        image[..., :g.nq] = cupy.asarray(x0, np.float32).reshape(g.n, g.n, g.nq)
    if nonnegative:
        cupy.maximum(image, 0, out=image)
    ones = cupy.zeros((g.n_om, g.nxp, 128), np.float32)
    ones[:, :g.n_x] = 1.0
    inv_rows = _safe_inverse(forward_project(cupy.ones((g.n, g.n, 128), np.float32), g, scale)[..., :1])
    cols = cupy.empty((g.n, g.n, 128), np.float32)
    g.backproject(ones, cols, weight=scale)
    inv_cols = _safe_inverse(cols[..., :1])
    residual = cupy.empty_like(b)
    update = cupy.empty_like(image)
    for k in range(int(iterations)):
        forward_project(image, g, scale, out=residual)
        cupy.subtract(b, residual, out=residual)
        norm = float(cupy.sqrt(cupy.sum(inv_rows * residual * residual)))
        residual *= inv_rows
        g.backproject(residual, update, weight=scale)
        update *= inv_cols
        image += update
        if nonnegative:
            cupy.maximum(image, 0, out=image)
        if callback is not None:
            callback(k, image[..., :g.nq], norm)
    result = image[..., :g.nq]
    if not on_device:
        result = result.get()
    return result[..., 0] if squeeze else result
