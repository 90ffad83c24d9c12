"""Frames in data files of `frames_per_file` frames beside the master file, as LImA saves them,
and the entry's Virtual Dataset over them (bliss_lite/data/frame_files.py, frame_reader.py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import gevent
import h5py
import hdf5plugin  # noqa: F401 - the Bitshuffle filter, to read frames back as users do
import numpy as np
import pytest
from conftest import CONFIG_DIR, write_config

from bliss_lite.config import Config, ConfigError
from bliss_lite.config.settings import SettingsStore
from bliss_lite.controllers.detectors.pilatus_base import decode
from bliss_lite.data import bslz4, frame_files
from bliss_lite.data.client import ScanClient, ScanReader
from bliss_lite.data.disk_room import NoRoom
from bliss_lite.data.frame_files import FILL_VALUE, DataFile
from bliss_lite.data.frame_reader import entry_frames
from bliss_lite.data.model import ChannelSpec, channel_key
from bliss_lite.data.redis_server import connect
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE, data_file, relative_to_master, scan_folder
from bliss_lite.data.writer import DiskFullError, EntryWriter
from bliss_lite.processing.frame_sources import hdf5_frames, hdf5_scan
from bliss_lite.scans import scan_data
from bliss_lite.view.export import read_scan


def data_files(master, number):
    return sorted(scan_folder(master, number).glob("pilatus_*.h5"))


def memory_frames(scan):
    """The frames as the detector compressed them, decoded: what the scan received."""
    return np.stack([decode(chunk, scan.data.specs["pilatus"].shape) for chunk in scan.data.buffers["pilatus"].points])


def consistency_flags(path):
    """The superblock's file consistency flags (v2/3 superblock, byte 11): 0 once HDF5 has
    closed the file; the writer's marks (write, SWMR write) while it is open."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return head[11] if len(head) == 12 and head[8] >= 2 else None


# -- the setting ------------------------------------------------------------------------------
def test_frames_per_file_at_run_time(test_session):
    pilatus = test_session["pilatus"]
    assert pilatus.frames_per_file == DEFAULT_FRAMES_PER_FILE
    pilatus.frames_per_file = 40
    assert pilatus.frames_per_file == 40
    pilatus.frames_per_file = np.int64(7)
    assert pilatus.frames_per_file == 7 and type(pilatus.frames_per_file) is int
    for bad in (0, -3, 2.5, 10.0, "10", True, None):
        with pytest.raises(ValueError, match=rf"^pilatus: frames_per_file must be a whole number >= 1, got {bad!r}$"):
            pilatus.frames_per_file = bad
    assert pilatus.frames_per_file == 7  # a refused value changes nothing
    assert "7 frames per data file" in pilatus.__info__()


@pytest.mark.parametrize("value, problem", [
    ("0", "frames_per_file must be >= 1, got 0"),
    ("-5", "frames_per_file must be >= 1, got -5"),
    ("2.5", "frames_per_file must be a whole number, got 2.5"),
    ("ten", "frames_per_file must be a whole number, got 'ten'"),
    ("true", "frames_per_file must be a whole number, got True"),
])
def test_bad_frames_per_file_in_the_yaml_is_refused(tmp_path, value, problem):
    root = write_config(tmp_path / "cfg", {"det.yml": f"- name: p\n  class: pilatus2m\n  frames_per_file: {value}\n"})
    with pytest.raises(ConfigError) as info:
        Config(root, SettingsStore(tmp_path / "run")).get("p")
    assert str(info.value) == f"det.yml:3: detector 'p': {problem}"


def test_frames_per_file_from_the_yaml(tmp_path):
    root = write_config(tmp_path / "cfg", {"det.yml": "- name: p\n  class: pilatus2m\n  frames_per_file: 25\n"
                                                      "- name: q\n  class: pilatus2m\n"})
    config = Config(root, SettingsStore(tmp_path / "run"))
    assert config.get("p").frames_per_file == 25
    assert config.get("q").frames_per_file == DEFAULT_FRAMES_PER_FILE


# -- the writer alone ---------------------------------------------------------------------------
SHAPE = (6, 7)


def frames_and_chunks(n, seed=0):
    frames = np.random.default_rng(seed).poisson(3, (n, *SHAPE)).astype(np.int32)
    return frames, [bslz4.compress(f) for f in frames]


def open_writer(path, per_file, npoints=None):
    spec = ChannelSpec("pilatus", "int32", SHAPE, "counts", "bslz4", extra={"frames_per_file": per_file})
    return EntryWriter(path, 1, title="fscan", axes=[ChannelSpec("omega", unit="deg")],
                       counters=[ChannelSpec("i0"), spec], npoints=npoints)


def batch(chunks, start, stop):
    return {"omega": np.arange(start, stop, dtype=float), "i0": np.ones(stop - start), "pilatus": chunks[start:stop]}


@pytest.mark.parametrize("npoints", [None, 12])
def test_a_batch_across_several_files_and_frames_beyond_the_plan(tmp_path, npoints):
    """12 frames planned (or not known), 14 delivered (frames delivered twice are kept), one
    batch filling two files and starting a third: files of 5, 5, 4 and a VDS of all 14."""
    path = tmp_path / "sample.h5"
    frames, chunks = frames_and_chunks(14)
    writer = open_writer(path, 5, npoints)
    writer.append(batch(chunks, 0, 3))
    writer.append(batch(chunks, 3, 11))
    assert [consistency_flags(f) == 0 for f in data_files(path, 1)] == [True, True, False]  # full ones closed
    with entry_frames(path, "1.1", "pilatus") as reader:  # during the scan: the frames written so far
        assert len(reader) == 11
        np.testing.assert_array_equal(reader.read(range(11)), frames[:11])
    writer.append(batch(chunks, 11, 14))
    writer.close()
    with h5py.File(path, "r") as h5:
        vds = h5["1.1/instrument/pilatus/data"]
        assert vds.is_virtual and vds.shape == (14, *SHAPE) and vds.attrs["units"] == "counts"
        np.testing.assert_array_equal(vds[()], frames)
        np.testing.assert_array_equal(h5["1.1/measurement/pilatus"][()], frames)
        assert h5["1.1/instrument/pilatus/frames_per_file"][()] == 5
    counts = []
    for file in data_files(path, 1):
        with h5py.File(file, "r") as h5:
            counts.append(h5["data"].shape[0])
    assert counts == [5, 5, 4]


def test_a_scan_of_unknown_length_is_read_from_its_files_until_closed(tmp_path):
    path = tmp_path / "sample.h5"
    frames, chunks = frames_and_chunks(7)
    writer = open_writer(path, 3)
    writer.append(batch(chunks, 0, 7))
    with h5py.File(path, "r", swmr=True, locking=False) as h5:
        assert "data" not in h5["1.1/instrument/pilatus"]  # SWMR allows no new dataset: made at close
    with entry_frames(path, "1.1", "pilatus") as reader:
        assert len(reader) == 7 and reader.encoded
        assert reader.chunk(4) == chunks[4]  # the stored bytes, as the detector made them
        np.testing.assert_array_equal(reader.read([6, 0]), frames[[6, 0]])
        with pytest.raises(IndexError, match="pilatus has 7 frames, no frame 7"):
            reader.frame(7)
    writer.close("USER_ABORT")
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["1.1/measurement/pilatus"][()], frames)


def test_too_many_planned_files_for_a_vds_at_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr(frame_files, "MAX_PLANNED_FILES", 2)
    path = tmp_path / "sample.h5"
    frames, chunks = frames_and_chunks(12)
    writer = open_writer(path, 5, npoints=12)  # 3 files: more than 2
    writer.append(batch(chunks, 0, 12))
    with h5py.File(path, "r", swmr=True, locking=False) as h5:
        assert "data" not in h5["1.1/instrument/pilatus"]
    with entry_frames(path, "1.1", "pilatus") as reader:
        np.testing.assert_array_equal(reader.read(range(len(reader))), frames)
    writer.close()
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["1.1/measurement/pilatus"][()], frames)


def test_no_frame_at_all_leaves_an_empty_dataset_and_no_file(tmp_path):
    path = tmp_path / "sample.h5"
    writer = open_writer(path, 3, npoints=9)
    writer.append({"omega": [0.0], "i0": [1.0]})
    writer.close("FAILURE")
    with h5py.File(path, "r") as h5:
        assert h5["1.1/measurement/pilatus"].shape == (0, *SHAPE)
    assert data_files(path, 1) == []


def test_a_full_disk_refuses_a_batch_whole_across_files(tmp_path, monkeypatch):
    """The third data file has no room: nothing of the batch is written (not even to the file
    being filled), the file made for it is removed, the closed file is whole, the entry closes
    with every frame written before."""
    path = tmp_path / "sample.h5"
    frames, chunks = frames_and_chunks(12)
    writer = open_writer(path, 4, npoints=12)
    writer.append(batch(chunks, 0, 6))
    real = DataFile.reserve

    def no_room_in_the_third(self, part):
        if self.path.name == "pilatus_00002.h5":
            raise NoRoom(28, "No space left on device", str(self.path))
        return real(self, part)

    monkeypatch.setattr(DataFile, "reserve", no_room_in_the_third)
    with pytest.raises(DiskFullError, match=rf"^{path}: disk full \(No space left on device\): no room for the next "
                                            rf"points of entry 1.1 in its data file .*/pilatus_00002.h5; the file "
                                            rf"keeps its first 6 points$"):
        writer.append(batch(chunks, 6, 10))
    assert [f.name for f in data_files(path, 1)] == ["pilatus_00000.h5", "pilatus_00001.h5"]
    writer.close("FAILURE")
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5["1.1/measurement/pilatus"][()], frames[:6])
        assert len(h5["1.1/measurement/omega"]) == 6
    with h5py.File(data_files(path, 1)[0], "r") as h5:
        np.testing.assert_array_equal(h5["data"][()], frames[:4])


def test_frames_kept_in_the_master_by_earlier_entries_are_read_too(tmp_path):
    """Entries written before the data files held their frames in the entry itself."""
    path = tmp_path / "sample.h5"
    frames = frames_and_chunks(4)[0]
    writer = EntryWriter(path, 1, title="old", counters=[ChannelSpec("pilatus", "int32", SHAPE)])
    writer.append({"pilatus": frames})
    writer.close()
    with entry_frames(path, "1.1", "pilatus") as reader:
        assert len(reader) == 4 and reader.encoded and not reader.sources
        np.testing.assert_array_equal(reader.read([3, 1]), frames[[3, 1]])
    assert not scan_folder(path, 1).exists()


def test_data_files_of_an_earlier_scan_are_never_overwritten(tmp_path):
    path = tmp_path / "sample.h5"
    data_file(path, 1, "pilatus", 0).parent.mkdir(parents=True)
    data_file(path, 1, "pilatus", 0).write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match="pilatus_00000.h5: a data file of an earlier scan 1 is there"):
        open_writer(path, 3, 9)
    assert data_file(path, 1, "pilatus", 0).read_bytes() == b"earlier" and not path.exists()


# -- real scans -------------------------------------------------------------------------------
def test_a_multi_height_xrdct_in_data_files(scan_session, data_root, tmp_path, monkeypatch, shared_redis):
    """2 heights x 3 x 8 = 48 frames, 10 per file: files of 10, 10, 10, 10, 8; the entry's VDS,
    measurement/pilatus, get_data() and silx all give the frames the detector sent, also once
    the master file and its scan folder are moved elsewhere. Frames let go from memory during
    the scan are read back from the data files."""
    ns = scan_session
    ns["pilatus"].frames_per_file = 10
    monkeypatch.setattr(scan_data, "KEEP_FRAME_BYTES", 0)  # every frame written is let go from memory
    seen = []

    def read_while_running():
        while not (ns["SCANS"] and ns["SCANS"][-1].data.count("pilatus") >= 25):
            gevent.sleep(0.01)
        scan = ns["SCANS"][-1]
        seen.append(scan.get_data()["pilatus"])
        with entry_frames(scan.filename, scan.entry, "pilatus") as reader:
            seen.append(reader.read(range(len(reader))))
        with h5py.File(scan.filename, "r", swmr=True, locking=False) as h5:
            seen.append(h5[f"{scan.entry}/instrument/pilatus/data"][-1])  # a file not made yet
        seen.append(read_scan(scan.filename, scan.entry).frame)  # `bliss-lite plot` of a running scan
        seen.append(hdf5_scan(scan.filename, scan.entry, channels=False).nframes)  # reprocessing's view

    reader_greenlet = gevent.spawn(read_while_running)
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 3, [-0.3, 0.4], 0.07, n_omega=8, hooks=[])
    reader_greenlet.get(timeout=5)
    assert scan.end_reason == "SUCCESS" and scan.npoints == 48
    assert scan.data.buffers["pilatus"].released > 0  # get_data had to read the files
    data = scan.get_data()
    assert data["pilatus"].shape == (48, 48, 160)
    assert np.array_equal(data["z"].reshape(2, 24)[:, 0], [-0.3, 0.4])
    assert not np.array_equal(data["pilatus"][:24], data["pilatus"][24:])  # the heights differ
    during, files_during, unmade, plotted, counted = seen
    assert len(files_during) <= counted < 48  # frames written so far, not the 48 the VDS maps
    assert 25 <= len(during) and len(files_during) >= 20
    np.testing.assert_array_equal(during, data["pilatus"][:len(during)])
    np.testing.assert_array_equal(files_during, data["pilatus"][:len(files_during)])
    assert (unmade == FILL_VALUE).all()
    newest = int(plotted.name.split("frame ")[1].split()[0])
    assert plotted.name == f"pilatus: frame {newest} of {newest + 1}" and newest + 1 >= len(files_during)
    np.testing.assert_array_equal(plotted.values, data["pilatus"][newest])  # the newest written, not a fill

    master, number = scan.filename, scan.number
    files = data_files(master, number)
    assert files == [data_file(master, number, "pilatus", k) for k in range(5)]
    received = scan.data.buffers["pilatus"].points[scan.data.buffers["pilatus"].released:]
    for k, file in enumerate(files):
        with h5py.File(file, "r") as h5:
            frames = h5["data"]
            assert frames.shape == ((10 if k < 4 else 8), 48, 160) and frames.chunks == (1, 48, 160)
            assert frames.attrs["units"] == "counts"
            assert frames.id.get_create_plist().get_filter(0)[0] == 32008  # Bitshuffle
            np.testing.assert_array_equal(frames[()], data["pilatus"][10 * k:10 * k + len(frames)])
            for i in range(len(frames)):  # the detector's bytes, stored as they came
                index = 10 * k + i - scan.data.buffers["pilatus"].released
                if index >= 0:
                    assert frames.id.read_direct_chunk((i, 0, 0))[1] == received[index]
    with h5py.File(master, "r") as h5:
        vds = h5[f"{scan.entry}/instrument/pilatus/data"]
        assert vds.is_virtual and vds.shape == (48, 48, 160)
        sources = [(s.file_name, s.dset_name) for s in vds.virtual_sources()]
        assert sources == [(relative_to_master(master, f), "data") for f in files]
        assert all(not os.path.isabs(name) for name, _ in sources)
        assert sources[0][0] == f"sample_scan{number:04d}/pilatus_00000.h5"
        np.testing.assert_array_equal(vds[()], data["pilatus"])
        np.testing.assert_array_equal(h5[f"{scan.entry}/measurement/pilatus"][()], data["pilatus"])
        assert h5[f"{scan.entry}/instrument/pilatus/frames_per_file"][()] == 10
    record = hdf5_scan(master, scan.entry, channels=False)
    assert (record.nframes, record.frame_shape) == (48, (48, 160))
    np.testing.assert_array_equal(np.stack([f for _, f in hdf5_frames(master, scan.entry, start=5)]),
                                  data["pilatus"][5:])
    reader = ScanReader(connect(shared_redis), scan.key)
    assert reader.channels["pilatus"].extra["frames_per_file"] == 10  # the channel carries it

    moved = tmp_path / "elsewhere" / "beamtime"
    shutil.move(str(data_root / "test"), str(moved))  # the master and its scan folder together
    assert not os.path.exists(master)
    monkeypatch.chdir(tmp_path)  # neither the old folder nor the new one: HDF5 must look beside the master
    with h5py.File(moved / "sample.h5", "r") as h5:
        np.testing.assert_array_equal(h5[f"{scan.entry}/measurement/pilatus"][()], data["pilatus"])
    import silx.io

    with silx.io.open(str(moved / "sample.h5")) as h5:
        np.testing.assert_array_equal(h5[f"{scan.entry}/instrument/pilatus/data"][()], data["pilatus"])


def test_an_aborted_scan_maps_exactly_the_frames_written(scan_session):
    ns = scan_session
    ns["pilatus"].frames_per_file = 4
    main = gevent.getcurrent()

    def interrupt():
        while not (ns["SCANS"] and ns["SCANS"][-1].data.count("pilatus") >= 10):
            gevent.sleep(0.005)
        main.throw(KeyboardInterrupt)

    gevent.spawn(interrupt)
    with pytest.raises(KeyboardInterrupt):
        ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 4, [0.0], 0.03, n_omega=20, hooks=[])
    scan = ns["SCANS"][-1]
    assert scan.end_reason == "USER_ABORT"
    received = memory_frames(scan)
    n = len(received)
    assert 10 <= n < scan.npoints == 80
    files = data_files(scan.filename, scan.number)
    assert len(files) == -(-n // 4)
    with h5py.File(scan.filename, "r") as h5:
        assert h5[f"{scan.entry}/end_reason"][()] == b"USER_ABORT"
        vds = h5[f"{scan.entry}/instrument/pilatus/data"]
        assert vds.shape == (n, 48, 160)  # not the 80 planned
        assert len(vds.virtual_sources()) == len(files)
        np.testing.assert_array_equal(vds[()], received)
        np.testing.assert_array_equal(vds[()], scan.get_data()["pilatus"])
    for k, file in enumerate(files):
        with h5py.File(file, "r") as h5:
            assert h5["data"].shape[0] == (4 if k < len(files) - 1 else n - 4 * k)


KILLED_SCAN = r"""
import sys
from bliss_lite.shell.runner import open_session

session, ns = open_session("test", sys.argv[1])
ns["pilatus"].frames_per_file = 5
ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.9, 0.9, 4, [0.0], 0.042, n_omega=50, hooks=[])
print("not killed")
"""


def test_a_killed_scan_leaves_its_closed_data_files_whole(data_root, run_dir, shared_redis):
    """kill -9 once two data files are closed: every closed file opens with plain h5py and holds
    its 5 frames, equal to what Redis got; the master, still marked open, shows them through
    its VDS (read with SWMR), and the fill value for files never made."""
    env = dict(os.environ, BLISS_LITE_REDIS_URL=shared_redis, BLISS_LITE_DATA_ROOT=str(data_root),
               BLISS_LITE_RUN_DIR=str(run_dir))
    scans = ScanClient(connect(shared_redis))
    scans.start_from_now()
    master = data_root / "test" / "sample.h5"
    process = subprocess.Popen([sys.executable, "-c", KILLED_SCAN, str(CONFIG_DIR)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader, published = None, 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            reader = reader or scans.wait_next_scan(timeout_ms=0)
            published = scans.client.xlen(channel_key(reader.key, "pilatus")) if reader else 0
            if sum(consistency_flags(f) == 0 for f in data_files(master, 1)) >= 2 and published >= 10:
                break  # two files closed, and frames in Redis to compare them with
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()[1][-3000:]
        os.kill(process.pid, signal.SIGKILL)
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL and "not killed" not in out
    files = data_files(master, 1)
    closed = [f for f in files if consistency_flags(f) == 0]
    assert len(closed) >= 2 and closed == files[:len(closed)]  # the first ones, in order (a batch
    # of many frames opens the files it fills before writing any: a full disk refuses it whole)
    in_files = []
    for file in closed:
        with h5py.File(file, "r") as h5:  # plain h5py: no SWMR, no recovery
            frames = h5["data"]
            assert frames.shape == (5, 48, 160)
            decoded = frames[()]  # through the HDF5 filter (hdf5plugin)
            for i in range(5):
                raw = frames.id.read_direct_chunk((i, 0, 0))[1]
                np.testing.assert_array_equal(decoded[i], bslz4.decompress(raw, (48, 160), np.int32))
            in_files.append(decoded)
    in_files = np.concatenate(in_files)
    assert (in_files.max(axis=(1, 2)) > 50).all()  # diffraction in every frame: none is the fill value
    assert reader.name == "xrdct" and reader.state != "CLOSED"
    in_redis = reader.read("pilatus")  # Redis may miss the last batch written before the kill
    count = min(len(in_redis), len(in_files))
    assert count >= 10
    np.testing.assert_array_equal(in_files[:count], in_redis[:count])
    with h5py.File(master, "r", swmr=True, locking=False) as h5:
        entry = h5["1.1"]
        assert entry["end_reason"][()] == b""  # the process died: no end
        vds = entry["instrument/pilatus/data"]
        assert vds.shape == (200, 48, 160)  # the planned frames
        np.testing.assert_array_equal(vds[:len(in_files)], in_files)
        assert (vds[-1] == FILL_VALUE).all()  # its file was never made
