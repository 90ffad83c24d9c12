"""Reading back frames of one scan entry of an HDF5 file, by index.

Frames are read as their stored Bitshuffle-LZ4 chunks (`read_direct_chunk`), from the scan's
data files where they are (`frame_reader.EntryFrames`), and decoded with the same code as
frames from Redis: no HDF5 filter plugin is needed and nothing is decoded twice. Opens
read-only with SWMR, so it works while another process still writes the files.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.data.frame_reader import entry_frames


def read_frames(path, entry, detector, indices) -> np.ndarray:
    """(len(indices), rows, columns) frames of /<entry>/instrument/<detector>/data."""
    with entry_frames(path, entry, detector) as frames:
        return frames.read(indices)
