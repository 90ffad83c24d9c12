"""Every HDF5 file bliss_lite opens goes through `open_hdf5`: a bounded wait, one clear error.

Why: h5py opening a truncated file with `swmr=True` (a disk that filled, a copy cut short)
succeeds, then retries the first read past the end without end, Ctrl-C included; opened
without SWMR it fails at once ("truncated file"). A FIFO or a device named as a file blocks
or reads without end. So before HDF5 sees a file, it must be a regular file whose superblock
is whole (a known version, a defined end-of-file address, its checksum where it has one) and
whose size reaches the end-of-file address the superblock records. A file a SWMR writer is
extending may fall short for an instant: it is looked at again for `wait` seconds (a Python
sleep, so Ctrl-C works) before it is called damaged.

A bit flipped anywhere else (an object header, a B-tree) hangs a SWMR open just the same:
HDF5 retries a metadata checksum failure with a back-off that doubles to an hour. So a file
is read with SWMR only while its superblock marks a writer (the file a scan is writing);
every other file is opened plainly, where a bad checksum is an error at once.

`DamagedFile` (an OSError) names the file, says what is wrong and what to do, in one line.
Plain h5py: no gevent, no numpy.
"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import h5py

SIGNATURE = b"\x89HDF\r\n\x1a\n"
UNDEFINED = (1 << 64) - 1
WAIT_S = 1.0  # how long a short file may be a SWMR writer's extension in progress
ADVICE = "restore it from a copy, or write to a new file"


class DamagedFile(OSError):
    """An HDF5 file that cannot be opened safely; the message names it and says what to do."""

    def __str__(self):
        return self.args[0] if self.args else "damaged file"


def _superblock_at(f, size):
    """Offset of the superblock signature: 0, 512, 1024, ... (after a user block), or None."""
    offset = 0
    while offset + len(SIGNATURE) <= size:
        f.seek(offset)
        if f.read(len(SIGNATURE)) == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 hash (hashlittle, initval 0): HDF5's metadata checksum."""
    mask = 0xFFFFFFFF

    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length) & mask
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & mask
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & mask
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & mask
        a = (a - c) & mask ^ rot(c, 4)
        c = (c + b) & mask
        b = (b - a) & mask ^ rot(a, 6)
        a = (a + c) & mask
        c = (c - b) & mask ^ rot(b, 8)
        b = (b + a) & mask
        a = (a - c) & mask ^ rot(c, 16)
        c = (c + b) & mask
        b = (b - a) & mask ^ rot(a, 19)
        a = (a + c) & mask
        c = (c - b) & mask ^ rot(b, 4)
        b = (b + a) & mask
        i += 12
        length -= 12
    if length == 0:
        return c
    tail = data[i:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    for x, y, k in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24)):
        abc = [a, b, c]
        abc[x] = ((abc[x] ^ abc[y]) - rot(abc[y], k)) & mask
        a, b, c = abc
    return c


def _superblock(path) -> tuple[int, int, bool]:
    """(the file's size, the end-of-file address its superblock records, whether the
    superblock marks a writer). Raises DamagedFile when it is no HDF5 file or its superblock
    is damaged: an unknown version, an address size HDF5 never writes, a bad checksum, no
    end-of-file address."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = _superblock_at(f, size)
        if at is None:
            raise DamagedFile(f"{path}: not an HDF5 file (no HDF5 signature in its {size} bytes)")
        f.seek(at)
        head = f.read(128)
    if len(head) < 16:
        raise DamagedFile(f"{path}: truncated HDF5 file (cut inside its superblock): {ADVICE}")
    version = head[8]
    if version in (0, 1):
        width = head[13]
        where = 24 + (4 if version == 1 else 0) + 2 * width
        marked = False  # no SWMR before superblock version 3
    elif version in (2, 3):
        width = head[9]
        where = 12 + 2 * width
        marked = bool(head[11] & 0x05) if version == 3 else False  # open for writing / for SWMR writing
    else:
        raise DamagedFile(f"{path}: damaged HDF5 superblock (version {version}, which HDF5 never writes): {ADVICE}")
    if width not in (2, 4, 8):
        raise DamagedFile(f"{path}: damaged HDF5 superblock (address size {width}): {ADVICE}")
    end = where + 2 * width + 4 if version in (2, 3) else where + width  # v2/3: + root header address, checksum
    if len(head) < end:
        raise DamagedFile(f"{path}: truncated HDF5 file (cut inside its superblock): {ADVICE}")
    if version in (2, 3) and _lookup3(head[:end - 4]) != int.from_bytes(head[end - 4:end], "little"):
        raise DamagedFile(f"{path}: damaged HDF5 superblock (checksum mismatch): {ADVICE}")
    eof = int.from_bytes(head[where:where + width], "little")
    if eof in (UNDEFINED, (1 << (8 * width)) - 1):
        raise DamagedFile(f"{path}: damaged HDF5 superblock (no end-of-file address): {ADVICE}")
    return size, eof, marked


def stored_eof(path) -> tuple[int, int]:
    """(the file's size, the end-of-file address its superblock records). Raises DamagedFile
    when it is no HDF5 file or its superblock is damaged."""
    size, eof, _ = _superblock(path)
    return size, eof


def check_hdf5(path, wait=WAIT_S) -> bool:
    """Raise DamagedFile unless `path` is a regular file with a whole superblock whose size
    reaches its recorded end (looked at again for `wait` seconds: a SWMR writer may be
    extending it, or rewriting the superblock as it is read). True when the superblock marks
    a writer (a file being written: read it with SWMR)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise DamagedFile(f"{path}: not a regular file (a device, FIFO or directory): name an HDF5 file")
    deadline = time.monotonic() + wait
    while True:
        try:
            size, eof, marked = _superblock(path)
            if size >= eof:
                return marked
            problem = DamagedFile(f"{path}: truncated HDF5 file ({size} of {eof} bytes; a disk that filled or a "
                                  f"copy cut short): {ADVICE}")
        except DamagedFile as exc:
            if "not an HDF5 file" in str(exc):
                raise
            problem = exc
        if time.monotonic() >= deadline:
            raise problem
        time.sleep(0.05)


def open_hdf5(path, mode="r", *, swmr=None, wait=WAIT_S, **options) -> h5py.File:
    """h5py.File(path, mode) with locking off, after `check_hdf5`. Read-only opens are SWMR
    where the superblock marks a writer (a file being written) or `swmr=True` asks for it,
    else plain (`swmr=False`: plain only). An existing file's root group (its header and the
    names of its entries, what an append writes into) must read back. Any failure is an
    OSError that names the file."""
    path = Path(path)
    options.setdefault("locking", False)
    marked, existed = False, path.exists()
    if mode in ("r", "r+") or (mode == "a" and existed):
        marked = check_hdf5(path, wait)
    h5 = None
    if mode == "r" and swmr is not False and (marked or swmr):
        try:
            h5 = h5py.File(path, "r", swmr=True, **options)
        except OSError:
            pass  # not a SWMR file (an old format): opened plainly below
    if h5 is None:
        try:
            h5 = h5py.File(path, mode, **options)
        except OSError as exc:
            raise DamagedFile(f"{path}: cannot open the HDF5 file: {_reason(exc)}") from None
    if existed and mode != "w":
        try:
            for _ in h5:  # the root object header, its link index and name heap
                pass
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            h5.close()
            raise DamagedFile(f"{path}: damaged HDF5 file (its root group: {_reason(exc)}): {ADVICE}") from None
    return h5


def _reason(exc):
    """h5py's message without its "Unable to synchronously open file (...)" wrapping."""
    text = str(exc)
    inner = text[text.find("(") + 1:text.rfind(")")] if "(" in text and text.endswith(")") else text
    return inner or text

