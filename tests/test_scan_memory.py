"""Nothing per scan grows with its points: written points leave memory and are read back
from the file (KEEP_POINTS made small here, so that a short scan shows it)."""
import h5py
import numpy as np
import pytest

from bliss_lite.scans import scan_data


@pytest.fixture
def small_memory(monkeypatch):
    monkeypatch.setattr(scan_data, "KEEP_POINTS", 40)
    monkeypatch.setattr(scan_data, "RELEASE_STEP", 10)
    monkeypatch.setattr(scan_data, "KEEP_FRAME_BYTES", 20_000)  # a few dozen 48 x 160 frames


def test_written_points_leave_memory_and_come_back_from_the_file(scan_session, small_memory):
    ns = scan_session
    held = []
    ns["SESSION"].scan_context.watchers.append(lambda scan: _Sampler(scan, held))
    scan = ns["loopscan"](400, 0, ns["diode1"], ns["diode2"])
    buffer = scan.data.buffers["diode1"]
    assert scan.data.count("diode1") == 400 and buffer.released > 0
    assert max(held) < 400 and len(buffer.points) <= 40 + 400 - buffer.released
    data = scan.get_data()
    with h5py.File(scan.filename, "r", locking=False) as h5:
        for name in ("diode1", "diode2", "elapsed_time"):
            np.testing.assert_array_equal(data[name], h5[f"{scan.entry}/measurement/{name}"][()])
    early = np.array([0, 3, 150, 399])
    np.testing.assert_array_equal(scan.points("diode1", early), data["diode1"][early])  # file and memory
    assert len(data["diode1"]) == 400


def test_an_unsaved_scan_keeps_every_point(scan_session, small_memory):
    scan = scan_session["loopscan"](200, 0, scan_session["diode1"], save=False)
    assert scan.data.buffers["diode1"].released == 0 and len(scan.get_data()["diode1"]) == 200


def test_frames_and_readbacks_come_back_from_the_file_for_the_reduction(scan_session, small_memory):
    """The reconstruction places patterns that arrive after their read-backs left memory."""
    ns = scan_session
    scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.25, 0.25, 4, [0.0, 0.1], 0.008, n_omega=30,
                       fast_axis="x", hooks={"integration": {"workers": 0, "npt": 100}, "reconstruction": {}})
    assert scan.end_reason == "SUCCESS"
    for name in ("omega", "x", "pilatus"):
        assert scan.data.buffers[name].released > 0, name
    data = scan.get_data()
    assert data["pilatus"].shape == (240, 48, 160) and len(data["omega"]) == 240
    result = scan.hook("reconstruction").result
    assert result is not None and len(result["z"]) == 2
    maps = result["maps"]
    assert all(np.isfinite(m).all() for m in maps.values()) and max(float(m.max()) for m in maps.values()) > 0


def test_buffers_keep_a_sliding_window_of_their_newest_points(small_memory):
    """Once full, a buffer's window slides: what it holds stays flat (not a sawtooth that
    empties and refills), and what was not sent yet never leaves."""
    from bliss_lite.data.model import ChannelSpec

    points = scan_data.ChannelBuffer(ChannelSpec("diode1"))
    frames = scan_data.ChannelBuffer(ChannelSpec("pilatus", dtype="uint32", shape=(4,), encoding="bslz4"))
    held_points, held_bytes = [], []
    for batch in range(100):
        points.points.extend(float(v) for v in range(batch * 7, batch * 7 + 7))
        frames.points.extend(bytes(1000) for _ in range(7))
        points.peek_new(), frames.peek_new()
        points.sent, frames.sent = len(points), len(frames)
        points.release_sent(), frames.release_sent()
        held_points.append(len(points.points))
        held_bytes.append(sum(len(chunk) for chunk in frames.points))
    assert points.base + len(points.points) == 700 and points.points[-1] == 699.0
    assert all(40 - 10 <= n <= 40 for n in held_points[10:])  # KEEP_POINTS, RELEASE_STEP
    assert all(20_000 - 1000 < b <= 20_000 for b in held_bytes[10:])  # KEEP_FRAME_BYTES, one frame
    assert frames.kept_bytes == held_bytes[-1]
    frames.points.extend(bytes(1000) for _ in range(30))  # not sent: kept whatever the budget
    frames.release_sent()
    assert len(frames) - frames.base == len(frames.points) and len(frames.points) >= 30


class _Sampler:
    """A scan watcher that records how many points each buffer holds while the scan runs."""

    def __init__(self, scan, held):
        self.scan, self.held = scan, held

    def __enter__(self):
        import gevent

        self.greenlet = gevent.spawn(self._sample)
        return self

    def _sample(self):
        import gevent

        while True:
            self.held.append(max(len(b.points) for b in self.scan.data.buffers.values()))
            gevent.sleep(0.001)

    def __exit__(self, *exc):
        self.greenlet.kill()
        return False


def _rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_appending_points_to_the_master_file_does_not_grow_the_process(tmp_path):
    """400,000 points of 7 channels, 100 at a time, as a long scan appends them: HDF5's chunk
    cache once kept ~64 KB for every chunk written (+22 MB here, without end)."""
    from bliss_lite.data.model import ChannelSpec
    from bliss_lite.data.writer import EntryWriter

    names = ["omega", "x", "z", "elapsed_time", "i0", "it", "frame_number"]
    writer = EntryWriter(tmp_path / "m.h5", 1, title="t", axes=[ChannelSpec(n, unit="mm") for n in names[:3]],
                         counters=[ChannelSpec(n, unit="1") for n in names[3:]])
    batch = {n: np.arange(100, dtype=float) for n in names}
    for _ in range(200):  # the first chunks, h5py's and numpy's caches
        writer.append(batch)
    before = _rss_mb()
    for _ in range(4000):
        writer.append(batch)
    grown = _rss_mb() - before
    writer.close()
    with h5py.File(tmp_path / "m.h5", "r") as h5:
        assert h5["1.1/measurement/it"].shape == (420_000,)
    assert grown < 5.0, f"the writer's process grew {grown:.1f} MB over 400,000 points"
