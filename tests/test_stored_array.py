"""A reduction file's dataset read when indexed (`result["maps"]` of a large scan): any NumPy
index gives NumPy's answer, and one h5py does not take reads only the heights it selects."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bliss_lite.processing import reduction_files
from bliss_lite.processing.reduction_files import Stored, StoredArray

SHAPE = (7, 5, 4)
VALUES = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)

heights = st.integers(-7, 6)
firsts = st.one_of(heights, st.slices(7), st.lists(heights, min_size=0, max_size=6),
                   st.lists(st.booleans(), min_size=7, max_size=7).map(np.array))
rests = st.sampled_from([(), (slice(None),), ([3, 0, 3],), (slice(None, None, -2),), (2, slice(None, None, -1)),
                         (Ellipsis, [1, 0]), (slice(None), 1), ([4, 1], [0, 2])])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("stored") / "maps.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("maps/a", data=VALUES, chunks=(1, 5, 4))
    return StoredArray(Stored(path, "maps/a", SHAPE))


@settings(max_examples=300, deadline=None)
@given(first=firsts, rest=rests)
def test_any_index_gives_numpys_answer(stored, first, rest):
    key = (first, *rest)
    try:
        expected = VALUES[key]
    except IndexError:
        with pytest.raises(IndexError):  # refused as NumPy refuses it
            stored[key]
        return
    got = stored[key]
    assert np.shape(got) == np.shape(expected), key
    np.testing.assert_array_equal(got, expected, err_msg=str(key))


def test_an_index_h5py_refuses_reads_only_the_heights_it_selects(stored, monkeypatch):
    """Reversed, unsorted and repeated heights: the file is read for those heights only."""
    reads = []
    real = reduction_files._by_first_axis

    def counting(dataset, key):
        class Counted:
            shape, ndim, dtype = dataset.shape, dataset.ndim, dataset.dtype

            def __getitem__(self, k):
                part = dataset[k]
                reads.append(part.shape[0] if np.ndim(part) == 3 else len(VALUES))
                return part
        return real(Counted(), key)

    monkeypatch.setattr(reduction_files, "_by_first_axis", counting)
    for key, rows in (([5, 1, 5], 2), (slice(6, 2, -2), 2), ((slice(None, None, -1), [3, 0]), 7), ([[0, 6]], 2)):
        reads.clear()
        np.testing.assert_array_equal(stored[key], VALUES[key])
        assert reads == [rows], key
