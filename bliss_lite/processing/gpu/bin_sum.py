"""The integration matrix times a batch of int32 frames on the GPU.

Without pixel splitting every pixel feeds at most one bin (pyFAI's CSR rows are rings of
pixels), so the product is a weighted histogram: read each frame once, in pixel order, with
its int16 bin index beside it (the same form as the CPU's `csr_kernels`). One thread block
takes a range of pixels of one frame and sums into a shared-memory histogram; neighbouring
pixels mostly fall in the same bin, so a warp first adds runs of equal bins with a segmented
scan (5 shuffles) and only each run's last lane updates shared memory, which avoids 32-way
conflicts on one address. The block then adds its histogram to the frame's pattern in
global memory. Split pixels (several bins each) go through cuSPARSE instead
(cupyx.scipy.sparse, float32 frames).
"""
from __future__ import annotations

import functools

import numpy as np

THREADS = 256
CHUNKS_PER_FRAME = 48  # thread blocks per frame: each adds its histogram once into global memory
MAX_SHARED = 200 * 1024  # a histogram larger than this (50,000 bins) goes through cuSPARSE

SOURCE = r"""
template <typename Bin>
__device__ void bin_sum(const int* __restrict__ frames, long long stride, const Bin* __restrict__ bins,
                        const float* __restrict__ coefs, long long npix, int nbins, long long chunk,
                        float* __restrict__ out)
{
    extern __shared__ float hist[];
    const int f = blockIdx.y, lane = threadIdx.x & 31;
    const long long p0 = blockIdx.x * chunk, p1 = min(p0 + chunk, npix);
    for (int i = threadIdx.x; i <= nbins; i += blockDim.x) hist[i] = 0.f;
    __syncthreads();
    const int* frame = frames + f * stride;
    for (long long base = p0; base < p1; base += blockDim.x) {
        const long long p = base + threadIdx.x;
        int b = nbins;
        float v = 0.f;
        if (p < p1) {
            b = bins[p];
            v = (float)frame[p];
            if (coefs) v *= coefs[p];
        }
        const int prev = __shfl_up_sync(0xffffffffu, b, 1);
        const unsigned heads = __ballot_sync(0xffffffffu, lane == 0 || prev != b);
        const int start = 31 - __clz(heads & (0xffffffffu >> (31 - lane)));
        #pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
            const float o = __shfl_up_sync(0xffffffffu, v, d);
            if (lane - d >= start) v += o;
        }
        const bool last = lane == 31 || ((heads >> (lane + 1)) & 1u);
        if (last && b < nbins) atomicAdd(&hist[b], v);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nbins; i += blockDim.x) {
        const float h = hist[i];
        if (h != 0.f) atomicAdd(&out[(long long)f * nbins + i], h);
    }
}

extern "C" __global__ void bin_sum_u16(const int* frames, long long stride, const unsigned short* bins,
                                       const float* coefs, long long npix, int nbins, long long chunk, float* out)
{ bin_sum<unsigned short>(frames, stride, bins, coefs, npix, nbins, chunk, out); }

extern "C" __global__ void bin_sum_i32(const int* frames, long long stride, const int* bins,
                                       const float* coefs, long long npix, int nbins, long long chunk, float* out)
{ bin_sum<int>(frames, stride, bins, coefs, npix, nbins, chunk, out); }
"""


@functools.lru_cache(maxsize=None)
def _module():
    import cupy

    return cupy.RawModule(code=SOURCE, options=("-std=c++17",))


class BinSum:
    """`matrix @ frames` for one scipy CSR matrix (bins x pixels), on the device.

    `__call__(frames, out, stream)`: frames (k, stride) int32 device array (pixels first in each
    row), out (k, nbins) float32 device array, overwritten. Asynchronous on `stream`."""

    def __init__(self, matrix):
        import cupy
        import cupyx.scipy.sparse

        self.nbins, self.npix = matrix.shape
        csc = matrix.tocsc()
        csc.eliminate_zeros()  # masked pixels (coefficient 0) belong to no bin
        per_pixel = np.diff(csc.indptr)
        self.histogram = per_pixel.max(initial=0) <= 1 and 4 * (self.nbins + 1) <= MAX_SHARED
        if self.histogram:
            small = self.nbins < 2**16 - 1
            bins = np.full(self.npix, self.nbins, np.uint16 if small else np.int32)
            pixels = np.repeat(np.arange(self.npix), per_pixel)
            bins[pixels] = csc.indices
            self.bins = cupy.asarray(bins)
            self.coefs = None
            if not np.all(csc.data == 1.0):
                coefs = np.zeros(self.npix, np.float32)
                coefs[pixels] = csc.data
                self.coefs = cupy.asarray(coefs)
            self._kernel = _module().get_function("bin_sum_u16" if small else "bin_sum_i32")
            if 4 * (self.nbins + 1) > 48 * 1024:
                self._kernel.max_dynamic_shared_size_bytes = MAX_SHARED
        else:
            self.sparse = cupyx.scipy.sparse.csr_matrix(matrix.astype(np.float32))

    def __call__(self, frames, out, stream=None):
        import cupy

        k, stride = frames.shape
        with (stream if stream is not None else cupy.cuda.Stream.null):
            if not self.histogram:
                out[...] = (self.sparse @ frames[:, :self.npix].astype(np.float32).T).T
                return out
            out.fill(0)
            chunk = -(-self.npix // CHUNKS_PER_FRAME)
            chunk = -(-chunk // THREADS) * THREADS
            grid = (-(-self.npix // chunk), k)
            coefs = self.coefs if self.coefs is not None else np.uintp(0)
            self._kernel(grid, (THREADS,), (frames, np.int64(stride), self.bins, coefs, np.int64(self.npix),
                                           np.int32(self.nbins), np.int64(chunk), out),
                         shared_mem=4 * (self.nbins + 1))
        return out
