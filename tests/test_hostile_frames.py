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


def test_a_changed_byte_inside_an_lz4_block_is_a_value_error():
    """Well framed, so the block walk lets it through, but its LZ4 bytes do not decode:
    bitshuffle's RuntimeError becomes the ValueError of any other bad chunk (found by the test
    above)."""
    data = bytearray(CHUNK)
    data[1052] = 0
    try:
        bslz4.decompress(bytes(data), FRAME.shape, np.int32)
    except ValueError as exc:
        assert str(exc).startswith("bslz4: chunk is corrupt (") and "\n" not in str(exc), exc
    else:
        raise AssertionError("decoded")


def test_a_whole_chunk_still_decodes_exactly():
    for frame in (FRAME, np.arange(7 * 13, dtype=np.uint16).reshape(7, 13), np.zeros((2048 + 5,), np.int32)):
        np.testing.assert_array_equal(bslz4.decompress(bslz4.compress(frame), frame.shape, frame.dtype), frame)


# -- CBF folders --------------------------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402

from bliss_lite.processing.frame_sources import cbf_files, cbf_frames  # noqa: E402
from bliss_lite.processing.reprocess import main as reprocess  # noqa: E402

CBF_FRAMES = np.random.default_rng(2).poisson(30, (5, 20, 24)).astype(np.int32)


def cbf_folder(path):
    import fabio.cbfimage

    path.mkdir(exist_ok=True)
    for i, frame in enumerate(CBF_FRAMES):
        fabio.cbfimage.CbfImage(data=frame).write(str(path / f"img_{i:04d}.cbf"))
    return path


def spoil(path, how, seed):
    data = bytearray(path.read_bytes())
    start = data.find(b"\x0c\x1a\x04\xd5") + 4
    if how == "flip":  # one bit of the binary section: fabio decoded it with a log line only
        data[start + seed % (len(data) - start - 40)] ^= 1 << (seed % 8)
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[:start + seed % (len(data) - start - 40)]))
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "directory":
        path.unlink()
        path.mkdir()
    elif how == "device":
        path.unlink()
        path.symlink_to("/dev/zero")


@settings(max_examples=20, deadline=None)
@given(how=st.sampled_from(["flip", "truncate", "fifo", "directory", "device"]), which=st.integers(0, 4),
       seed=st.integers(0, 10**6), readers=st.sampled_from([1, 3]))
def test_a_spoiled_cbf_is_an_error_naming_it_and_no_index_shifts(tmp_path_factory, how, which, seed, readers):
    folder = cbf_folder(tmp_path_factory.mktemp("cbf"))
    bad = folder / f"img_{which:04d}.cbf"
    spoil(bad, how, seed)
    assert [p.name for p in cbf_files(folder)] == [f"img_{i:04d}.cbf" for i in range(5)]  # nothing skipped
    got = {}
    with pytest.raises(OSError) as error:
        for index, frame in cbf_frames(folder, readers=readers):
            got[index] = frame
    message = str(error.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message
    assert ("corrupt CBF" in message) if how in ("flip", "truncate") else ("not a regular file" in message)
    assert sorted(got) == list(range(which))  # the frames before it, each at its own index
    for index, frame in got.items():
        np.testing.assert_array_equal(frame, CBF_FRAMES[index])


def test_a_folder_job_with_a_corrupt_cbf_fails_naming_it(tmp_path, capsys):
    folder = cbf_folder(tmp_path / "frames")
    spoil(folder / "img_0002.cbf", "flip", 12345)
    poni = os.path.join(os.path.dirname(__file__), "..", "config", "xrdct", "pilatus2m.poni")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"plugin": "integrate_scan", "input": {
        "cbf_folder": str(folder), "integration": {"poni": poni, "npt": 50, "roi": [816, 700, 20, 24]},
        "output": {"filename": str(tmp_path / "out.h5"), "entry": "1.1"}}}))
    assert reprocess([str(job)]) == 1
    said = capsys.readouterr()
    assert f"{folder / 'img_0002.cbf'}: corrupt CBF: checksum mismatch" in said.out + said.err
