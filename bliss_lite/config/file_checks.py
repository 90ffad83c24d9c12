"""Files and names that come from jobs, configuration and Redis messages: checked before use.

Why: such a path is data someone else wrote. A PONI path naming a device file once grew the
process to 22 GB (read whole), a FIFO blocks the reader forever, a job server reached through
a shared Redis read and wrote wherever a job said, and an entry named "../../x" made HDF5
groups named "..". So before anything is read:
- `checked_file(path, kind)`: an existing regular file (no device, FIFO, directory) of at most
  LIMITS[kind] bytes; the caller then parses it as that kind and names the file if it is not;
- `plain_name(text, what)`: a name of letters, digits, `_ . -` (an HDF5 entry, a file name),
  never "." or ".." nor a path;
- `plain_pattern(text, what)`: a file-name pattern (`*.cbf`, `img_?????.cbf`) that matches in
  one folder only: no '/', never "." or ".." (`folder.glob("../../*.cbf")` reaches outside);
- `within_roots(path, roots, what)`: the resolved path (links followed) below one of `roots`.
Each refusal is a FileCheckError (a ValueError) of one line naming the path and the option.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MiB = 2**20
LIMITS = {  # bytes: far above any real file of the kind, far below what hurts a process
    "poni": 1 * MiB,
    "yaml": 8 * MiB,
    "script": 4 * MiB,  # Python run in a session: its setup file, a queue script
    "job": 16 * MiB,
    "json": 16 * MiB,
    "image": 512 * MiB,  # a dark or flat field (.npy, EDF, CBF, TIFF)
    "cbf": 64 * MiB,  # one detector frame (a Pilatus 2M CBF is ~ 10 MB uncompressed)
}
PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")  # as SCAN_SAVING.sample


class FileCheckError(ValueError):
    """A file or name refused before use; the message names it, `reason` says why alone."""

    def __init__(self, message, reason=None):
        super().__init__(message)
        self.reason = reason or message


def _refused(what, path, reason):
    return FileCheckError(f"{what} {path}: {reason}", reason)


def checked_file(path, kind, what=None) -> Path:
    """`path` as a Path once it is a regular file of at most LIMITS[kind] bytes."""
    path = Path(path)
    what = what or f"{kind} file"
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _refused(what, path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refused(what, path, "not a regular file (a directory, device or FIFO)")
    limit = LIMITS[kind]
    if info.st_size > limit:
        raise _refused(what, path, f"{info.st_size} bytes, more than a {kind} file may be ({limit // MiB} MiB)")
    return path


def read_checked(path, kind, what=None) -> bytes:
    """The bytes of a checked file, never more than its limit (it may grow while we read)."""
    path = checked_file(path, kind, what)
    with open(path, "rb") as handle:
        data = handle.read(LIMITS[kind] + 1)
    if len(data) > LIMITS[kind]:
        raise _refused(what or f"{kind} file", path, f"grew beyond {LIMITS[kind] // MiB} MiB while read")
    return data


def plain_name(text, what) -> str:
    """`text` if it is a plain name (an HDF5 entry "3.1", a file name), never a path."""
    if not isinstance(text, str) or not PLAIN.fullmatch(text) or set(text) == {"."}:
        raise FileCheckError(f"{what} must be a plain name (letters, digits, _ . -; no '/', not '..'), got {text!r}")
    return text


def plain_pattern(text, what) -> str:
    """`text` if it is a glob pattern of file names in one folder: no '/' (so neither absolute
    nor with '..' components), not "." or "..", no NUL."""
    if not isinstance(text, str) or not text or "/" in text or "\0" in text or text in (".", ".."):
        raise FileCheckError(f"{what} must be a file-name pattern within the folder (e.g. '*.cbf'; no '/', "
                             f"not '..', not absolute), got {text!r}")
    return text


def within_roots(path, roots, what) -> Path:
    """The resolved `path` if it lies below one of `roots` (links followed, '..' resolved)."""
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    bases = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    if not any(resolved == base or base in resolved.parents for base in bases):
        shown = ", ".join(str(b) for b in bases) or "none configured"
        raise FileCheckError(f"{what} {path}: outside the allowed roots ({shown}); the server's owner may add "
                             f"one with --root DIR")
    return resolved
