"""Where a scan's files go beside the session's master file, as LImA and BLISS lay them out.

The master file (`<data root>/<session>/<sample>.h5`) holds one NXentry per scan; what is too
big for it (detector frames, integrated patterns, reconstructed slices) goes into files in a
folder beside it named after the scan, and the entry refers to them by paths relative to the
master's folder, so the master and its folders can be moved together:

    sample.h5
    sample_scan0003/pilatus_00000.h5, pilatus_00001.h5, ...    frames, `frames_per_file` each
    sample_scan0003/integrated.h5, ...                          reduction outputs
    sample_scan0003_2/...                                       entry 3.2, scan 3 resumed

Plain path arithmetic: no h5py, no gevent (readers use it too).
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_FRAMES_PER_FILE = 2000  # ~2.6 GB of compressed Pilatus 2M frames at low counts, as LImA's default order


def scan_folder(master, number) -> Path:
    """The folder of scan `number`'s files, beside the master file. `number` may name an
    entry: "3.1" is scan 3's folder, a continuation "3.2" (a resumed scan) has its own,
    `sample_scan0003_2`."""
    master = Path(master)
    scan, _, sub = str(number).partition(".")
    suffix = f"_{int(sub)}" if sub and int(sub) > 1 else ""
    return master.with_name(f"{master.stem}_scan{int(scan):04d}{suffix}")


def data_file(master, number, detector, index) -> Path:
    """The `index`-th (from 0) frame file of `detector` in scan `number`."""
    return scan_folder(master, number) / f"{detector}_{int(index):05d}.h5"


def relative_to_master(master, path) -> str:
    """`path` as the entry stores it: relative to the master file's folder (POSIX separators)."""
    return Path(path).relative_to(Path(master).parent).as_posix()


def reduction_file(master, number, name) -> Path:
    """The file of scan `number`'s reduction output `name` ("integrated", "reconstructed"):
    written during the scan, referred to by the entry's NXprocess once the scan has closed."""
    return scan_folder(master, number) / f"{name}.h5"
