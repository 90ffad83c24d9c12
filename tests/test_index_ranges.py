"""The integration hook's record of frames received: runs of indices, checked against a plain set
on random arrival orders, and small for a scan whose patterns come back nearly in order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_lite.processing.index_ranges import IndexRanges

batches = st.lists(st.lists(st.integers(0, 300), max_size=40), max_size=12)


@settings(max_examples=200, deadline=None)
@given(batches, st.integers(0, 320))
def test_ranges_hold_what_a_set_holds(added, total):
    ranges, reference = IndexRanges(), set()
    for batch in added:
        ranges.add(np.array(batch, np.int64))
        reference.update(batch)
    assert len(ranges) == len(reference)
    probe = np.arange(0, 320)
    assert ranges.contains(probe).tolist() == [i in reference for i in probe]
    assert ranges.count_below(total) == len([i for i in reference if i < total])
    missing = [i for i in range(total) if i not in reference]
    assert ranges.missing_below(total).tolist() == missing
    for chunk in (1, 7, 64):
        pieces = list(ranges.missing_below(total, chunk=chunk))
        assert all(0 < len(piece) <= chunk for piece in pieces)
        assert [i for piece in pieces for i in piece.tolist()] == missing
    assert np.all(ranges.starts[1:] > ranges.stops[:-1])  # disjoint, not touching, sorted


def test_a_million_frames_nearly_in_order_are_a_few_runs():
    """Batches of 50 patterns out of order within a window of 2000, ten frames never delivered:
    the memory is that of the ten gaps, not of the million frames."""
    rng = np.random.default_rng(7)
    order = np.arange(1_000_000)
    for start in range(0, len(order), 2000):
        rng.shuffle(order[start:start + 2000])
    lost = rng.choice(len(order), 10, replace=False)
    delivered = order[~np.isin(order, lost)]
    ranges, most_runs = IndexRanges(), 0
    for start in range(0, len(delivered), 50):
        ranges.add(delivered[start:start + 50])
        most_runs = max(most_runs, ranges.runs)
    assert len(ranges) == 1_000_000 - 10
    assert ranges.missing_below(1_000_000).tolist() == sorted(lost.tolist())
    assert ranges.runs == 11 - (0 in lost) - (999_999 in lost)
    assert most_runs < 2000  # never more runs than the out-of-order window


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match="negative index -1"):
        IndexRanges().add([3, -1])
