"""Corrupt detector data: errors or flagged frames naming the file, never a crash, never silence.

Bitshuffle-LZ4 chunks off the wire or out of a file, cut short or with bytes changed, are
refused with a ValueError or decode to a frame of the right shape (the format has no checksum);
the process never crashes (bitshuffle trusts the block sizes it reads: before the check a cut
chunk was a segmentation fault).
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_lite.data import bslz4

FRAME = np.random.default_rng(1).poisson(5, (40, 56)).astype(np.int32)
CHUNK = bslz4.compress(FRAME)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(CHUNK)), changes=st.lists(st.tuples(st.integers(0, len(CHUNK) - 1),
                                                                  st.integers(0, 255)), max_size=6))
def test_a_cut_or_changed_chunk_is_refused_or_decodes_to_a_frame_of_its_shape(cut, changes):
    data = bytearray(CHUNK)
    for at, byte in changes:
        data[at] = byte
    data = bytes(data[:cut])
    try:
        frame = bslz4.decompress(data, FRAME.shape, np.int32)
    except ValueError as exc:
        assert str(exc).startswith("bslz4") and "\n" not in str(exc)
    else:
        assert frame.shape == FRAME.shape and frame.dtype == np.int32
        if data == CHUNK:
            np.testing.assert_array_equal(frame, FRAME)


def test_a_whole_chunk_still_decodes_exactly():
    for frame in (FRAME, np.arange(7 * 13, dtype=np.uint16).reshape(7, 13), np.zeros((2048 + 5,), np.int32)):
        np.testing.assert_array_equal(bslz4.decompress(bslz4.compress(frame), frame.shape, frame.dtype), frame)
