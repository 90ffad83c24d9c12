"""The Redis data model against a real server: publish, read back, follow from another process."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bliss_lite.data.client import ScanClient, ScanReader
from bliss_lite.data.model import HISTORY_KEY, ChannelSpec, channel_key, state_key
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.redis_server import connect, ensure_server


@pytest.fixture
def redis_client(server_dir):
    return connect(ensure_server(server_dir))


def make_scan(client, number, channels=("m0", "diode1")):
    return ScanPublisher(client, session="test", number=number, name="ascan",
                         scan_info={"title": f"ascan m0 0 1 9 0.1 #{number}", "npoints": 10},
                         channels=[ChannelSpec(c, unit="mm" if c == "m0" else "") for c in channels])


def test_publish_and_read_back(redis_client):
    scans = ScanClient(redis_client)
    scans.start_from_now()
    publisher = ScanPublisher(redis_client, session="test", number=7, name="amesh",
                              scan_info={"npoints": 6},
                              channels=[ChannelSpec("m0"), ChannelSpec("frame", "int32", (2, 3))])
    publisher.create()
    assert ScanReader(redis_client, publisher.key).state == "CREATED"
    publisher.set_state("PREPARED")
    publisher.set_state("STARTED")
    frames = np.arange(36, dtype=np.int32).reshape(6, 2, 3)
    publisher.publish({"m0": [0.0, 0.5], "frame": frames[:2]})
    publisher.publish({"m0": np.linspace(1.0, 2.5, 4), "frame": frames[2:]})
    publisher.seal("USER_ABORT")
    scan = scans.wait_next_scan(timeout_ms=1000)
    assert (scan.key, scan.name, scan.number, scan.session) == (publisher.key, "amesh", 7, "test")
    assert scan.state == "CLOSED" and scan.end_reason == "USER_ABORT"
    states = [f[b"state"].decode() for _, f in redis_client.xrange(state_key(scan.key))]
    assert states == ["CREATED", "PREPARED", "STARTED", "STOPPED", "CLOSED"]
    np.testing.assert_array_equal(scan.read("m0"), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert scan.read("frame").dtype == np.int32
    np.testing.assert_array_equal(scan.read("frame"), frames)
    assert scan.channels["frame"].shape == (2, 3)
    entries = redis_client.xrange(channel_key(scan.key, "m0"))
    assert [int(f[b"index"]) for _, f in entries[:-1]] == [0, 2]  # batches carry their first index
    assert entries[-1][1] == {b"sealed": b"1", b"total": b"6"}


def test_wait_next_scan_misses_none(redis_client):
    scans = ScanClient(redis_client)
    scans.start_from_now()
    made = [make_scan(redis_client, n) for n in (1, 2, 3)]
    for publisher in made:  # all created before the reader asks
        publisher.create()
    seen = [scans.wait_next_scan(timeout_ms=1000).key for _ in made]
    assert seen == [p.key for p in made]
    assert scans.wait_next_scan(timeout_ms=100) is None
    assert redis_client.xlen(HISTORY_KEY) == 3


def test_follow_returns_every_batch_once_in_order(redis_client):
    publisher = make_scan(redis_client, 1)
    publisher.create()
    reader = ScanReader(redis_client, publisher.key)
    rng = np.random.default_rng(0)
    values, start = np.arange(100.0), 0
    while start < 100:
        size = int(rng.integers(1, 9))
        publisher.publish({"m0": values[start:start + size], "diode1": -values[start:start + size]})
        start += size
    publisher.seal()
    got = {"m0": [], "diode1": []}
    for name, index, points in reader.follow():
        assert index == len(got[name])  # in order, no gap, no repeat
        got[name].extend(points.tolist())
    assert got["m0"] == values.tolist() and got["diode1"] == (-values).tolist()


def test_follower_process_prints_every_point_exactly_once(redis_client, server_dir):
    env = dict(os.environ, BLISS_LITE_RUN_DIR=str(server_dir))
    follower = subprocess.Popen([sys.executable, "-m", "bliss_lite", "follow", "--count", "2", "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert follower.stdout.readline().startswith("Following scans on unix://")
        for number in (1, 2):
            publisher = make_scan(redis_client, number)
            publisher.create()
            publisher.set_state("STARTED")
            for start in range(0, 30, 7):
                stop = min(start + 7, 30)
                publisher.publish({"m0": np.arange(start, stop) * 0.1 * number,
                                   "diode1": np.arange(start, stop) + 1000 * number})
            publisher.seal()
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    blocks = out.split("Scan ")[1:]
    assert len(blocks) == 2
    for number, block in zip((1, 2), blocks):
        assert block.startswith(f"{number} ascan (session test)")
        rows = [line.split() for line in block.splitlines() if re.match(r"\s+\d+\s", line)]
        assert [int(r[0]) for r in rows] == list(range(30))
        assert [float(r[1]) for r in rows] == pytest.approx([i * 0.1 * number for i in range(30)])
        assert [float(r[2]) for r in rows] == [i + 1000 * number for i in range(30)]
        assert f"End of scan {number}: SUCCESS, 30 points" in block


def test_data_client_needs_neither_gevent_nor_the_shell():
    code = ("import sys, bliss_lite.data.client, bliss_lite.data.follow, bliss_lite.data.redis_server; "
            "bad = [m for m in sys.modules if m.startswith(('gevent', 'bliss_lite.shell', 'ptpython'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_small_entries_fill_the_entry_window_not_the_byte_budget(redis_client, monkeypatch):
    """Tiny frames and single points would take hours to reach a byte budget: the window of
    entries (STREAM_WINDOW) caps them, so the server stops growing early in a long scan."""
    from bliss_lite.data import model

    monkeypatch.setattr(model, "STREAM_WINDOW", 300)
    assert model.stream_maxlen(2**30, 100) == 300 and model.stream_maxlen(1000, 100) == 10
    publisher = ScanPublisher(redis_client, session="test", number=1, name="tiny", scan_info={"npoints": 3000},
                              channels=[ChannelSpec("m0"), ChannelSpec("pilatus", dtype="uint32", shape=(2,),
                                                                        encoding="bslz4")])
    publisher.create(then=("PREPARED", "STARTED"))
    for start in range(0, 3000, 5):  # one point an entry; frames of 40 bytes against a 256 MB budget
        publisher.publish({"m0": np.arange(start, start + 1, dtype=float), "pilatus": [bytes(40)] * 5})
    publisher.seal("SUCCESS")
    assert 300 <= redis_client.xlen(channel_key(publisher.key, "pilatus")) < 300 + 200  # whole nodes trimmed
    assert 300 <= redis_client.xlen(channel_key(publisher.key, "m0")) < 600
    assert publisher.trimmed()["pilatus"] == 3000 - 300


def test_point_streams_hold_a_window_of_points(redis_client, monkeypatch):
    """Scalar channels keep their newest POINT_WINDOW points, whatever the batch size, so that
    their streams stop growing long before a byte budget of float64 points is reached."""
    from bliss_lite.data import publisher as publisher_module

    monkeypatch.setattr(publisher_module, "POINT_WINDOW", 1000)
    publisher = ScanPublisher(redis_client, session="test", number=1, name="window", scan_info={"npoints": 20000},
                              channels=[ChannelSpec("m0")])
    publisher.create(then=("PREPARED", "STARTED"))
    values = np.arange(20000, dtype=float)
    for start in range(0, 20000, 50):
        publisher.publish({"m0": values[start:start + 50]})
    publisher.seal("SUCCESS")
    assert 20 <= redis_client.xlen(channel_key(publisher.key, "m0")) < 20 + 110  # 1000 points, whole nodes trimmed
    assert publisher.trimmed()["m0"] == 20000 - 1000
    tail = ScanReader(redis_client, publisher.key).read("m0")
    np.testing.assert_array_equal(tail, values[20000 - len(tail):])


def test_scalar_streams_are_capped_and_a_late_follower_prints_what_is_left(redis_client):
    """A long scan's point streams stay within their budget (the file has every point); a
    reader that comes late reads the tail, and follow prints the rows every channel still has."""
    import io

    from bliss_lite.data.follow import print_scan

    publisher = ScanPublisher(redis_client, session="test", number=1, name="loopscan", scan_info={"npoints": 3000},
                              channels=[ChannelSpec("m0"), ChannelSpec("diode1")], point_budget=800)
    publisher.create(then=("PREPARED", "STARTED"))
    values = np.arange(3000, dtype=float)
    for start in range(0, 3000, 10):  # batches of 10 points: 80 bytes an entry, ~10 entries kept
        publisher.publish({"m0": values[start:start + 10], "diode1": -values[start:start + 10]})
    publisher.seal("SUCCESS")
    assert redis_client.xlen(channel_key(publisher.key, "m0")) < 60  # approximate trimming, not 301 entries
    trimmed = publisher.trimmed()
    assert set(trimmed) == {"m0", "diode1"} and trimmed["m0"] == 3000 - 100
    reader = ScanReader(redis_client, publisher.key)
    tail = reader.read("m0")
    np.testing.assert_array_equal(tail, values[3000 - len(tail):])  # the newest points, in order
    out = io.StringIO()
    printed = print_scan(ScanClient(redis_client).recent_scans(1)[0], out, timeout_ms=1000)
    rows = [line.split() for line in out.getvalue().splitlines()[2:-1]]
    assert printed == len(rows) == len(tail) and int(rows[0][0]) == 3000 - len(tail)
    assert all(float(m0) == int(i) and float(d) == -int(i) for i, m0, d in rows)
