"""The back-projection kernel of the GPU FBP and SIRT: every q bin at once, q innermost.

A plain gather kernel. A thread holds a 2 x 2 group of pixels and 8 q values (2 float4). The
four pixels of a group project within |cos| + |sin| <= 1.42 bins of each other, so at each
angle their 8 interpolation operands lie in 4 consecutive detector bins: the thread loads
those 4 rows (16-byte loads, coalesced over the 8 threads that share the group) and applies a
4 x 4 weight table, half the loads of pixel-by-pixel gathering. The tables (lowest bin and
weights, per group and angle) are made once per thread block, 16 angles at a time, in shared
memory: computed by each thread they cost as much as the arithmetic they feed. Groups that
need more bins (an image grid coarser than the positions) go pixel by pixel. The detector
index is computed in float64, as on the CPU, so a pixel at the edge of the measured range is
kept or dropped alike. A thread block covers a 16 x 4 pixel tile and 64 q values. Rows are padded with zero q values to
whole thread blocks, so no load needs a bounds check (that took 32 -> 29 ms). When none of
a warp's groups needs the 4th bin at an angle (span <= 1: most angles near 0 and 90 degrees)
the warp reads and weighs 3 rows (29 -> 28 ms). A chunk of 16 angles whose groups all take
4-bin windows runs as straight-line code, so the compiler hoists its loads (28 -> 25.2 ms),
and a tile that sees no measured position during a chunk skips it (-> 24.9 ms). The angles
are split over launches, and large images walked in bands of tile rows, so that the sinogram
rows the blocks in flight read stay in L2 (`plan`): 1000 x 1570 x 1000, 476 -> 405 ms.

Measured on an H200, 400 x 600 x 1000: 24.9 ms (3.9e12 interpolations/s). ncu, before the
unrolling: warps wait on L1 (long scoreboard ~2 cycles an instruction), FMAs are ~80 % of the
hot loop; the FMA and L1 bounds of this scheme are ~11.5 ms each. Slower variants tried:
each chunk's rows staged in shared memory with cp.async (40-48 ms), prefetching rows into L2
(+3 ms), larger or smaller tiles and q ranges (30-46 ms), q blocks fastest in the grid (+3 ms),
an unrolled 3-bin variant of whole chunks (+1.4 ms: more registers spilled).
"""
from __future__ import annotations

import functools

import numpy as np

# measured on an H200, 400 x 600 x 1000 (ms), (GX, GY, QL, QV, AC, AU, MINB): (8, 8, 8, 4, 8, 1, 1) 44-46,
# (8, 8, 8, 1, 8, 1, 2) 38.5, (8, 4, 8, 2, 8, 2, 2) 31.4, (4, 4, 8, 2, 16, 2, 4) 29.0, (8, 2, 8, 2, 16, 2, 4) 28.9;
# with N3 and UR (unrolled chunks): (8, 2, 8, 2, 16, 1, 4) 25.2, AC 32: 30.3, AC 24: 27.3, MINB 3: 27.2, QV 1: 31.7
GX, GY = 8, 2  # 2 x 2 pixel groups per thread block, along columns and rows: a 16 x 4 tile
QL, QV = 8, 2  # threads along q per group, float4s per thread: 64 q values per thread block
AC = 16  # angles tabulated at a time in shared memory
AU = 1  # angles whose loads are issued together (UR unrolls anyway)
MINB = 4  # thread blocks per multiprocessor the registers must allow
N3 = 1  # 3-bin windows when a warp's groups need no 4th bin
UR = 1  # 1: a chunk whose groups all take 4-bin windows runs as one unrolled block

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

// acc += the NA angles' contributions through the NB-bin window (4, or 3 when no pixel of the
// warp's groups needs the 4th) at rows k[u] (table index aa); rows are padded to whole thread
// blocks of q values, so no load needs a bounds check
template <int NA, int NB>
__device__ __forceinline__ void window(float4 (&acc)[4][QV], const float4* rows, int a, int aa, const int (&k)[NA],
                                       int g, int nxp, int nq4, int v0, const float4 (*table_w)[4][NG]) {
    float4 s[NA][QV][NB];
    #pragma unroll
    for (int u = 0; u < NA; ++u) {  // every load first: NB NA QV in flight
        const float4* row = rows + (size_t)((a + u) * nxp + k[u]) * nq4 + v0;
        #pragma unroll
        for (int b = 0; b < NB; ++b) {
            #pragma unroll
            for (int v = 0; v < QV; ++v) s[u][v][b] = __ldg(row + v * QL);
            row += nq4;
        }
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
                for (int b = 0; b < NB; ++b) {
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
            float weight, float* __restrict__ image, int a_begin, int a_end, int band)
{
    // per chunk of AC angles, the thread block first tabulates each group's lowest bin k and its
    // 4 x 4 weights (shared by the QL threads of the group), then every thread uses the table;
    // a group that sees no measured bin gets k = 0 and zero weights, one needing more than 4
    // bins k = -1 (pixel by pixel)
    __shared__ int table_k[AC][NG];
    __shared__ float4 table_w[AC][4][NG];
    const int ql = threadIdx.x % QL, g = threadIdx.x / QL;
    const int tiles_x = (n + 2 * GX - 1) / (2 * GX), tiles_y = (row1 - row0 + 2 * GY - 1) / (2 * GY);
    const int tile = blockIdx.x, qb = blockIdx.y;
    int ty = tile / tiles_x, tx = tile % tiles_x;
    if (band > 0) {  // bands of `band` tile rows, each walked column by column: the blocks in flight cover a
                     // compact patch of the image, whose projections share detector bins
        const int b = tile / (band * tiles_x), local = tile - b * band * tiles_x;
        const int rows = min(band, tiles_y - b * band);
        ty = b * band + local % rows;
        tx = local / rows;
    }
    const int tr = row0 + ty * GY * 2, tc = tx * GX * 2;
    const int r0 = tr + (g / GX) * 2, c0 = tc + (g % GX) * 2;
    const int v0 = qb * QL * QV + ql;  // float4 index of the thread's first q values
    const int nq4 = nqp / 4;
    const bool active = r0 < row1 && c0 < n && v0 < nq4;
    float4 acc[4][QV];
    #pragma unroll
    for (int p = 0; p < 4; ++p)
        #pragma unroll
        for (int v = 0; v < QV; ++v) acc[p][v] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (LOAD && active) {  // a later launch: go on from the unweighted sums the earlier ones stored
        #pragma unroll
        for (int p = 0; p < 4; ++p) {
            const int r = r0 + (p >> 1), c = c0 + (p & 1);
            if (r >= row1 || c >= n) continue;
            const float4* src = reinterpret_cast<const float4*>(image) + ((long long)r * n + c) * nq4 + v0;
            #pragma unroll
            for (int v = 0; v < QV; ++v) if (v0 + v * QL < nq4) acc[p][v] = src[v * QL];
        }
    }
    const float4* rows = reinterpret_cast<const float4*>(sino);
    for (int a0 = a_begin; a0 < a_end; a0 += AC) {
        __syncthreads();
        bool seen = false;  // some pixel of the tile lies in the measured range at some angle of the chunk
        for (int e = threadIdx.x; e < AC * NG; e += NG * QL) {
            const int aa = e / NG, gg = e % NG, a = a0 + aa;
            int k = 0;
            float4 w[4] = {};
            if (a < a_end) {
                const Bins b = group_bins(f0[a], dfc[a], dfr[a], tr + (gg / GX) * 2, tc + (gg % GX) * 2, row1, n, n_x);
                seen = seen || b.k != NONE;
                if (b.k != NONE) {
                    k = b.span <= 2 ? 2 * b.k + (b.span == 2) : -1;  // low bit: the 4th bin is used
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
        if (!__syncthreads_or(seen)) continue;  // a corner tile outside the beam for the whole chunk
        if (!active) continue;
        const int end = min(AC, a_end - a0);
#if UR
        if (end == AC) {  // a whole chunk of 4-bin windows: straight-line code, loads hoisted freely
            bool all = true;
            int kk[AC];
            #pragma unroll
            for (int aa = 0; aa < AC; ++aa) {
                const int code = table_k[aa][g];
                all = all && code >= 0;
                kk[aa] = code >> 1;
            }
            if (all) {
                #pragma unroll
                for (int aa = 0; aa < AC; aa += AU) {
                    int k[AU];
                    #pragma unroll
                    for (int u = 0; u < AU; ++u) k[u] = kk[aa + u];
                    window<AU, 4>(acc, rows, a0 + aa, aa, k, g, nxp, nq4, v0, table_w);
                }
                continue;
            }
        }
#endif
        for (int aa = 0; aa < end; aa += AU) {
            int k[AU];
            bool fast = aa + AU <= end, narrow = true;
            #pragma unroll
            for (int u = 0; u < AU; ++u) {
                const int code = aa + u < end ? table_k[aa + u][g] : 0;
                fast = fast && code >= 0;
                narrow = narrow && !(code & 1);
                k[u] = code >> 1;
            }
            if (fast) {
#if N3
                if (__all_sync(__activemask(), narrow)) window<AU, 3>(acc, rows, a0 + aa, aa, k, g, nxp, nq4, v0, table_w);
                else window<AU, 4>(acc, rows, a0 + aa, aa, k, g, nxp, nq4, v0, table_w);
#else
                window<AU, 4>(acc, rows, a0 + aa, aa, k, g, nxp, nq4, v0, table_w);
#endif
                continue;
            }
            #pragma unroll 1
            for (int u = 0; u < AU && aa + u < end; ++u) {
                const int k1[1] = {k[u]};
                if (k1[0] >= 0) window<1, 4>(acc, rows, a0 + aa + u, aa + u, k1, g, nxp, nq4, v0, table_w);
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
def _kernel(gx=GX, gy=GY, ql=QL, qv=QV, ac=AC, au=AU, minb=MINB, n3=N3, ur=UR, load=0):
    """The kernel of a configuration; `load`: it starts from the sums in the image (a later launch
    over the angles). A compile-time switch: tested at run time, it cost the hot loop 3-9 %."""
    import cupy

    options = ("-std=c++17", f"-DGX={gx}", f"-DGY={gy}", f"-DQL={ql}", f"-DQV={qv}", f"-DAC={ac}", f"-DAU={au}",
               f"-DMINB={minb}", f"-DN3={n3}", f"-DUR={ur}", f"-DLOAD={load}")
    return cupy.RawModule(code=SOURCE, options=options).get_function("backproject")


CONFIG = (GX, GY, QL, QV, AC, AU, MINB, N3, UR)
LAUNCH_ANGLES = 800  # at most this many angles a launch, and two launches from 4 AC angles on
BAND_MIN_N = 512  # images wider than this are walked in bands of BAND tile rows
BAND = 32


def launch(filtered, image, lines, n_om, n_x, nxp, n, weight, row0, row1, config=CONFIG, angles=None, band=None):
    """image[row0:row1] = weight * back-projection of filtered (n_om, nxp, nqp) float32 (CuPy),
    image (n, n, nqp); lines: the (f0, dfc, dfr) float64 CuPy arrays of `fbp.index_lines`.
    `angles`: angles a launch (a multiple of the configuration's AC, or >= n_om); each launch
    after the first goes on from the unweighted sums the last one stored, angle by angle as one
    launch would, so the image is the same to the bit. `band`: tile rows a band of the blocks'
    order (0: row by row). None: `plan`'s."""
    gx, gy, ql, qv, ac = config[:5]
    nqp = filtered.shape[2]
    if nqp % (4 * ql * qv):
        raise ValueError(f"back-projection: q rows of {nqp} are not whole blocks of {4 * ql * qv}")
    default_angles, default_band = plan(n_om, n, ac)
    angles = default_angles if angles is None else int(angles)
    band = default_band if band is None else int(band)
    if angles <= 0 or (angles % ac and angles < n_om):
        raise ValueError(f"back-projection: {angles} angles a launch is neither a multiple of {ac} nor all {n_om}")
    tiles = (-(-(row1 - row0) // (2 * gy))) * (-(-n // (2 * gx)))
    grid = (tiles, nqp // (4 * ql * qv))
    for a0 in range(0, n_om, angles):
        a1 = min(n_om, a0 + angles)
        _kernel(*config, load=int(a0 > 0))(
            grid, (gx * gy * ql,), (filtered, *lines, np.int32(n_om), np.int32(n_x), np.int32(nxp), np.int32(nqp),
                                    np.int32(n), np.int32(row0), np.int32(row1),
                                    np.float32(weight if a1 == n_om else 1.0), image, np.int32(a0), np.int32(a1),
                                    np.int32(band)))


def plan(n_om, n, ac=AC):
    """(angles a launch, band) for a slice. The blocks in flight (~4 a multiprocessor) are at
    every stage of their angle loop, so together they read the rows of all the launch's angles
    over the bins their patch of the image projects onto: for 1000 x 1570 x 1000 in one launch,
    row by row, ~1570 x 660 bins x 256 B = 265 MB against the 50 MB of L2. Two launches halve
    that, bands of 32 tile rows (a 128-pixel-high patch) shrink the bins: 476 -> 405 ms on an
    H200 (2026-12-02), bit for bit; 400 x 600 x 1000: 25.1 -> 24.8 ms with two launches, rows
    (bands there: +0.3-1 ms). Tried: 2-13 launches, bands of 8-64 rows (`benchmarks/backproject_sweep.py`)."""
    launches = max(2, -(-n_om // LAUNCH_ANGLES)) if n_om >= 4 * ac else 1
    per_launch = -(-n_om // launches)
    angles = -(-per_launch // ac) * ac
    return angles, (BAND if n > BAND_MIN_N else 0)
