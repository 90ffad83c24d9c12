"""Clearing the "open for write" mark a killed writer leaves in an HDF5 file (`h5clear -s`).

A file written with libver="latest" (superblock version 2 or 3) records in its superblock that
a writer (SWMR or not) has it open; HDF5 refuses to open it for writing again until the mark is
cleared, and the h5clear tool is not always installed. The superblock is 12 bytes of header
(signature, version, sizes, the flags byte), four addresses and a Jenkins lookup3 checksum
of what precedes it: clearing the flags means rewriting that byte and the checksum.

Only for a file whose writer is gone (a scan killed with SIGKILL, say): resuming a scan calls
it before it adds the continuation entry. h5py (no gevent), struct and the checksum.
"""
from __future__ import annotations

import struct
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS_AT = 11


def _rot(x, k):
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' hashlittle (lookup3.c), as HDF5's H5_checksum_lookup3."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & 0xFFFFFFFF
    pos = 0
    while length - pos > 12:
        k0, k1, k2 = struct.unpack_from("<3I", data, pos)
        a, b, c = (a + k0) & 0xFFFFFFFF, (b + k1) & 0xFFFFFFFF, (c + k2) & 0xFFFFFFFF
        a = (a - c) & 0xFFFFFFFF; a ^= _rot(c, 4); c = (c + b) & 0xFFFFFFFF  # noqa: E702 - lookup3's mix
        b = (b - a) & 0xFFFFFFFF; b ^= _rot(a, 6); a = (a + c) & 0xFFFFFFFF  # noqa: E702
        c = (c - b) & 0xFFFFFFFF; c ^= _rot(b, 8); b = (b + a) & 0xFFFFFFFF  # noqa: E702
        a = (a - c) & 0xFFFFFFFF; a ^= _rot(c, 16); c = (c + b) & 0xFFFFFFFF  # noqa: E702
        b = (b - a) & 0xFFFFFFFF; b ^= _rot(a, 19); a = (a + c) & 0xFFFFFFFF  # noqa: E702
        c = (c - b) & 0xFFFFFFFF; c ^= _rot(b, 4); b = (b + a) & 0xFFFFFFFF  # noqa: E702
        pos += 12
    tail = data[pos:] + bytes(12 - (length - pos))
    if length - pos == 0:
        return c
    k0, k1, k2 = struct.unpack("<3I", tail)
    a, b, c = (a + k0) & 0xFFFFFFFF, (b + k1) & 0xFFFFFFFF, (c + k2) & 0xFFFFFFFF
    c ^= b; c = (c - _rot(b, 14)) & 0xFFFFFFFF  # noqa: E702 - lookup3's final
    a ^= c; a = (a - _rot(c, 11)) & 0xFFFFFFFF  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & 0xFFFFFFFF  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & 0xFFFFFFFF  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & 0xFFFFFFFF  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & 0xFFFFFFFF  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & 0xFFFFFFFF  # noqa: E702
    return c


def write_mark(path) -> bool:
    """True when the file's superblock says a writer has it open."""
    with open(path, "rb") as f:
        head = f.read(FLAGS_AT + 1)
    return head[:8] == SIGNATURE and head[8] in (2, 3) and head[FLAGS_AT] != 0


def clear_write_mark(path) -> bool:
    """Clear the mark (as `h5clear -s`); True when there was one. Files of an older superblock
    (no mark kept there) are left alone."""
    path = Path(path)
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:8] != SIGNATURE or head[8] not in (2, 3) or head[FLAGS_AT] == 0:
            return False
        size = 12 + 4 * head[9]  # header, base, extension, end-of-file and root addresses
        block = bytearray(head + f.read(size - 12))
        (stored,) = struct.unpack("<I", f.read(4))
        if lookup3(bytes(block)) != stored:
            raise OSError(f"{path}: superblock checksum does not match: not clearing its write mark")
        block[FLAGS_AT] = 0
        f.seek(0)
        f.write(bytes(block) + struct.pack("<I", lookup3(bytes(block))))
    return True
