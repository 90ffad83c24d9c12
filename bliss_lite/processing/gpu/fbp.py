"""Filtered back-projection of every q bin of an XRD-CT slice at once, on the GPU.

Same geometry, filter and interpolation rule as `processing/fbp.py` (its index lines, its
filter matrix, `detector_bins`), so the images agree to float32 rounding. The filter is one
batched sgemm (the n_x x n_x Toeplitz matrix, as on the CPU; FFT above 1024 positions).

The back-projection is a plain gather kernel with q innermost. A thread holds a 2 x 2 group of
pixels and 8 q values (2 float4). The four pixels of a group project within
|cos| + |sin| <= 1.42 bins of each other, so at each angle their 8 interpolation operands lie
in 4 consecutive detector bins: the thread loads those 4 rows (16-byte loads, coalesced over
the 8 threads that share the group) and applies a 4 x 4 weight table, half the loads of
pixel-by-pixel gathering. The tables (lowest bin and weights, per group and angle) are made
once per thread block, 8 angles at a time, in shared memory: computed by each thread they
cost as much as the arithmetic they feed (measured: 46 ms against ~30 ms). Groups that need
more bins (an image grid coarser than the positions) go pixel by pixel. The detector index
is computed in float64, as on the CPU, so a pixel at the edge of the measured range is kept
or dropped alike. A thread block covers a 16 x 8 pixel tile and 64 q values; each thread
issues the loads of two angles before their arithmetic. It is latency-bound (ncu: a third of
the issue slots used, warps waiting on L1), ~35 ms for 400 x 600 x 1000.

`fbp` takes a CuPy array (already on the GPU, e.g. from GPU integration: the image stays there
too) or a NumPy array: then chunks of 128 q values cross the bus while the previous chunk is
filtered and back-projected and the one before crosses back (2-D copies straight from and to
pinned arrays; ordinary arrays go through pinned buffers, copied by a few threads).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from bliss_lite.processing.fbp import (MATRIX_FILTER_MAX_NX, _as_stack, _check_grid, filter_matrix, filter_response,
                                       index_lines)

# measured on an H200, 400 x 600 x 1000 (ms): (8, 8, 8, 4, 8, 1, 1) 44-46, (8, 8, 8, 1, 8, 1, 2) 38.5,
# (8, 8, 8, 2, 8, 2, 1) 37.4, (8, 4, 8, 2, 8, 2, 2) 34.5
GX, GY = 8, 4  # 2 x 2 pixel groups per thread block, along columns and rows: a 16 x 8 tile
QL, QV = 8, 2  # threads along q per group, float4s per thread: 64 q values per thread block
AC = 8  # angles tabulated at a time in shared memory
AU = 2  # angles whose loads are issued together
MINB = 2  # thread blocks per multiprocessor the registers must allow
PAD_BINS = 3  # zero detector bins after the last, read by a group's 4-bin window
Q_CHUNK = 128  # q values per chunk crossing the bus (host arrays)

SOURCE = r"""
#define NG (GX * GY)
#define NONE 0x7fffffff

struct Bins { int bin[4]; float w[4]; int k; int span; };

// the 2 x 2 group at (r0, c0) at one angle: each pixel's left bin and weight (bin NONE: outside
// the image or the measured range), the lowest bin k and the span of the group's left bins
__device__ __forceinline__ Bins group_bins(double F, double C, double R, int r0, int c0, int row1, int n,
                                           int n_x) {
    Bins g;
    g.k = NONE;
    g.span = 0;
    #pragma unroll
    for (int p = 0; p < 4; ++p) {
        const int r = r0 + (p >> 1), c = c0 + (p & 1);
        const double f = F + r * R + c * C;
        const bool ok = r < row1 && c < n && f >= 0.0 && f <= (double)(n_x - 1);
        const int i = min((int)f, n_x - 2);
        g.bin[p] = ok ? i : NONE;
        g.w[p] = ok ? (float)(f - i) : 0.f;
        g.k = min(g.k, g.bin[p]);
    }
    #pragma unroll
    for (int p = 0; p < 4; ++p) if (g.bin[p] != NONE) g.span = max(g.span, g.bin[p] - g.k);
    return g;
}

// acc += the NA angles' contributions through the 4-bin window at rows k[u] (table index aa)
template <int NA>
__device__ __forceinline__ void window(float4 (&acc)[4][QV], const float4* rows, int a, int aa, const int (&k)[NA],
                                       int g, int nxp, int nq4, int v0, const float4 (*table_w)[4][NG]) {
    float4 s[NA][QV][4];
    #pragma unroll
    for (int u = 0; u < NA; ++u) {  // every load first: 4 NA QV in flight
        const float4* base = rows + ((long long)(a + u) * nxp + k[u]) * nq4 + v0;
        #pragma unroll
        for (int v = 0; v < QV; ++v)
            #pragma unroll
            for (int b = 0; b < 4; ++b)
                s[u][v][b] = v0 + v * QL < nq4 ? __ldg(base + b * nq4 + v * QL) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    #pragma unroll
    for (int u = 0; u < NA; ++u) {
        #pragma unroll
        for (int p = 0; p < 4; ++p) {
            const float4 W = table_w[aa + u][p][g];
            const float w4[4] = {W.x, W.y, W.z, W.w};
            #pragma unroll
            for (int v = 0; v < QV; ++v)
                #pragma unroll
                for (int b = 0; b < 4; ++b) {
                    acc[p][v].x = fmaf(w4[b], s[u][v][b].x, acc[p][v].x);
                    acc[p][v].y = fmaf(w4[b], s[u][v][b].y, acc[p][v].y);
                    acc[p][v].z = fmaf(w4[b], s[u][v][b].z, acc[p][v].z);
                    acc[p][v].w = fmaf(w4[b], s[u][v][b].w, acc[p][v].w);
                }
        }
    }
}

// acc += one angle's contribution pixel by pixel (a group needing more than 4 bins)
__device__ __forceinline__ void pixels(float4 (&acc)[4][QV], const float4* rows, int a, const double* f0,
                                    const double* dfc, const double* dfr, int r0, int c0, int row1, int n, int n_x,
                                    int nxp, int nq4, int v0) {
    const Bins b = group_bins(f0[a], dfc[a], dfr[a], r0, c0, row1, n, n_x);
    #pragma unroll
    for (int p = 0; p < 4; ++p) {
        if (b.bin[p] == NONE) continue;
        const float4* base = rows + ((long long)a * nxp + b.bin[p]) * nq4 + v0;
        const float wl = 1.f - b.w[p], wr = b.w[p];
        #pragma unroll
        for (int v = 0; v < QV; ++v) {
            if (v0 + v * QL >= nq4) break;
            const float4 l = __ldg(base + v * QL), r = __ldg(base + nq4 + v * QL);
            acc[p][v].x += wl * l.x + wr * r.x;
            acc[p][v].y += wl * l.y + wr * r.y;
            acc[p][v].z += wl * l.z + wr * r.z;
            acc[p][v].w += wl * l.w + wr * r.w;
        }
    }
}

extern "C" __global__ void __launch_bounds__(NG * QL, MINB)
backproject(const float* __restrict__ sino, const double* __restrict__ f0, const double* __restrict__ dfc,
            const double* __restrict__ dfr, int n_om, int n_x, int nxp, int nqp, int n, int row0, int row1,
            float weight, float* __restrict__ image)
{
    // per chunk of AC angles, the thread block first tabulates each group's lowest bin k and its
    // 4 x 4 weights (shared by the QL threads of the group), then every thread uses the table;
    // a group that sees no measured bin gets k = 0 and zero weights, one needing more than 4
    // bins k = -1 (pixel by pixel)
    __shared__ int table_k[AC][NG];
    __shared__ float4 table_w[AC][4][NG];
    const int ql = threadIdx.x % QL, g = threadIdx.x / QL;
    const int tiles_x = (n + 2 * GX - 1) / (2 * GX);
    const int tr = row0 + (blockIdx.x / tiles_x) * GY * 2, tc = (blockIdx.x % tiles_x) * GX * 2;
    const int r0 = tr + (g / GX) * 2, c0 = tc + (g % GX) * 2;
    const int v0 = blockIdx.y * QL * QV + ql;  // float4 index of the thread's first q values
    const int nq4 = nqp / 4;
    const bool active = r0 < row1 && c0 < n && v0 < nq4;
    float4 acc[4][QV];
    #pragma unroll
    for (int p = 0; p < 4; ++p)
        #pragma unroll
        for (int v = 0; v < QV; ++v) acc[p][v] = make_float4(0.f, 0.f, 0.f, 0.f);
    const float4* rows = reinterpret_cast<const float4*>(sino);
    for (int a0 = 0; a0 < n_om; a0 += AC) {
        __syncthreads();
        for (int e = threadIdx.x; e < AC * NG; e += NG * QL) {
            const int aa = e / NG, gg = e % NG, a = a0 + aa;
            int k = 0;
            float4 w[4] = {};
            if (a < n_om) {
                const Bins b = group_bins(f0[a], dfc[a], dfr[a], tr + (gg / GX) * 2, tc + (gg % GX) * 2, row1, n, n_x);
                if (b.k != NONE) {
                    k = b.span <= 2 ? b.k : -1;
                    #pragma unroll
                    for (int p = 0; p < 4; ++p) {
                        const int o = b.bin[p] == NONE ? -2 : b.bin[p] - b.k;
                        const float l = 1.f - b.w[p], r = b.w[p];
                        w[p] = make_float4((o == 0) * l, (o == 1) * l + (o == 0) * r, (o == 2) * l + (o == 1) * r,
                                           (o == 2) * r);
                    }
                }
            }
            table_k[aa][gg] = k;
            #pragma unroll
            for (int p = 0; p < 4; ++p) table_w[aa][p][gg] = w[p];
        }
        __syncthreads();
        if (!active) continue;
        const int end = min(AC, n_om - a0);
        for (int aa = 0; aa < end; aa += AU) {
            int k[AU];
            bool fast = aa + AU <= end;
            #pragma unroll
            for (int u = 0; u < AU; ++u) {
                k[u] = aa + u < end ? table_k[aa + u][g] : 0;
                fast = fast && k[u] >= 0;
            }
            if (fast) {
                window<AU>(acc, rows, a0 + aa, aa, k, g, nxp, nq4, v0, table_w);
                continue;
            }
            #pragma unroll 1
            for (int u = 0; u < AU && aa + u < end; ++u) {
                const int k1[1] = {k[u]};
                if (k1[0] >= 0) window<1>(acc, rows, a0 + aa + u, aa + u, k1, g, nxp, nq4, v0, table_w);
                else pixels(acc, rows, a0 + aa + u, f0, dfc, dfr, r0, c0, row1, n, n_x, nxp, nq4, v0);
            }
        }
    }
    if (!active) return;
    float4* out = reinterpret_cast<float4*>(image);
    #pragma unroll
    for (int p = 0; p < 4; ++p) {
        const int r = r0 + (p >> 1), c = c0 + (p & 1);
        if (r >= row1 || c >= n) continue;
        float4* dst = out + ((long long)r * n + c) * nq4 + v0;
        #pragma unroll
        for (int v = 0; v < QV; ++v) {
            if (v0 + v * QL >= nq4) break;
            dst[v * QL] = make_float4(acc[p][v].x * weight, acc[p][v].y * weight,
                                      acc[p][v].z * weight, acc[p][v].w * weight);
        }
    }
}
"""


@functools.lru_cache(maxsize=None)
def _kernel(gx=GX, gy=GY, ql=QL, qv=QV, ac=AC, au=AU, minb=MINB):
    import cupy

    options = ("-std=c++17", f"-DGX={gx}", f"-DGY={gy}", f"-DQL={ql}", f"-DQV={qv}", f"-DAC={ac}", f"-DAU={au}",
               f"-DMINB={minb}")
    return cupy.RawModule(code=SOURCE, options=options).get_function("backproject")


class SliceGeometry:
    """What the kernels need of one slice's grid, on the device."""

    def __init__(self, x_mm, omega_deg, centre, n, nq, window, filter_method):
        import cupy

        self.x_mm, self.omega_deg, dx = _check_grid(x_mm, omega_deg)
        self.n_om, self.n_x = self.omega_deg.size, self.x_mm.size
        self.n = self.n_x if n is None else int(n)
        self.nq, self.nqp = int(nq), -(-int(nq) // 4) * 4
        self.nxp = self.n_x + PAD_BINS
        self.weight = np.float32(math.pi / self.n_om)
        self.lines = [cupy.asarray(v, np.float64) for v in index_lines(self.x_mm, self.omega_deg, centre, self.n)]
        if filter_method == "auto":
            filter_method = "matrix" if self.n_x <= MATRIX_FILTER_MAX_NX else "fft"
        if filter_method not in ("matrix", "fft"):
            raise ValueError(f"unknown filter method {filter_method!r}; choose 'auto', 'matrix' or 'fft'")
        self.filter_method = filter_method
        if filter_method == "matrix":
            padded = np.zeros((self.nxp, self.n_x), np.float32)  # zero rows: the padding bins
            padded[:self.n_x] = filter_matrix(self.n_x, abs(dx), window)
            self.matrix = cupy.asarray(padded)
        else:
            size, response = filter_response(self.n_x, window)
            self.fft_size = size
            self.response = cupy.asarray((response / abs(dx)).astype(np.float32))[:, None]

    def filter(self, chunk, out):
        """out (angles, nxp, nqp) = filtered chunk (angles, n_x, nqp), zero padding bins."""
        import cupy

        if self.filter_method == "matrix":
            cupy.matmul(self.matrix, chunk, out=out)
        else:
            spectrum = cupy.fft.rfft(chunk, n=self.fft_size, axis=1)
            spectrum *= self.response
            out[:, :self.n_x] = cupy.fft.irfft(spectrum, n=self.fft_size, axis=1)[:, :self.n_x]
            out[:, self.n_x:] = 0

    def backproject(self, filtered, image, row0=0, row1=None, config=(GX, GY, QL, QV, AC, AU, MINB)):
        """image[row0:row1] (n, n, nqp) = weight * back-projection of the filtered sinogram
        (n_omega, nxp, nqp), nqp a multiple of 4.
        `config`: the kernel's (GX, GY, QL, QV, AC, AU, MINB)."""
        row1 = self.n if row1 is None else row1
        gx, gy, ql, qv = config[:4]
        nqp = filtered.shape[2]
        tiles = (-(-(row1 - row0) // (2 * gy))) * (-(-self.n // (2 * gx)))
        grid = (tiles, -(-nqp // (4 * ql * qv)))
        _kernel(*config)(grid, (gx * gy * ql,), (filtered, *self.lines, np.int32(self.n_om), np.int32(self.n_x),
                                        np.int32(self.nxp), np.int32(nqp), np.int32(self.n), np.int32(row0),
                                        np.int32(row1), self.weight, image))


def fbp_device(sino, geometry: SliceGeometry, timings=None):
    """(n_omega, n_x, nq) CuPy sinogram -> (n, n, nq) CuPy image, all on the GPU."""
    import cupy

    g = geometry
    sino = cupy.asarray(sino, np.float32)
    if g.nqp != g.nq:
        sino = cupy.pad(sino, ((0, 0), (0, 0), (0, g.nqp - g.nq)))
    events = [cupy.cuda.Event() for _ in range(3)]
    events[0].record()
    filtered = cupy.empty((g.n_om, g.nxp, g.nqp), np.float32)
    g.filter(cupy.ascontiguousarray(sino), filtered)
    events[1].record()
    image = cupy.empty((g.n, g.n, g.nqp), np.float32)
    g.backproject(filtered, image)
    events[2].record()
    if timings is not None:
        events[2].synchronize()
        timings["filter_seconds"] = cupy.cuda.get_elapsed_time(events[0], events[1]) / 1e3
        timings["backproject_seconds"] = cupy.cuda.get_elapsed_time(events[1], events[2]) / 1e3
    return image[..., :g.nq] if g.nqp != g.nq else image


class _HostBuffers:
    """Two slots of pinned and device buffers for one slice size, kept between calls (pinning
    memory is slow); the pinned ones only when the caller's arrays are not pinned already."""

    def __init__(self, g, width, staged_in, staged_out):
        import cupy

        from bliss_lite.processing.gpu.staging import Stager, pinned_empty

        self.key = (g.n_om, g.n_x, g.n, width, staged_in, staged_out)
        self.host_in = [pinned_empty((g.n_om, g.n_x, width), np.float32) for _ in range(2)] if staged_in else None
        self.host_out = [pinned_empty((g.n, g.n, width), np.float32) for _ in range(2)] if staged_out else None
        self.sino = [cupy.empty((g.n_om, g.n_x, width), np.float32) for _ in range(2)]
        self.filtered = [cupy.empty((g.n_om, g.nxp, width), np.float32) for _ in range(2)]
        self.image = [cupy.empty((g.n, g.n, width), np.float32) for _ in range(2)]
        self.events = {name: [cupy.cuda.Event(disable_timing=True) for _ in range(2)]
                       for name in ("copied_in", "filtered", "projected", "copied_out")}
        self.stager = Stager()


_buffers = None


def _copy_2d(dst, dpitch, src, spitch, width, height, kind, stream):
    import cupy

    cupy.cuda.runtime.memcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, stream.ptr)


def fbp_host(sino, geometry: SliceGeometry, timings=None, out=None):
    """(n_omega, n_x, nq) NumPy sinogram -> (n, n, nq) NumPy image (`out` if given), through
    the GPU in chunks of Q_CHUNK q values, three at a time in flight: one crossing to the GPU,
    one filtered and back-projected, one crossing back. Pinned `sino` and `out` are copied
    directly (2-D copies of the chunk's columns); ordinary ones through pinned buffers."""
    import cupy

    from bliss_lite.processing.gpu.staging import is_pinned

    global _buffers
    g = geometry
    width = min(Q_CHUNK, g.nqp)
    out = np.empty((g.n, g.n, g.nq), np.float32) if out is None else out
    if out.shape != (g.n, g.n, g.nq) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {(g.n, g.n, g.nq)}")
    direct_in = sino.dtype == np.float32 and sino.flags.c_contiguous and is_pinned(sino)
    direct_out = is_pinned(out)
    key = (g.n_om, g.n_x, g.n, width, not direct_in, not direct_out)
    if _buffers is None or _buffers.key != key:
        _buffers = None
        _buffers = _HostBuffers(g, width, not direct_in, not direct_out)
    b, ev = _buffers, _buffers.events
    up, down, compute = (cupy.cuda.Stream(non_blocking=True) for _ in range(3))
    marks = [cupy.cuda.Event(), cupy.cuda.Event()]
    marks[0].record(up)
    chunks = [(q0, min(q0 + width, g.nq)) for q0 in range(0, g.nq, width)]
    pending = [None, None]

    def drain(j):
        """Wait for slot j's image chunk to be back; copy it into `out` if it was staged."""
        if pending[j] is None:
            return
        q0, q1, wp = pending[j]
        ev["copied_out"][j].synchronize()
        if not direct_out:
            staged = b.host_out[j].reshape(-1)[:g.n * g.n * wp].reshape(g.n, g.n, wp)
            b.stager.copy_rows(staged[..., :q1 - q0], out[..., q0:q1])
        pending[j] = None

    for c, (q0, q1) in enumerate(chunks):
        j, w = c % 2, q1 - q0
        wp = -(-w // 4) * 4
        up.wait_event(ev["filtered"][j])  # the slot's device sinogram is free again
        if direct_in:
            if wp != w:
                with up:
                    b.sino[j][..., w:wp] = 0
            _copy_2d(b.sino[j].data.ptr, wp * 4, sino.ctypes.data + q0 * 4, g.nq * 4, w * 4, g.n_om * g.n_x, 1, up)
        else:
            ev["copied_in"][j].synchronize()  # the slot's pinned buffer is free again
            staged = b.host_in[j].reshape(-1)[:g.n_om * g.n_x * wp].reshape(g.n_om, g.n_x, wp)
            if wp != w:
                staged[..., w:] = 0
            b.stager.copy_rows(sino[..., q0:q1], staged[..., :w])
            cupy.cuda.runtime.memcpyAsync(b.sino[j].data.ptr, staged.ctypes.data, staged.nbytes, 1, up.ptr)
        ev["copied_in"][j].record(up)
        compute.wait_event(ev["copied_in"][j])
        compute.wait_event(ev["copied_out"][j])  # the slot's device image is free again
        sino_j = b.sino[j].reshape(-1)[:g.n_om * g.n_x * wp].reshape(g.n_om, g.n_x, wp)
        filtered = b.filtered[j].reshape(-1)[:g.n_om * g.nxp * wp].reshape(g.n_om, g.nxp, wp)
        image = b.image[j].reshape(-1)[:g.n * g.n * wp].reshape(g.n, g.n, wp)
        with compute:
            g.filter(sino_j, filtered)
            ev["filtered"][j].record(compute)
            g.backproject(filtered, image)
            ev["projected"][j].record(compute)
        drain(j)
        down.wait_event(ev["projected"][j])
        if direct_out:
            _copy_2d(out.ctypes.data + q0 * 4, g.nq * 4, image.data.ptr, wp * 4, w * 4, g.n * g.n, 2, down)
        else:
            cupy.cuda.runtime.memcpyAsync(b.host_out[j].ctypes.data, image.data.ptr, g.n * g.n * wp * 4, 2,
                                          down.ptr)
        ev["copied_out"][j].record(down)
        pending[j] = (q0, q1, wp)
    marks[1].record(down)
    drain(len(chunks) % 2)
    drain((len(chunks) + 1) % 2)
    if timings is not None:
        timings["seconds_on_gpu"] = cupy.cuda.get_elapsed_time(marks[0], marks[1]) / 1e3
    return out


def fbp(sino, x_mm, omega_deg, centre, n=None, window="ramp", filter_method="auto", timings=None, out=None):
    """`processing.fbp.fbp` on the GPU: a CuPy sinogram gives a CuPy image, a NumPy one a NumPy
    image (`out`, when given: a pinned one is written straight from the GPU)."""
    import cupy

    on_device = isinstance(sino, cupy.ndarray)
    if on_device:
        stack, squeeze = (sino[..., None], True) if sino.ndim == 2 else (sino, False)
        if stack.ndim != 3:
            raise ValueError(f"sinogram must be (n_omega, n_x) or (n_omega, n_x, nq), got shape {sino.shape}")
    else:
        stack, squeeze = _as_stack(sino)
    geometry = SliceGeometry(x_mm, omega_deg, centre, n, stack.shape[2], window, filter_method)
    if stack.shape[:2] != (geometry.n_om, geometry.n_x):
        raise ValueError(f"sinogram shape {stack.shape} does not match "
                         f"{geometry.n_om} angles x {geometry.n_x} positions")
    if on_device:
        image = fbp_device(stack, geometry, timings)
    else:
        image = fbp_host(stack, geometry, timings, None if out is None else out.reshape(out.shape[:2] + (-1,)))
    return image[..., 0] if squeeze else image
