"""The Bitshuffle-LZ4 chunk format, on the host: where each LZ4 block of a chunk starts.

The GPU decoder gives one warp to each LZ4 block, so it must know where every block starts
before it runs; that walk is sequential (each block's 4-byte big-endian size gives the next
one's start), cheap, and done here on the host, where a bad chunk is also named. A chunk
(bitshuffle's HDF5 filter, `bliss_lite.data.bslz4`) is:

    header: uncompressed bytes (uint64 BE), block bytes (uint32 BE)      12 bytes
    n_full blocks of block_elems elements, then one of last_elems (a multiple of 8, may be 0):
        compressed size (uint32 BE), LZ4 block of the bit-shuffled elements
    the last leftover_elems (< 8) elements, raw

`decode_chunk` is a slow pure-Python decoder that does what the kernel does, step by step;
it documents the format and checks it against bitshuffle in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from bliss_lite.data.bslz4 import HEADER  # the chunk's header: (frame bytes, block bytes)

BLOCKED_MULT = 8  # bitshuffle transposes groups of 8 elements; the rest of a frame stays raw


@dataclass(frozen=True)
class ChunkLayout:
    """How the frames of one shape and dtype are cut into blocks."""

    nbytes: int
    elem_size: int
    block_elems: int

    @classmethod
    def of(cls, shape, dtype, block_bytes):
        dtype = np.dtype(dtype)
        elems = int(np.prod(shape))
        if block_bytes <= 0 or block_bytes % (dtype.itemsize * BLOCKED_MULT):
            raise ValueError(f"bslz4: block of {block_bytes} bytes is not a whole number of 8 {dtype} elements")
        return cls(elems * dtype.itemsize, dtype.itemsize, block_bytes // dtype.itemsize)

    @property
    def elems(self):
        return self.nbytes // self.elem_size

    @property
    def n_full(self):
        return self.elems // self.block_elems

    @property
    def last_elems(self):
        rest = self.elems % self.block_elems
        return rest - rest % BLOCKED_MULT

    @property
    def leftover_elems(self):
        return self.elems % BLOCKED_MULT

    @property
    def blocks(self):
        """LZ4 blocks per chunk."""
        return self.n_full + (1 if self.last_elems else 0)

    def block_elements(self, k):
        return self.block_elems if k < self.n_full else self.last_elems


def read_layout(chunk, shape, dtype) -> ChunkLayout:
    """The layout a chunk's header announces, checked against the frame it should hold."""
    if len(chunk) < HEADER.size:
        raise ValueError(f"bslz4: chunk of {len(chunk)} bytes has no 12-byte header")
    nbytes, block_bytes = HEADER.unpack_from(chunk)
    layout = ChunkLayout.of(shape, dtype, block_bytes)
    if nbytes != layout.nbytes:
        raise ValueError(f"bslz4 chunk holds {nbytes} bytes, not a {tuple(shape)} {np.dtype(dtype)} frame")
    return layout


_ERRORS = {1: "is truncated (a block runs past its end)", 2: "has bytes after its last block",
           3: "has a header that does not announce the expected frame"}


@njit(nogil=True, cache=True)
def _walk(buf, starts, lengths, nbytes, block_bytes, blocks, leftover_bytes, positions):
    """positions[f, k] = offset in buf of block k's size field of chunk f; returns
    (0, 0) or (error code, chunk index)."""
    for f in range(starts.size):
        s, end = starts[f], starts[f] + lengths[f]
        if lengths[f] < 12:
            return 1, f
        total = 0
        for j in range(8):
            total = (total << 8) | np.int64(buf[s + j])
        bb = 0
        for j in range(8, 12):
            bb = (bb << 8) | np.int64(buf[s + j])
        if total != nbytes or bb != block_bytes:
            return 3, f
        pos = s + 12
        for k in range(blocks):
            if pos + 4 > end:
                return 1, f
            size = ((np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16)
                    | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3]))
            positions[f, k] = pos
            pos += 4 + size
        if pos + leftover_bytes > end:
            return 1, f
        if pos + leftover_bytes < end:
            return 2, f
    return 0, 0


def index_chunks(buf, starts, lengths, layout: ChunkLayout, positions=None, first=0):
    """(frames, blocks) int64 offsets in `buf` (uint8) of every block's size field, for the
    chunks at `starts` of `lengths` bytes, all of `layout`. ValueError names a bad chunk
    (counting from `first`)."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    if positions is None:
        positions = np.empty((starts.size, max(layout.blocks, 1)), np.int64)
    code, frame = _walk(buf, starts, lengths, layout.nbytes, layout.block_elems * layout.elem_size,
                        layout.blocks, layout.leftover_elems * layout.elem_size, positions)
    if code:
        raise ValueError(f"bslz4: chunk {first + frame} {_ERRORS[code]}")
    return positions


# --- the reference decoder (slow; what the kernel does) -----------------------------------------

def lz4_block(data: bytes, size: int) -> bytearray:
    """Decode one LZ4 block (no frame header) of `size` output bytes. A match copies byte i of
    its length from out[start - offset + i % offset]: the bytes it repeats are all written
    before it starts, which is what lets a warp copy a match in parallel."""
    out = bytearray()
    ip = 0
    while True:
        token = data[ip]
        ip += 1
        lit, ip = _length(data, ip, token >> 4)
        out += data[ip:ip + lit]
        ip += lit
        if ip >= len(data):
            break
        offset = data[ip] | data[ip + 1] << 8
        ip += 2
        match, ip = _length(data, ip, token & 15)
        match += 4
        if not 0 < offset <= len(out):
            raise ValueError(f"lz4: match offset {offset} at output byte {len(out)}")
        start = len(out)
        out += bytes(out[start - offset + i % offset] for i in range(match))
    if len(out) != size:
        raise ValueError(f"lz4: block decodes to {len(out)} bytes, expected {size}")
    return out


def _length(data, ip, nibble):
    if nibble == 15:
        while True:
            extra = data[ip]
            ip += 1
            nibble += extra
            if extra != 255:
                break
    return nibble, ip


def bitunshuffle(shuffled, elems: int, elem_size: int) -> np.ndarray:
    """Undo bitshuffle's transpose of one block: shuffled byte (b * 8 + k) * elems / 8 + j holds,
    in bit m, bit k of byte b of element 8 j + m. Returns the elements' bytes, (elems, elem_size)."""
    bits = np.unpackbits(np.frombuffer(bytes(shuffled), np.uint8).reshape(elem_size, 8, elems // 8),
                         axis=2, bitorder="little")  # (b, k, element)
    return np.packbits(bits.transpose(2, 0, 1), axis=2, bitorder="little").reshape(elems, elem_size)


def decode_chunk(chunk, shape, dtype) -> np.ndarray:
    """One chunk decoded by the steps of the GPU kernel (reference for the tests)."""
    dtype = np.dtype(dtype)
    layout = read_layout(chunk, shape, dtype)
    buf = np.frombuffer(chunk, np.uint8)
    positions = index_chunks(buf, [0], [len(chunk)], layout)[0]
    out = np.empty((layout.elems, layout.elem_size), np.uint8)
    for k in range(layout.blocks):
        pos, n = int(positions[k]), layout.block_elements(k)
        size = int.from_bytes(chunk[pos:pos + 4], "big")
        block = lz4_block(chunk[pos + 4:pos + 4 + size], n * layout.elem_size)
        out[k * layout.block_elems:k * layout.block_elems + n] = bitunshuffle(block, n, layout.elem_size)
    left = layout.leftover_elems
    if left:
        out[layout.elems - left:] = buf[len(chunk) - left * layout.elem_size:].reshape(left, layout.elem_size)
    return out.reshape(-1).view(dtype).reshape(shape)
