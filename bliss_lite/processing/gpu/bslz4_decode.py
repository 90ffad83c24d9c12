"""Bitshuffle-LZ4 frames decoded on the GPU: the compressed bytes cross the bus (~7x fewer).

One warp per LZ4 block (8192 bytes of bit-shuffled int32). The warp's lanes read each token
together (one broadcast load), then copy the literals and the match in parallel into shared
memory: byte i of a match is out[start - offset + i % offset], always a byte written before
the match began, so no lane waits for another. The block is then bit-unshuffled from shared
memory straight into the frame: each lane takes 8 elements, gathers their 32 bit rows (one
byte each), transposes four 8x8 bit matrices in registers and stores two 16-byte words.
Block starts come from the host (`bslz4_format.index_chunks`). A bad block (offset before
the block's start, a length past its end, a wrong decoded size) flags its frame in `errors`
and never writes outside its block.
"""
from __future__ import annotations

import functools

import numpy as np

WARPS = 4  # LZ4 blocks per thread block (one warp each); shared memory 4 x 8 kB

SOURCE = r"""
__device__ __forceinline__ unsigned long long transpose8(unsigned long long x) {
    // 8x8 bit matrix, row r = byte r, column c = bit c: returns its transpose
    unsigned long long t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;  x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL; x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL; x ^= t ^ (t << 28);
    return x;
}

__device__ __forceinline__ int ext_length(const unsigned char* in, int& ip, int csize, int n, bool& bad) {
    if (n != 15) return n;
    while (true) {
        if (ip >= csize) { bad = true; return n; }
        int e = in[ip++];
        n += e;
        if (e != 255) return n;
    }
}

extern "C" __global__ void bslz4_decode(
    const unsigned char* __restrict__ src,    // the staged chunks
    const long long* __restrict__ positions,  // (frames, blocks): offset of each block's size field
    const long long* __restrict__ ends,       // (frames,): offset just past each chunk
    int* __restrict__ out, long long stride,  // decoded frames, `stride` elements apart
    int frames, int blocks, int jobs_per_frame, int n_full, int block_elems, int last_elems,
    int elems, int leftover, int* __restrict__ errors)
{
    extern __shared__ unsigned char smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long job = (long long)blockIdx.x * WARPS + warp;
    if (job >= (long long)frames * jobs_per_frame) return;
    const int f = (int)(job / jobs_per_frame), k = (int)(job % jobs_per_frame);
    int* frame = out + f * stride;
    if (k == 0 && lane < leftover) {  // the raw tail of the frame, < 8 elements
        const unsigned char* t = src + ends[f] - 4 * (leftover - lane);
        frame[elems - leftover + lane] = (int)(t[0] | (t[1] << 8) | (t[2] << 16) | ((unsigned)t[3] << 24));
    }
    if (k >= blocks) return;
    unsigned char* buf = smem + warp * (block_elems * 4);
    const int n = k < n_full ? block_elems : last_elems, nbytes = 4 * n;
    const long long pos = positions[(long long)f * blocks + k];
    const unsigned char* in = src + pos + 4;
    const int csize = (int)(((unsigned)src[pos] << 24) | (src[pos + 1] << 16) | (src[pos + 2] << 8) | src[pos + 3]);
    int ip = 0, op = 0;
    bool bad = csize <= 0 || pos + 4 + csize > ends[f];
    while (!bad) {
        const int token = in[ip++];
        const int lit = ext_length(in, ip, csize, token >> 4, bad);
        if (bad || ip + lit > csize || op + lit > nbytes) { bad = true; break; }
        for (int i = lane; i < lit; i += 32) buf[op + i] = in[ip + i];
        ip += lit;
        op += lit;
        if (ip == csize) break;  // the last sequence has literals only
        if (ip + 2 > csize) { bad = true; break; }
        const int offset = in[ip] | (in[ip + 1] << 8);
        ip += 2;
        const int mlen = ext_length(in, ip, csize, token & 15, bad) + 4;
        if (bad || offset == 0 || offset > op || op + mlen > nbytes || ip >= csize) { bad = true; break; }
        __syncwarp();
        const int from = op - offset;
        if (offset >= mlen) {
            for (int i = lane; i < mlen; i += 32) buf[op + i] = buf[from + i];
        } else if (offset == 1) {
            const unsigned char v = buf[from];
            for (int i = lane; i < mlen; i += 32) buf[op + i] = v;
        } else {
            for (int i = lane; i < mlen; i += 32) buf[op + i] = buf[from + i % offset];
        }
        op += mlen;
    }
    if (op != nbytes) bad = true;
    if (bad) {
        if (lane == 0) errors[f] = 1;
        return;
    }
    __syncwarp();
    const int cols = n >> 3;  // bytes per bit row: one bit of each of the block's elements
    int4* dst = reinterpret_cast<int4*>(frame + (long long)k * block_elems);
    for (int j = lane; j < cols; j += 32) {
        unsigned lo[4], hi[4];
        #pragma unroll
        for (int b = 0; b < 4; ++b) {
            unsigned long long x = 0;
            #pragma unroll
            for (int r = 0; r < 8; ++r) x |= (unsigned long long)buf[(b * 8 + r) * cols + j] << (8 * r);
            x = transpose8(x);  // byte m = byte b of element 8 j + m
            lo[b] = (unsigned)x;
            hi[b] = (unsigned)(x >> 32);
        }
        unsigned t0 = __byte_perm(lo[0], lo[1], 0x5140), t1 = __byte_perm(lo[2], lo[3], 0x5140);
        unsigned t2 = __byte_perm(lo[0], lo[1], 0x7362), t3 = __byte_perm(lo[2], lo[3], 0x7362);
        unsigned u0 = __byte_perm(hi[0], hi[1], 0x5140), u1 = __byte_perm(hi[2], hi[3], 0x5140);
        unsigned u2 = __byte_perm(hi[0], hi[1], 0x7362), u3 = __byte_perm(hi[2], hi[3], 0x7362);
        dst[2 * j] = make_int4(__byte_perm(t0, t1, 0x5410), __byte_perm(t0, t1, 0x7632),
                               __byte_perm(t2, t3, 0x5410), __byte_perm(t2, t3, 0x7632));
        dst[2 * j + 1] = make_int4(__byte_perm(u0, u1, 0x5410), __byte_perm(u0, u1, 0x7632),
                                   __byte_perm(u2, u3, 0x5410), __byte_perm(u2, u3, 0x7632));
    }
}
"""


@functools.lru_cache(maxsize=None)
def _kernel(block_bytes):
    import cupy

    module = cupy.RawModule(code=SOURCE, options=("-std=c++17", f"-DWARPS={WARPS}"))
    kernel = module.get_function("bslz4_decode")
    shared = WARPS * block_bytes
    if shared > 48 * 1024:
        kernel.max_dynamic_shared_size_bytes = shared
    return kernel, shared


def decode(src, positions, ends, layout, out, errors, stream=None):
    """Decode the frames of one staged batch on the device (asynchronously, on `stream`).

    src: uint8 device array of the chunks; positions: (frames, blocks) int64 device array from
    `bslz4_format.index_chunks` (offsets into src); ends: (frames,) int64 offsets just past each
    chunk; out: (frames, stride) int32 device array, stride a multiple of 4, >= layout.elems;
    errors: (frames,) int32 device array, set to 1 for a frame that does not decode."""
    import cupy

    if layout.elem_size != 4:
        raise ValueError(f"bslz4 on the GPU: frames of 4-byte elements only, not {layout.elem_size}-byte ones")
    frames, stride = out.shape
    if stride % 4 or stride < layout.elems or out.dtype != np.int32:
        raise ValueError(f"bslz4 on the GPU: out must be int32 (frames, stride >= {layout.elems}, stride % 4 == 0)")
    kernel, shared = _kernel(layout.block_elems * 4)
    jobs_per_frame = max(layout.blocks, 1)
    grid = -(-frames * jobs_per_frame // WARPS)
    with (stream if stream is not None else cupy.cuda.Stream.null):
        kernel((grid,), (32 * WARPS,), (src, positions, ends, out, np.int64(stride), np.int32(frames),
                                       np.int32(layout.blocks), np.int32(jobs_per_frame), np.int32(layout.n_full),
                                       np.int32(layout.block_elems), np.int32(layout.last_elems),
                                       np.int32(layout.elems), np.int32(layout.leftover_elems), errors),
               shared_mem=shared)
