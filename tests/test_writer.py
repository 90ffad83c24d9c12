"""The HDF5/NeXus writer: layout, values, SWMR reading while writing, compressed frames."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.writer import EntryWriter, next_entry_number, read_entry


def open_entry(path, number=None, **kwargs):
    number = number or next_entry_number(path)
    options = dict(title="ascan m0 0 1 4 0.1", positioners={"m0": (0.0, "mm"), "m1": (2.5, "")},
                   axes=[ChannelSpec("m0", unit="mm")], counters=[ChannelSpec("diode1"), ChannelSpec("gauss")])
    options.update(kwargs)
    return EntryWriter(path, number, **options)


def test_entry_layout_and_values(tmp_path):
    path = tmp_path / "sample" / "sample.h5"
    writer = open_entry(path)
    assert writer.name == "1.1"
    writer.append({"m0": [0.0, 0.25], "diode1": [10, 11], "gauss": [1.0, 2.0]})
    writer.append({"m0": [0.5, 0.75, 1.0], "diode1": [12, 13, 14], "gauss": [3.0, 2.0, 1.0]})
    writer.close("SUCCESS")
    with h5py.File(path, "r") as h5:
        entry = h5["1.1"]
        assert h5.attrs["default"] == "1.1" and entry.attrs["NX_class"] == "NXentry"
        assert entry["title"][()].decode() == "ascan m0 0 1 4 0.1"
        assert entry["end_reason"][()] == b"SUCCESS"
        assert entry["start_time"][()].decode() <= entry["end_time"][()].decode()
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        assert entry["instrument/positioners/m1"][()] == 2.5
        assert entry["instrument/positioners/m0"].attrs["units"] == "mm"
        assert entry["instrument/m0"].attrs["NX_class"] == "NXpositioner"
        assert entry["instrument/diode1"].attrs["NX_class"] == "NXdetector"
        np.testing.assert_array_equal(entry["measurement/m0"][()], [0, 0.25, 0.5, 0.75, 1.0])
        assert entry.get("measurement/gauss", getlink=True).path == "/1.1/instrument/gauss/data"
        plot = entry[entry.attrs["default"]]
        assert plot.attrs["NX_class"] == "NXdata" and plot.attrs["signal"] == "diode1"
        assert list(plot.attrs["axes"]) == ["m0"]
        np.testing.assert_array_equal(plot["diode1"][()], [10, 11, 12, 13, 14])
    assert next_entry_number(path) == 2
    second = open_entry(path)
    assert second.name == "2.1"
    second.close("USER_ABORT")
    with h5py.File(path, "r") as h5:
        assert h5["2.1/end_reason"][()] == b"USER_ABORT" and h5.attrs["default"] == "2.1"
        assert len(h5["1.1/measurement/m0"]) == 5  # the first scan is untouched


def test_another_process_reads_while_the_scan_writes(tmp_path):
    path = tmp_path / "live.h5"
    writer = open_entry(path)
    writer.append({"m0": [0.0, 0.25, 0.5], "diode1": [1, 2, 3], "gauss": [0, 0, 0]})
    code = ("import h5py, sys; h5 = h5py.File(sys.argv[1], 'r', swmr=True, locking=False); "
            "print(h5['1.1/measurement/m0'][()].tolist(), h5['1.1/end_reason'][()])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0.0, 0.25, 0.5] b''"  # every flushed point, not yet ended
    writer.append({"m0": [0.75], "diode1": [4], "gauss": [0]})
    assert read_entry(path, 1)["m0"].tolist() == [0.0, 0.25, 0.5, 0.75]
    writer.close("FAILURE")
    assert read_entry(path, 1)["diode1"].tolist() == [1, 2, 3, 4]


def test_frames_one_per_chunk_bitshuffle_lz4(tmp_path):
    path = tmp_path / "frames.h5"
    frames = np.random.default_rng(1).poisson(3, size=(4, 17, 23)).astype(np.int32)
    writer = open_entry(path, counters=[ChannelSpec("pilatus", "int32", (17, 23))], axes=[])
    writer.append({"pilatus": frames[:1]})
    writer.append({"pilatus": frames[1:]})
    writer.close()
    with h5py.File(path, "r") as h5:
        data = h5["1.1/instrument/pilatus/data"]
        assert data.chunks == (1, 17, 23)
        plist = data.id.get_create_plist()
        assert plist.get_nfilters() == 1 and plist.get_filter(0)[0] == 32008  # Bitshuffle
        np.testing.assert_array_equal(data[()], frames)  # lossless
        assert "plotselect" not in h5["1.1"]  # no scalar counter to plot


def test_existing_entry_is_never_overwritten(tmp_path):
    path = tmp_path / "x.h5"
    open_entry(path, 1).close()
    with pytest.raises(FileExistsError, match="entry 1.1 already exists"):
        open_entry(path, 1)
    with pytest.raises(ValueError, match="end_reason must be one of"):
        open_entry(path, 2).close("DONE")
