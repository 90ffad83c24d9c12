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


def walked_block_by_block(chunk, elems, block_elems, itemsize):
    """bslz4._check_blocks as it was, one block at a time: the refusals the quicker check keeps."""
    full, rest = divmod(elems, block_elems)
    last = rest - rest % 8
    pos, end = bslz4.HEADER.size, len(chunk)
    bound = block_elems * itemsize + block_elems * itemsize // 255 + 16
    for k in range(full + (1 if last else 0)):
        if pos + 4 > end:
            raise ValueError(f"bslz4: chunk is truncated (block {k} of {full + bool(last)} missing)")
        size = bslz4._SIZE.unpack_from(chunk, pos)[0]
        if not 0 < size <= bound or pos + 4 + size > end:
            raise ValueError(f"bslz4: chunk is corrupt or truncated (block {k} claims {size} bytes)")
        pos += 4 + size
    if pos + (rest % 8) * itemsize != end:
        raise ValueError(f"bslz4: chunk is {end} bytes, its blocks end at {pos + (rest % 8) * itemsize}")


LONG = np.random.default_rng(2).poisson(5, 10 * 2048 + 13).astype(np.int32)  # 11 LZ4 blocks, 5 raw elements
LONG_CHUNK = bslz4.compress(LONG)


def size_fields(chunk, blocks):
    """Offsets of the LZ4 blocks' size fields in a whole chunk."""
    pos, out = bslz4.HEADER.size, []
    for _ in range(blocks):
        out.append(pos)
        pos += 4 + bslz4._SIZE.unpack_from(chunk, pos)[0]
    return out


def refusal(check, data):
    try:
        check(data, LONG.size, 2048, 4)
    except ValueError as exc:
        return str(exc)
    return None


def test_a_malformed_block_table_is_refused_with_the_same_message():
    fields = size_fields(LONG_CHUNK, 11)
    end = len(LONG_CHUNK)
    bound = 8192 + 8192 // 255 + 16

    def with_size(k, size):
        data = bytearray(LONG_CHUNK)
        data[fields[k]:fields[k] + 4] = bslz4._SIZE.pack(size)
        return bytes(data)

    cases = {
        with_size(0, 0): "bslz4: chunk is corrupt or truncated (block 0 claims 0 bytes)",
        with_size(4, -16): "bslz4: chunk is corrupt or truncated (block 4 claims -16 bytes)",
        with_size(7, bound + 1): f"bslz4: chunk is corrupt or truncated (block 7 claims {bound + 1} bytes)",
        with_size(10, end): f"bslz4: chunk is corrupt or truncated (block 10 claims {end} bytes)",
        LONG_CHUNK[:fields[6] + 2]: "bslz4: chunk is truncated (block 6 of 11 missing)",
        LONG_CHUNK[:-1]: f"bslz4: chunk is {end - 1} bytes, its blocks end at {end}",
        LONG_CHUNK + b"\0": f"bslz4: chunk is {end + 1} bytes, its blocks end at {end}",
    }
    for data, message in cases.items():
        assert refusal(walked_block_by_block, data) == message
        assert refusal(bslz4._check_blocks, data) == message
        try:
            bslz4.decompress(data, LONG.shape, np.int32)
        except ValueError as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"not refused: {message}")
    assert refusal(bslz4._check_blocks, LONG_CHUNK) is None
    np.testing.assert_array_equal(bslz4.decompress(LONG_CHUNK, LONG.shape, np.int32), LONG)


@settings(max_examples=400, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 10), st.integers(-2**31, 2**31 - 1) | st.integers(-8, 8)),
                      max_size=3),
       cut=st.integers(-40, 8))
def test_changed_block_sizes_are_refused_as_the_block_by_block_walk_refuses_them(sizes, cut):
    """Size fields rewritten (anything, or a few bytes off) and the chunk cut or lengthened: the
    same chunks refused, with the same message, as the block-by-block walk."""
    fields = size_fields(LONG_CHUNK, 11)
    data = bytearray(LONG_CHUNK)
    for k, value in sizes:
        old = bslz4._SIZE.unpack_from(LONG_CHUNK, fields[k])[0]
        value = old + value if -8 <= value <= 8 else value
        data[fields[k]:fields[k] + 4] = bslz4._SIZE.pack(max(-2**31, min(2**31 - 1, value)))
    data = bytes(data[:len(data) + cut]) if cut < 0 else bytes(data) + bytes(cut)
    assert refusal(bslz4._check_blocks, data) == refusal(walked_block_by_block, data)


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
