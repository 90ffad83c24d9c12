"""Bitshuffle-LZ4 frames in the HDF5 filter's chunk format (the bytes of one HDF5 chunk).

A chunk is a 12-byte header (uncompressed size, uint64 big-endian; block size in bytes,
uint32 big-endian) followed by bitshuffle's LZ4 blocks. The detector compresses once; the
same bytes go to Redis and, with h5py's `write_direct_chunk`, into the file unchanged.
Plain numpy + the `bitshuffle` wheel: analysis programs decode frames without gevent.
"""
from __future__ import annotations

import struct

import bitshuffle
import numpy as np

HEADER = struct.Struct(">QI")
BLOCK_BYTES = 8192  # bitshuffle's default block, as the HDF5 filter writes it


def compress(frame: np.ndarray) -> bytes:
    frame = np.ascontiguousarray(frame)
    block = BLOCK_BYTES // frame.dtype.itemsize
    body = bitshuffle.compress_lz4(frame, block)
    return HEADER.pack(frame.nbytes, block * frame.dtype.itemsize) + body.tobytes()


def decompress(chunk: bytes, shape, dtype) -> np.ndarray:
    """The frame a chunk holds. ValueError for a chunk that is not whole and well framed:
    bitshuffle trusts the block sizes it reads and crashes the process on a truncated or
    corrupted chunk, so they are walked here first (a chunk off the wire is data); a block
    whose LZ4 bytes bitshuffle then cannot decode is a ValueError too."""
    if len(chunk) < HEADER.size:
        raise ValueError(f"bslz4: chunk of {len(chunk)} bytes has no 12-byte header")
    nbytes, block_bytes = HEADER.unpack_from(chunk)
    dtype = np.dtype(dtype)
    if nbytes != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"bslz4 chunk holds {nbytes} bytes, not a {tuple(shape)} {dtype} frame")
    if block_bytes <= 0 or block_bytes % (8 * dtype.itemsize):
        raise ValueError(f"bslz4: block of {block_bytes} bytes is not a whole number of 8 {dtype} elements")
    _check_blocks(chunk, nbytes // dtype.itemsize, block_bytes // dtype.itemsize, dtype.itemsize)
    body = np.frombuffer(chunk, dtype=np.uint8, offset=HEADER.size)
    try:
        return bitshuffle.decompress_lz4(body, tuple(shape), dtype, block_bytes // dtype.itemsize)
    except RuntimeError as exc:  # well framed, but an LZ4 block's own bytes do not decode
        raise ValueError(f"bslz4: chunk is corrupt ({exc.args[0] if exc.args else 'bitshuffle failed'})") from None


_SIZE = struct.Struct(">i")


def _check_blocks(chunk, elems, block_elems, itemsize):
    """Every LZ4 block's size field leads inside the chunk, each block no bigger than LZ4's
    bound for its bytes, and the raw leftover elements end the chunk exactly.

    The walk from size field to size field is sequential (each size gives the next field's
    place), so it is no NumPy operation, and gathering the places for NumPy to check costs more
    than the checks (measured); the loop is kept to one read, one range test and one sum per
    block: ~30 % less time than testing each block against the chunk's end as well (0.15 ->
    0.105 ms for a Pilatus 2M frame just read). It accepts exactly the chunks `_refuse`
    accepts: while every size is in 1..bound the places only grow, so ending exactly at the
    chunk's end keeps every block inside it, and a read past the end is a struct.error. A
    chunk it does not accept is walked again by `_refuse`, block by block, which says where
    and how it is wrong."""
    full, rest = divmod(elems, block_elems)
    blocks = full + (1 if rest - rest % 8 else 0)
    tail = (rest % 8) * itemsize
    bound = block_elems * itemsize + block_elems * itemsize // 255 + 16  # LZ4_COMPRESSBOUND
    pos, unpack = HEADER.size, _SIZE.unpack_from
    try:
        for _ in range(blocks):
            size = unpack(chunk, pos)[0]
            if not 0 < size <= bound:
                break
            pos += 4 + size
        else:
            if pos + tail == len(chunk):
                return
    except struct.error:  # a size field beyond the chunk's end
        pass
    _refuse(chunk, blocks, tail, bound)


def _refuse(chunk, blocks, tail, bound):
    """The ValueError of a chunk `_check_blocks` did not accept: its first wrong block."""
    pos, end, unpack = HEADER.size, len(chunk), _SIZE.unpack_from
    for k in range(blocks):
        if pos + 4 > end:
            raise ValueError(f"bslz4: chunk is truncated (block {k} of {blocks} missing)")
        size = unpack(chunk, pos)[0]
        if not 0 < size <= bound or pos + 4 + size > end:
            raise ValueError(f"bslz4: chunk is corrupt or truncated (block {k} claims {size} bytes)")
        pos += 4 + size
    raise ValueError(f"bslz4: chunk is {end} bytes, its blocks end at {pos + tail}")
