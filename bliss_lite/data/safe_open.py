"""Every HDF5 file bliss_lite opens goes through `open_hdf5`: a bounded wait, one clear error.

Why: h5py opening a truncated file with `swmr=True` (a disk that filled, a copy cut short)
succeeds, then retries the first read past the end without end, Ctrl-C included; opened
without SWMR it fails at once ("truncated file"). A FIFO or a device named as a file blocks
or reads without end. So before HDF5 sees a file, it must be a regular file whose size
reaches the end-of-file address its superblock records. A file a SWMR writer is extending
may fall short for an instant: it is looked at again for `wait` seconds (a Python sleep,
so Ctrl-C works) before it is called damaged.

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


def stored_eof(path) -> tuple[int, int | None]:
    """(the file's size, the end-of-file address its superblock records, or None if unknown).
    Raises DamagedFile when it is no HDF5 file at all."""
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
    elif version in (2, 3):
        width = head[9]
        where = 12 + 2 * width
    else:
        return size, None  # a superblock version we do not know: let HDF5 judge
    if width not in (2, 4, 8):
        raise DamagedFile(f"{path}: damaged HDF5 superblock (address size {width}): {ADVICE}")
    if len(head) < where + width:
        raise DamagedFile(f"{path}: truncated HDF5 file (cut inside its superblock): {ADVICE}")
    eof = int.from_bytes(head[where:where + width], "little")
    return size, None if eof in (UNDEFINED, (1 << (8 * width)) - 1) else eof


def check_hdf5(path, wait=WAIT_S):
    """Raise DamagedFile unless `path` is a regular file whose size reaches its recorded end
    (looked at again for `wait` seconds: a SWMR writer may be extending it)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise DamagedFile(f"{path}: not a regular file (a device, FIFO or directory): name an HDF5 file")
    deadline = time.monotonic() + wait
    while True:
        size, eof = stored_eof(path)
        if eof is None or size >= eof:
            return
        if time.monotonic() >= deadline:
            raise DamagedFile(f"{path}: truncated HDF5 file ({size} of {eof} bytes; a disk that filled or a copy "
                              f"cut short): {ADVICE}")
        time.sleep(0.05)


def open_hdf5(path, mode="r", *, swmr=None, wait=WAIT_S, **options) -> h5py.File:
    """h5py.File(path, mode) with locking off, after `check_hdf5`. Read-only opens are SWMR
    where the file allows it (one being written), else plain (`swmr=False`: plain only). Any
    failure is an OSError that names the file."""
    path = Path(path)
    options.setdefault("locking", False)
    if mode in ("r", "r+") or (mode == "a" and path.exists()):
        check_hdf5(path, wait)
    if mode == "r" and swmr is not False:
        try:
            return h5py.File(path, "r", swmr=True, **options)
        except OSError:
            pass  # not a SWMR file (an old format): opened plainly below
    try:
        return h5py.File(path, mode, **options)
    except OSError as exc:
        raise DamagedFile(f"{path}: cannot open the HDF5 file: {_reason(exc)}") from None


def _reason(exc):
    """h5py's message without its "Unable to synchronously open file (...)" wrapping."""
    text = str(exc)
    inner = text[text.find("(") + 1:text.rfind(")")] if "(" in text and text.endswith(")") else text
    return inner or text

