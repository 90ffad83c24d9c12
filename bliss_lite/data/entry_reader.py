"""Reading back frames of one scan entry of an HDF5 file, by index.

Frames are read as their stored Bitshuffle-LZ4 chunks (`read_direct_chunk`) and decoded with
the same code as frames from Redis: no HDF5 filter plugin is needed and nothing is decoded
twice. Opens read-only with SWMR, so it works while another process still writes the file.
"""
from __future__ import annotations

import h5py
import numpy as np

from bliss_lite.data import bslz4


def read_frames(path, entry, detector, indices) -> np.ndarray:
    """(len(indices), rows, columns) frames of /<entry>/instrument/<detector>/data."""
    with h5py.File(path, "r", locking=False, swmr=True) as h5:
        dataset = h5[f"{entry}/instrument/{detector}/data"]
        shape, dtype = dataset.shape[1:], dataset.dtype
        out = np.empty((len(indices), *shape), dtype=dtype)
        for k, index in enumerate(indices):
            index = int(index)
            if not 0 <= index < dataset.shape[0]:
                raise IndexError(f"{path}: entry {entry}: {detector} has {dataset.shape[0]} frames, no frame {index}")
            _, chunk = dataset.id.read_direct_chunk((index,) + (0,) * len(shape))
            out[k] = bslz4.decompress(chunk, shape, dtype)
    return out

