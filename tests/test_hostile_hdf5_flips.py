"""Bit-flipped HDF5 files: every reader answers or fails naming the file, never hangs.

A real XRD-CT scan file (frames in data files, patterns and phase maps in the master) has
bytes flipped in its superblock, in its object headers and in its chunk data. `reprocess`,
`plot`, reading frames (`entry_reader`) and a scan appending to the file each run in a
subprocess under a generous timeout (a hang is what h5py's SWMR open of a damaged file did):
each finishes, with its answer or with one line naming the file. A scan refuses a damaged
file before any motor moves.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

from bliss_lite.data.safe_open import DamagedFile, check_hdf5, open_hdf5, stored_eof

HANG_S = 120  # far beyond any answer here: a reader still running then has hung


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory, shared_redis):
    """A saved XRD-CT scan of the test session: (master file, entry)."""
    from conftest import session_of_its_own

    with session_of_its_own(tmp_path_factory.mktemp("flips"), shared_redis) as ns:
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, 4, [0.0], 0.02, n_omega=4, fast_axis="x",
                           hooks={"integration": {"npt": 50, "workers": 0},
                                  "reconstruction": {"phases": {"CeO2": "CeO2"}}})
    return scan.filename, scan.entry


def _object_headers(data):
    """Offsets of the version-2 object headers ("OHDR") of a file's bytes."""
    found, at = [], data.find(b"OHDR")
    while at >= 0:
        found.append(at)
        at = data.find(b"OHDR", at + 1)
    return found


def _chunk_offsets(path, entry):
    """Offsets of the first chunk of every chunked dataset of the entry's measurement."""
    offsets = []
    with h5py.File(path, "r", locking=False) as h5:
        for dataset in h5[f"{entry}/measurement"].values():
            if isinstance(dataset, h5py.Dataset) and dataset.chunks and dataset.id.get_num_chunks():
                info = dataset.id.get_chunk_info(0)
                offsets.append((info.byte_offset, info.size))
    return offsets


def flipped_copies(path, entry, folder):
    """{what: a copy of the master file with bytes flipped there}."""
    data = open(path, "rb").read()
    headers = _object_headers(data)
    assert len(headers) > 5
    chunk, size = _chunk_offsets(path, entry)[0]
    places = {"superblock version": [8], "superblock end of file": [28, 29], "superblock checksum": [44],
              "superblock flags": [11], "root object header": [headers[0] + 12],
              "the last object header": [headers[-1] + 6], "chunk data": [chunk + size // 2]}
    copies = {}
    for n, (what, positions) in enumerate(places.items()):
        damaged = bytearray(data)
        for position in positions:
            damaged[position] ^= 0xFF
        copy = folder / f"flip{n}" / os.path.basename(path)
        copy.parent.mkdir(parents=True)
        copy.write_bytes(damaged)
        for folder_of_scan in Path(path).parent.glob(f"{Path(path).stem}_scan*"):  # the frames' data files
            shutil.copytree(folder_of_scan, copy.parent / folder_of_scan.name)
        copies[what] = copy
    return copies


def _run(code, tmp_path):
    env = {**os.environ, "BLISS_LITE_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=HANG_S)
    return proc.returncode, proc.stdout + proc.stderr


def _cli(args, tmp_path):
    env = {**os.environ, "BLISS_LITE_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-m", "bliss_lite", *args], env=env, capture_output=True, text=True,
                          timeout=HANG_S)
    return proc.returncode, proc.stdout + proc.stderr


def assert_answer_or_named_error(rc, output, path):
    """Finished (the subprocess timeout did not fire): an answer, or an error naming the file."""
    assert "Traceback" not in output, output
    if rc != 0:
        assert str(path) in output, output


@pytest.mark.parametrize("place", ["superblock version", "superblock end of file", "superblock checksum",
                                   "superblock flags"])
def test_a_flipped_superblock_is_a_damaged_file_naming_it(scan_file, tmp_path, place):
    copy = flipped_copies(*scan_file, tmp_path)[place]
    with pytest.raises(DamagedFile) as error:
        check_hdf5(copy, wait=0)
    message = str(error.value)
    assert message.startswith(f"{copy}: ") and "\n" not in message
    assert "damaged HDF5 superblock" in message or "truncated" in message
    with pytest.raises(DamagedFile):
        open_hdf5(copy, "a", wait=0)
    assert copy.read_bytes() != open(scan_file[0], "rb").read()  # flipped, and nothing written into it


def test_an_undefined_end_of_file_in_a_superblock_without_checksum_is_damaged(tmp_path):
    """Superblock version 0 has no checksum: an end of file of all ones ("undefined") is refused."""
    path = tmp_path / "old.h5"
    with h5py.File(path, "w", libver="earliest") as h5:
        h5["x"] = [1.0, 2.0]
    data = bytearray(path.read_bytes())
    assert data[8] == 0 and data[13] == 8  # version 0, 8-byte addresses: the end of file at 40
    data[40:48] = b"\xff" * 8
    path.write_bytes(data)
    with pytest.raises(DamagedFile, match=f"^{path}: damaged HDF5 superblock \\(no end-of-file address\\)"):
        open_hdf5(path, wait=0)


def test_a_file_a_swmr_writer_has_open_is_read_with_swmr(tmp_path):
    """The writer's own case: its superblock marks it, the reader follows it with SWMR."""
    path = tmp_path / "live.h5"
    writer = h5py.File(path, "w", libver="latest", locking=False)
    try:
        points = writer.create_dataset("points", shape=(0,), maxshape=(None,), dtype="f8", chunks=(16,))
        writer.swmr_mode = True
        points.resize((3,))
        points[:] = [1.0, 2.0, 3.0]
        writer.flush()
        assert check_hdf5(path, wait=0) is True
        with open_hdf5(path) as h5:
            assert h5.swmr_mode and list(h5["points"][()]) == [1.0, 2.0, 3.0]
    finally:
        writer.close()
    assert check_hdf5(path, wait=0) is False  # closed: read plainly
    with open_hdf5(path) as h5:
        assert not h5.swmr_mode and list(h5["points"][()]) == [1.0, 2.0, 3.0]


def test_the_whole_file_has_its_superblock_checked_and_opens(scan_file):
    path, entry = scan_file
    size, eof = stored_eof(path)
    assert size == eof
    assert check_hdf5(path, wait=0) is False  # closed: no writer marked, read plainly
    with open_hdf5(path) as h5:
        assert entry in h5


def test_every_reader_of_a_flipped_file_answers_or_names_it(scan_file, tmp_path):
    path, entry = scan_file
    seen = {}
    for what, copy in flipped_copies(path, entry, tmp_path).items():
        if what == "superblock flags":  # the checksum, as "superblock checksum": in the test above
            continue
        job = copy.parent / "job.json"
        job.write_text(json.dumps({"plugin": "integrate_scan",
                                   "input": {"filename": str(copy), "entry": entry,
                                             "output": {"filename": str(copy.parent / "out.h5"), "entry": entry},
                                             "integration": {"npt": 50}}}))
        runs = {"reprocess": _cli(["reprocess", str(job)], tmp_path),
                "plot": _cli(["plot", str(copy), entry, "-o", str(copy.parent / "out.png")], tmp_path),
                "entry_reader": _run(f"""
                    from bliss_lite.data.entry_reader import read_frames
                    print(read_frames({str(copy)!r}, {entry!r}, "pilatus", range(4)).shape)""", tmp_path)}
        for reader, (rc, output) in runs.items():
            if reader == "entry_reader":  # a library call: the exception it ends with names the file
                assert rc == 0 or str(copy) in output.strip().splitlines()[-1], output
            else:
                assert_answer_or_named_error(rc, output, copy)
            seen[what, reader] = rc, output
    for what in ("superblock version", "superblock end of file", "superblock checksum", "root object header"):
        for reader in ("reprocess", "plot", "entry_reader"):
            rc, output = seen[what, reader]
            assert rc != 0 and ("damaged HDF5 superblock" in output or "damaged HDF5 file" in output), (what, output)
    for reader in ("reprocess", "plot", "entry_reader"):  # a flipped value: read as it is, no error
        assert seen["chunk data", reader][0] == 0, seen["chunk data", reader]
    assert "(4, 48, 160)" in seen["chunk data", "entry_reader"][1]


def test_a_scan_refuses_a_flipped_file_before_any_motor_moves(scan_file, tmp_path, shared_redis):
    """A scan into a damaged (not truncated) file: refused naming it, the motors where they were."""
    from conftest import CONFIG_DIR

    path, entry = scan_file
    for n, what in enumerate(("superblock checksum", "root object header")):
        copy = flipped_copies(path, entry, tmp_path / f"copies{n}")[what]
        root = tmp_path / f"data{n}"
        (root / "test").mkdir(parents=True)
        target = root / "test" / "damaged.h5"
        damaged = copy.read_bytes()
        target.write_bytes(damaged)
        rc, output = _run(f"""
            import os
            os.environ.update(BLISS_LITE_DATA_ROOT={str(root)!r}, BLISS_LITE_REDIS_URL={shared_redis!r})
            from bliss_lite.shell.runner import open_session
            session, ns = open_session("test", {str(CONFIG_DIR)!r})
            try:
                ns["SCAN_SAVING"].sample = "damaged"
                ns["m0"].move(0.5)
                try:
                    ns["ascan"](ns["m0"], 5, 6, 3, 0.01)
                    print("scanned")
                except OSError as exc:
                    print("refused:", type(exc).__name__, exc)
                print("m0 at", ns["m0"].position)
                ns["SCAN_SAVING"].sample = "fresh"  # nothing else stopped: a new file takes the scan
                print("fresh:", len(ns["ascan"](ns["m0"], 5, 6, 3, 0.01).get_data()["m0"]))
            finally:
                session.close()""", tmp_path)
        said = [line for line in output.splitlines() if line.startswith(("refused:", "scanned", "m0 at", "fresh:"))]
        assert rc == 0 and len(said) == 3 and said[1:] == ["m0 at 0.5", "fresh: 4"], output
        refused = said[0]
        assert refused.startswith(f"refused: DamagedFile {target}: damaged HDF5 "), output
        assert "this scan was not started" in refused and "SCAN_SAVING.sample" in refused, output
        assert target.read_bytes() == damaged  # nothing written into it
