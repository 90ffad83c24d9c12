"""Room on disk for an HDF5 file being written: reserved before HDF5 writes, trimmed after.

HDF5 does not survive a write that fails half-way. It has already allocated the space, so the
superblock it writes when closing records an end of file beyond the real one, and
`h5py.File(path)` then refuses the whole file ("truncated file"). So a writer reserves the room
for each batch on disk (posix_fallocate) before HDF5 sees it: if the disk, a quota or the
file-size limit says no, the batch is refused whole (`NoRoom`), HDF5 never starts a write it
cannot finish, and the file still closes cleanly with everything written before. Once HDF5 has
closed the file, the unused reserve is cut off its end.

The writer of the master file (`writer.EntryWriter`) and the writer of the frame data files
(`frame_files`) keep one `FileRoom` per file. Plain os calls: no h5py here.
"""
from __future__ import annotations

import errno
import os
import struct

NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # disk full, file-size limit, quota
META_SLACK = 2**18  # bytes reserved beyond each batch for HDF5's own structures (headers, index blocks)
INDEX_BYTES = 64  # per frame, for its chunk-index entry (measured: ~25)


class DiskFullError(OSError):
    """No room for the scan's data: the disk, a quota or the file-size limit. Built as
    DiskFullError(errno, message); prints the message alone (it names the file)."""

    def __str__(self):
        return self.strerror


class NoRoom(OSError):
    """The reservation was refused: OSError(errno, strerror, path). The writer that asked turns
    it into a DiskFullError that says what the scan keeps."""


class FileRoom:
    """Our own handle on a file HDF5 writes (HDF5 keeps its own), to reserve and to trim."""

    def __init__(self, path):
        self.path = path
        self._fd = None
        if hasattr(os, "posix_fallocate"):
            self._fd = os.open(path, os.O_RDWR)

    def reserve(self, h5, nbytes):
        """Make the file own the blocks HDF5 will write next (`nbytes` past its end, and
        META_SLACK), or raise NoRoom. `h5`: the open h5py.File."""
        if self._fd is None:
            return
        end = h5.id.get_filesize() + nbytes + META_SLACK  # HDF5 allocates at its end of file
        size = os.fstat(self._fd).st_size
        if end <= size:
            return  # reserved by an earlier call
        try:
            os.posix_fallocate(self._fd, size, end - size)
        except OSError as exc:
            if exc.errno in NO_ROOM:
                raise NoRoom(exc.errno, exc.strerror, str(self.path)) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._fd = _closed(self._fd)  # a file system that cannot reserve: write without it

    def trim(self):
        """Cut the unused reserve off the end: call once HDF5 has closed the file cleanly (a
        failed close may have left the recorded end stale)."""
        if self._fd is None:
            return
        end = _recorded_end(self._fd)
        if end is not None and os.fstat(self._fd).st_size > end:
            os.ftruncate(self._fd, end)

    def close(self):
        if self._fd is not None:
            self._fd = _closed(self._fd)


def _recorded_end(fd):
    """The end of file HDF5 records in a version 2/3 superblock (libver="latest"), else None."""
    head = os.pread(fd, 48, 0)
    if len(head) < 44 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] < 2 or head[9] != 8:
        return None
    base, _extension, end = struct.unpack_from("<QQQ", head, 12)
    return base + end


def _closed(fd):
    os.close(fd)
    return None
