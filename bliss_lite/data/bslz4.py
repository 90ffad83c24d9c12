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
    nbytes, block_bytes = HEADER.unpack_from(chunk)
    dtype = np.dtype(dtype)
    if nbytes != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"bslz4 chunk holds {nbytes} bytes, not a {tuple(shape)} {dtype} frame")
    body = np.frombuffer(chunk, dtype=np.uint8, offset=HEADER.size)
    return bitshuffle.decompress_lz4(body, tuple(shape), dtype, block_bytes // dtype.itemsize)
