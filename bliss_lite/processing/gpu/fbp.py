"""Filtered back-projection of every q bin of an XRD-CT slice at once, on the GPU.

Same geometry, filter and interpolation rule as `processing/fbp.py` (the index lines and
filter matrix of `tomo_grid.py`, fbp's `detector_bins`), so the images agree to float32
rounding (measured: ~1e-6 of the image maximum). The filter is the n_x x n_x Toeplitz matrix,
as on the CPU (FFT above 1024 positions), through cuBLAS sgemm batched over the angles; for
the plain ramp, whose kernel is zero at every even lag but 0, two half-size GEMMs (even rows
from odd bins, odd from even) after one pass for the diagonal: 4.8 -> 3.75 ms for
400 x 600 x 1000 on an H200. Tried and dropped: TF32 tensor cores (2.1 ms, but 9e-4 of the
image maximum off the CPU: over the 1e-4 allowed), 3xTF32 (operands split into TF32 high and
low parts, float32 accuracy: 4.45 ms, the split copies cost what the tensor cores save),
filtering ranges of q on a second stream beside the back-projection (no gain: both parts fill
the GPU alone). The back-projection is `gpu/backproject.py`.

`fbp` takes a CuPy array (already on the GPU, e.g. from GPU integration: the image stays there
too) or a NumPy array: then chunks of q values (64, then 128 each) cross the bus while the
previous chunk is filtered and back-projected and the one before crosses back (2-D copies
straight from and to pinned arrays; ordinary arrays go through pinned buffers, copied by a
few threads); the two slots' chunks run on two streams, so one chunk's filter overlaps the
last one's tail (34.8 -> 33.8 ms pinned host to host, with the smaller first chunk).
Page-locking the caller's arrays in place (cudaHostRegister) instead was slower: 238 ms
against 141 ms for 400 x 600 x 1000 on an H200.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from bliss_lite.processing.gpu.backproject import CONFIG, launch
from bliss_lite.processing.tomo_grid import (
    MATRIX_FILTER_MAX_NX,
    as_stack,
    check_grid,
    filter_matrix,
    filter_response,
    index_lines,
)

PAD_BINS = 3  # zero detector bins after the last, read by a group's 4-bin window
Q_CHUNK = 128  # q values per chunk crossing the bus (host arrays)
Q_FIRST = 64  # q values of the first chunk: a smaller one starts the GPU's work sooner
Q_ALIGN = 128  # q rows padded (zeros) to whole thread blocks of any configuration: loads need no bounds check
Q_BLOCK = 4 * CONFIG[2] * CONFIG[3]  # q values of one thread block of the default configuration
PARITY_ZERO = 1e-12  # even lags this small against lag 0 count as zeros (the plain ramp's: ~1e-16)

DIAGONAL = r"""
extern "C" __global__ void diagonal(const float* __restrict__ src, float* __restrict__ out, int n_x, int nxp,
                                    int nq, int nqp, float h0)
{
    // out (angles, nxp, nqp) = h0 * src (angles, n_x, nq), zero in the padding bins and q values;
    // a thread block per output row (an index per element in 64 bits took 1.08 ms, this 0.67)
    const int row = blockIdx.x, a = row / nxp, j = row - a * nxp;
    float* dst = out + (long long)row * nqp;
    const float* s = src + ((long long)a * n_x + min(j, n_x - 1)) * nq;
    for (int q = threadIdx.x; q < nqp; q += blockDim.x) dst[q] = j < n_x && q < nq ? h0 * s[q] : 0.f;
}
"""


@functools.lru_cache(maxsize=None)
def _diagonal_kernel():
    import cupy

    return cupy.RawModule(code=DIAGONAL).get_function("diagonal")


@functools.lru_cache(maxsize=8)
def _device_lines(x_bytes, omega_bytes, centre, n):
    """The index lines on the device, kept for the next slice of the same scan."""
    import cupy

    x_mm, omega_deg = np.frombuffer(x_bytes), np.frombuffer(omega_bytes)
    return [cupy.asarray(v, np.float64) for v in index_lines(x_mm, omega_deg, centre, n)]


@functools.lru_cache(maxsize=8)
def _device_matrix(n_x, nxp, dx, window):
    """The filter on the device: ("parity", h0, M[even, odd], M[odd, even]) when every even lag
    but 0 is zero (the plain ramp: Kak & Slaney's kernel vanishes there, so an even bin's
    output takes odd bins and itself only, and the reverse: half the products), else ("full",
    the matrix with zero rows for the padding bins)."""
    import cupy

    matrix = filter_matrix(n_x, dx, window)
    lag = np.subtract.outer(np.arange(n_x), np.arange(n_x))
    h0 = float(matrix[0, 0])
    if n_x >= 4 and np.abs(matrix[(lag % 2 == 0) & (lag != 0)]).max() <= PARITY_ZERO * abs(h0):
        return ("parity", np.float32(h0), cupy.asarray(np.ascontiguousarray(matrix[0::2, 1::2])),
                cupy.asarray(np.ascontiguousarray(matrix[1::2, 0::2])))
    padded = np.zeros((nxp, n_x), np.float32)
    padded[:n_x] = matrix
    return ("full", cupy.asarray(padded))


class SliceGeometry:
    """What the kernels need of one slice's grid, on the device."""

    def __init__(self, x_mm, omega_deg, centre, n, nq, window, filter_method):
        import cupy

        self.x_mm, self.omega_deg, dx = check_grid(x_mm, omega_deg)
        self.n_om, self.n_x = self.omega_deg.size, self.x_mm.size
        self.n = self.n_x if n is None else int(n)
        self.nq, self.nqp = int(nq), -(-int(nq) // Q_ALIGN) * Q_ALIGN
        self.nxp = self.n_x + PAD_BINS
        self.weight = np.float32(math.pi / self.n_om)
        self.lines = _device_lines(self.x_mm.tobytes(), self.omega_deg.tobytes(), float(centre), self.n)
        if filter_method == "auto":
            filter_method = "matrix" if self.n_x <= MATRIX_FILTER_MAX_NX else "fft"
        if filter_method not in ("matrix", "fft"):
            raise ValueError(f"unknown filter method {filter_method!r}; choose 'auto', 'matrix' or 'fft'")
        self.filter_method = filter_method
        if filter_method == "matrix":
            self.matrix = _device_matrix(self.n_x, self.nxp, abs(dx), window)
        else:
            size, response = filter_response(self.n_x, window)
            self.fft_size = size
            self.response = cupy.asarray((response / abs(dx)).astype(np.float32))[:, None]

    def filter(self, chunk, out):
        """out (angles, nxp, nqp) = filtered chunk (angles, n_x, nq), nq <= nqp; the padding bins
        and q values of out are zeros. The matrix filter is cuBLAS strided-batched sgemm over
        the angles, writing straight into the padded rows (no padded copy of the sinogram): for
        the plain ramp, out = h0 * chunk (one pass that also zeroes the padding), then += the
        even rows from the odd ones and the odd rows from the even ones (two half-size GEMMs
        through strided views), else one GEMM of the whole matrix."""
        import cupy

        chunk = cupy.ascontiguousarray(chunk, np.float32)
        angles, n_x, nq = chunk.shape
        nqp = out.shape[2]
        if self.filter_method == "fft":
            spectrum = cupy.fft.rfft(chunk, n=self.fft_size, axis=1)
            spectrum *= self.response
            out[:, :n_x, :nq] = cupy.fft.irfft(spectrum, n=self.fft_size, axis=1)[:, :n_x]
            out[:, n_x:, :nq] = 0
        elif self.matrix[0] == "full":
            _sgemm(nq, self.nxp, n_x, self.matrix[1], chunk, 0, nq, out, 0, nqp, 0.0)
        else:
            _, h0, even_odd, odd_even = self.matrix
            _diagonal_kernel()((angles * self.nxp,), (256,), (chunk, out, np.int32(n_x), np.int32(self.nxp),
                                                               np.int32(nq), np.int32(nqp), h0))
            n_even, n_odd = even_odd.shape
            _sgemm(nq, n_even, n_odd, even_odd, chunk, 1, 2 * nq, out, 0, 2 * nqp, 1.0)
            _sgemm(nq, n_odd, n_even, odd_even, chunk, 0, 2 * nq, out, 1, 2 * nqp, 1.0)
            return
        if nqp > nq:
            out[..., nq:] = 0

    def backproject(self, filtered, image, row0=0, row1=None, config=CONFIG, weight=None):
        """image[row0:row1] (n, n, nqp) = weight * back-projection of the filtered sinogram
        (n_omega, nxp, nqp), nqp a multiple of Q_ALIGN. `weight`: instead of pi / n_omega
        (SIRT's A^T); `config`: the kernel's (see `gpu/backproject.py`)."""
        launch(filtered, image, self.lines, self.n_om, self.n_x, self.nxp, self.n,
               self.weight if weight is None else weight, row0, self.n if row1 is None else row1, config)


def _sgemm(m, n, k, matrix, chunk, row, lda, out, out_row, ldc, beta):
    """out[a]'s rows out_row, out_row + ldc / nqp, ... (m q values each) = matrix (n x k) @
    chunk[a]'s rows row, row + lda / nq, ... (+ beta * out): out[a]^T = chunk[a]^T @ matrix^T,
    column-major as cuBLAS sees the row-major arrays; one strided-batched sgemm over the angles."""
    import cupy
    from cupy_backends.cuda.libs import cublas

    angles, n_x, nq = chunk.shape
    nxp, nqp = out.shape[1:]
    one, b = np.ones(1, np.float32), np.full(1, beta, np.float32)
    cublas.sgemmStridedBatched(cupy.cuda.device.get_cublas_handle(), cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N,
                               m, n, k, one.ctypes.data, chunk.data.ptr + row * nq * 4, lda, n_x * nq,
                               matrix.data.ptr, k, 0, b.ctypes.data, out.data.ptr + out_row * nqp * 4, ldc,
                               nxp * nqp, angles)


def fbp_device(sino, geometry: SliceGeometry, timings=None):
    """(n_omega, n_x, nq) CuPy sinogram -> (n, n, nq) CuPy image, all on the GPU. Filtering
    ranges of q on a second stream beside the back-projection of the previous range gained
    nothing (both parts keep the GPU busy alone): one after the other."""
    import cupy

    g = geometry
    events = [cupy.cuda.Event() for _ in range(3)]
    events[0].record()
    filtered = cupy.empty((g.n_om, g.nxp, g.nqp), np.float32)
    g.filter(sino, filtered)
    events[1].record()
    image = cupy.empty((g.n, g.n, g.nqp), np.float32)
    g.backproject(filtered, image)
    events[2].record()
    if timings is not None:
        events[2].synchronize()
        timings["filter_seconds"] = cupy.cuda.get_elapsed_time(events[0], events[1]) / 1e3
        timings["backproject_seconds"] = cupy.cuda.get_elapsed_time(events[1], events[2]) / 1e3
    return image[..., :g.nq] if g.nqp != g.nq else image  # a view: no 640 MB copy


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
    width = min(max(Q_CHUNK, Q_FIRST), g.nqp)  # multiples of Q_BLOCK
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
    up, down = (cupy.cuda.Stream(non_blocking=True) for _ in range(2))
    computes = [cupy.cuda.Stream(non_blocking=True) for _ in range(2)]  # a slot's own: its chunks stay in order
    marks = [cupy.cuda.Event(), cupy.cuda.Event()]
    marks[0].record(up)
    starts = [0] + list(range(min(Q_FIRST, g.nq), g.nq, Q_CHUNK))
    chunks = [(q0, q1) for q0, q1 in zip(starts, starts[1:] + [g.nq])]
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
        compute = computes[j]  # beside the other slot's: one chunk's filter overlaps the last one's tail
        wp = -(-w // Q_BLOCK) * Q_BLOCK
        sino_j = b.sino[j].reshape(-1)[:g.n_om * g.n_x * wp].reshape(g.n_om, g.n_x, wp)
        up.wait_event(ev["filtered"][j])  # the slot's device sinogram is free again
        if direct_in:
            if wp != w:
                with up:
                    sino_j[..., w:] = 0
            _copy_2d(sino_j.data.ptr, wp * 4, sino.ctypes.data + q0 * 4, g.nq * 4, w * 4, g.n_om * g.n_x, 1, up)
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

    stack, squeeze = as_stack(sino)
    geometry = SliceGeometry(x_mm, omega_deg, centre, n, stack.shape[2], window, filter_method)
    if stack.shape[:2] != (geometry.n_om, geometry.n_x):
        raise ValueError(f"sinogram shape {stack.shape} does not match "
                         f"{geometry.n_om} angles x {geometry.n_x} positions")
    if isinstance(stack, cupy.ndarray):
        image = fbp_device(stack, geometry, timings)
    else:
        image = fbp_host(stack, geometry, timings, None if out is None else out.reshape(out.shape[:2] + (-1,)))
    return image[..., 0] if squeeze else image
