"""A resumed XRD-CT scan reduced as one dataset: its entries N.1, N.2, ... (scans/resume.py).

Each entry holds some sweep lines; the valid frames of all of them together cover the grid
once. `blocks(path, entries, ...)` yields the valid frames of every entry as
(indices, patterns, omega, x, z, i0, it), the blocks `ReconstructionHook.add_frames` takes:
the entry's integrated patterns where it has them (`integrate/results`), else its frames
integrated here (an entry whose process was killed never wrote its NXprocess). Frame indices
are made unique across entries (entry k's frame i is (k + 1) * ENTRY_STRIDE + i, apart from
the running scan's own 0, 1, ...): the sinogram builder tells frames apart by index.

The live reconstruction hook of a resumed scan feeds the earlier entries' frames this way
before the first new frame (`preload`); `reconstruct_scan` of any entry of the scan
reconstructs all of them together.
"""
from __future__ import annotations

import re

import numpy as np

from bliss_lite.data.safe_open import open_hdf5

ENTRY_STRIDE = 1 << 40
BLOCK = 256  # frames integrated at a time


def scan_entries(path, entry):
    """Every entry of the scan `entry` belongs to ("3.2" -> ["3.1", "3.2", ...]), in order."""
    from bliss_lite.scans.resume import scan_entries as entries_of_scan

    match = re.fullmatch(r"(\d+)\.\d+", str(entry))
    return (entries_of_scan(path, int(match.group(1))) if match else []) or [entry]


def _has_patterns(group):
    results = group.get("integrate/results")
    return results is not None and "intensity" in results


def blocks(path, entries, integrator=None, detector="pilatus", skip=()):
    """Yield the valid frames of `entries` (their patterns, read-backs and monitors), entry
    after entry; `integrator` (a LeanIntegrator) integrates the frames of entries without
    patterns; `skip`: entries left out (the one a live hook follows itself)."""
    from bliss_lite.data.entry_reader import read_frames
    from bliss_lite.processing.reduction_files import CHANNELS, scan_blocks, valid_dataset, valid_rows

    for k, entry in enumerate(entries):
        if entry in skip:
            continue
        with open_hdf5(path) as h5:
            group = h5[entry]
            stored = _has_patterns(group)
            if not stored:
                valid = valid_dataset(group)
                count = min(len(group[f"measurement/{n}"]) for n in CHANNELS)
                keep = np.flatnonzero(valid_rows(valid, 0, count))
                channels = [np.asarray(group[f"measurement/{n}"][:count])[keep] for n in CHANNELS]
        if stored:
            for indices, *rest in scan_blocks(path, entry):
                yield (indices + (k + 1) * ENTRY_STRIDE, *rest)
            continue
        if integrator is None:
            raise ValueError(f"{path} entry {entry} has no integrated patterns: run integrate_scan on it first")
        for first in range(0, keep.size, BLOCK):
            chosen = keep[first:first + BLOCK]
            patterns = np.asarray(integrator.integrate_many(read_frames(path, entry, detector, chosen)), np.float32)
            yield (chosen + (k + 1) * ENTRY_STRIDE, patterns, *(c[first:first + BLOCK] for c in channels))


def preload(hook, scan):
    """Before a resumed scan's first frame: its earlier entries' valid frames into the live
    reconstruction `hook` (integrated by the scan's integration hook's integrator)."""
    continues = (scan.scan_info or {}).get("continues")
    if not continues or not scan.filename:
        return 0
    integration = scan.hook("integration")
    count = 0
    for block in blocks(scan.filename, continues["entries"], integration.integrator(), integration.detector):
        hook.add_frames(*block)
        count += len(block[0])
    return count
