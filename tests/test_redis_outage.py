"""Redis killed in the middle of a scan, slow readers, dead servers: the scan keeps every point
in its file, Redis gets the record back whole (or says precisely what it lacks), readers
never hang and a slow reader cannot grow the server past its memory budget."""
import os
import signal
import socket
import threading

import gevent
import h5py
import numpy as np
import pytest

from bliss_lite.data import client as data_client
from bliss_lite.data.client import RedisLost, ScanClient, ScanReader
from bliss_lite.data.model import ChannelSpec, channel_key, state_key
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.redis_server import connect, ensure_server, stop_server
from bliss_lite.data.writer import read_entry
from bliss_lite.scans import redis_link

STATES = ["CREATED", "PREPARED", "STARTED", "STOPPED", "CLOSED"]


@pytest.fixture
def session(server_dir, data_root, monkeypatch, test_session):
    """The `test` session publishing to its run directory's own server (restarted by
    ensure_server when it dies), Redis looked for again every 0.2 s."""
    monkeypatch.setattr(redis_link.LiveLink, "RETRY_S", 0.2)
    test_session["SESSION"].scan_context.redis.forget()
    yield test_session, ensure_server(server_dir)
    test_session["SESSION"].scan_context.redis.forget()


def kill(url):
    """SIGKILL the server at url (as a crash would); returns its pid."""
    pid = connect(url).info()["process_id"]
    os.kill(pid, signal.SIGKILL)
    return pid


def record_in_redis(url, key):
    try:
        return bool(connect(url).exists(key))
    except Exception:  # noqa: BLE001 - not back yet
        return False


def warnings(err):
    return err.count("WARNING: Redis lost"), err.count("Redis is back")


def assert_redis_equals_file(url, scan, names):
    reader = ScanReader(connect(url), scan.key)
    in_file = read_entry(scan.filename, scan.number)
    for name in names:
        np.testing.assert_array_equal(reader.read(name), in_file[name])
    return reader


def test_killed_mid_scan_the_record_comes_back_whole_while_the_scan_runs(session, monkeypatch, caplog):
    ns, url = session
    diode, real_samples, reads, seen = ns["diode1"], ns["diode1"].samples, [0], {}

    def samples(n, count_time):  # the 20th point kills Redis; the 60th waits until the record is back
        reads[0] += 1
        scan = ns["SCANS"][-1]
        if reads[0] == 20:
            seen["old pid"] = kill(url)
        if reads[0] == 60:
            with gevent.Timeout(8):
                while not record_in_redis(url, scan.key):
                    gevent.sleep(0.02)
            seen["state when back"] = scan.state
        return real_samples(n, count_time)

    monkeypatch.setattr(diode, "samples", samples)  # the sampling counter's hardware read, once a point
    scan = ns["loopscan"](100, 0.002, diode, ns["diode2"])
    assert (scan.end_reason, scan.npoints, seen["state when back"]) == ("SUCCESS", 100, "STARTED")
    assert connect(url).info()["process_id"] != seen["old pid"]  # a fresh server, which had nothing
    assert len(read_entry(scan.filename, scan.number)["diode1"]) == 100
    reader = assert_redis_equals_file(url, scan, ["diode1", "diode2", "elapsed_time", "epoch"])
    assert [f[b"state"].decode() for _, f in connect(url).xrange(state_key(scan.key))] == STATES
    assert reader.end_reason == "SUCCESS" and "incomplete" not in reader.record  # nothing is missing
    assert ScanClient(connect(url)).recent_scans(1)[0].key == scan.key  # in the history again
    assert warnings(caplog.text) == (1, 1)


def test_frames_missed_during_an_outage_are_named_in_the_record(session, caplog):
    ns, url = session
    count = {}

    def kill_at_frame_20():  # a thread: it runs even while the sweep keeps the greenlets busy
        while not ns["SCANS"] or ns["SCANS"][-1].data.count("pilatus") < 20:
            threading.Event().wait(0.002)
        count["at kill"] = ns["SCANS"][-1].data.count("pilatus")
        kill(url)

    ns["SCANS"].clear()
    killer = threading.Thread(target=kill_at_frame_20, daemon=True)
    killer.start()
    scan = ns["fscan"](ns["omega"], 0, 1, 120, 0.01, ns["pilatus"])
    killer.join(5)
    assert scan.end_reason == "SUCCESS" and count["at kill"] < 120  # killed while it ran
    with h5py.File(scan.filename, "r", locking=False) as h5:
        in_file = h5[f"{scan.entry}/instrument/pilatus/data"][()]
    assert in_file.shape[0] == 120  # the file has every frame
    reader = assert_redis_equals_file(url, scan, ["omega", "pilatus_frame_number", "elapsed_time"])
    gaps = reader.missing["pilatus"]
    assert gaps[0][0] == 0 and gaps[0][1] >= count["at kill"]  # the old server took the first ones along
    missing = {i for first, stop in gaps for i in range(first, stop)}
    held = {}
    for _, fields in connect(url).xrange(channel_key(scan.key, "pilatus")):
        if b"data" in fields:
            index, frame = reader.decode("pilatus", fields)
            held[index] = frame[0]
    assert sorted(held) == sorted(set(range(120)) - missing)  # every frame: in Redis or named missing
    for index, frame in held.items():
        np.testing.assert_array_equal(frame, in_file[index])
    followed = [index for name, index, _ in reader.follow(["pilatus"])]
    assert followed == sorted(held)  # a follower jumps over the gap, in order
    assert warnings(caplog.text) == (1, 1)


def start_private(root):
    """Start (or find) the private server of `root`, whatever BLISS_LITE_REDIS_URL says."""
    saved = os.environ.pop("BLISS_LITE_REDIS_URL", None)
    try:
        return ensure_server(root)
    finally:
        if saved is not None:
            os.environ["BLISS_LITE_REDIS_URL"] = saved


@pytest.fixture
def other_server():
    """A server this test starts and kills itself, given to scans by BLISS_LITE_REDIS_URL (so
    nothing restarts it behind the test's back)."""
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="bl_other_", dir="/tmp")  # short: a unix socket lives there
    yield root, start_private(root)
    stop_server(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("back_at_the_end", [True, False])
def test_redis_gone_until_the_end_is_tried_once_more_at_the_seal(session, other_server, monkeypatch, caplog,
                                                                   back_at_the_end):
    from bliss_lite.scans.io_pump import DataPump

    ns, _ = session
    root, url = other_server
    monkeypatch.setenv("BLISS_LITE_REDIS_URL", url)
    monkeypatch.setattr(redis_link.LiveLink, "RETRY_S", 3600)  # no retry while it runs: only the seal's
    diode, real_samples, reads, real_finish = ns["diode1"], ns["diode1"].samples, [0], DataPump.finish

    def samples(n, count_time):  # the 10th point kills Redis
        reads[0] += 1
        if reads[0] == 10:
            kill(url)
        return real_samples(n, count_time)

    def finish(pump):  # the scan's cleanup: Redis comes back just before the seal
        if back_at_the_end:
            start_private(root)
        return real_finish(pump)

    monkeypatch.setattr(diode, "samples", samples)
    monkeypatch.setattr(DataPump, "finish", finish)
    scan = ns["loopscan"](40, 0.01, diode)
    assert reads[0] == 40  # one read a point: Redis was killed at the 10th
    assert scan.end_reason == "SUCCESS" and len(read_entry(scan.filename, scan.number)["diode1"]) == 40
    if back_at_the_end:
        reader = assert_redis_equals_file(url, scan, ["diode1", "elapsed_time"])
        assert [f[b"state"].decode() for _, f in connect(url).xrange(state_key(scan.key))] == STATES
        assert reader.state == "CLOSED" and "incomplete" not in reader.record
        assert warnings(caplog.text) == (1, 1)
    else:
        assert warnings(caplog.text) == (1, 0)


def in_thread(call):
    """Run call in a thread; (finished, result or exception)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["result"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


def make_publisher(client, channels=("m0", "diode1")):
    return ScanPublisher(client, session="test", number=1, name="loopscan", scan_info={},
                         channels=[ChannelSpec(c) for c in channels])


@pytest.mark.parametrize("how", ["wait_next_scan", "follow", "record"])
def test_readers_of_a_server_that_dies_raise_an_error_naming_it(server_dir, how):
    url = ensure_server(server_dir)
    publisher = make_publisher(connect(url))
    publisher.create(then=("PREPARED", "STARTED"))
    publisher.publish({"m0": [0.0, 1.0], "diode1": [5.0, 6.0]})
    reader = ScanReader(connect(url), publisher.key)
    scans = ScanClient(connect(url, socket_timeout=None))  # even without a socket timeout
    scans.start_from_now()
    calls = {"wait_next_scan": lambda: scans.wait_next_scan(),
             "follow": lambda: list(reader.follow()),
             "record": lambda: (threading.Event().wait(0.3), reader.state)}
    worker, outcome = in_thread(calls[how])
    threading.Event().wait(0.2)  # let it block
    kill(url)
    worker.join(10)  # generous bound for a loaded machine: the point is that it returns
    assert not worker.is_alive(), f"{how} hangs on a dead server"
    assert isinstance(outcome["result"], RedisLost)
    assert f"Redis at {url} went away" in str(outcome["result"])


def test_a_follower_of_a_scan_the_restarted_server_lost_is_told(server_dir, monkeypatch):
    monkeypatch.setattr(data_client, "GONE_AFTER_MS", 300)
    url = ensure_server(server_dir)
    publisher = make_publisher(connect(url))
    publisher.create()
    publisher.publish({"m0": [0.0], "diode1": [1.0]})
    follower = ScanReader(connect(url), publisher.key).follow(block_ms=100)
    assert sorted(next(follower)[0] for _ in range(2)) == ["diode1", "m0"]
    kill(url)
    ensure_server(server_dir)  # a fresh, empty server at the same socket; nobody publishes again
    with pytest.raises(RedisLost, match=f"scan {publisher.key} is no longer in Redis at {url}"):
        next(follower)


def test_a_follower_gets_every_point_once_across_a_server_restart(server_dir):
    url = ensure_server(server_dir)
    publisher = make_publisher(connect(url))
    sent = {"m0": np.arange(50.0), "diode1": -np.arange(50.0)}
    publisher.create(then=("STARTED",))
    for start in range(0, 30, 10):
        publisher.publish({n: v[start:start + 10] for n, v in sent.items()})
    follower = ScanReader(connect(url), publisher.key).follow()
    got = {"m0": [], "diode1": []}
    while len(got["m0"]) < 30 or len(got["diode1"]) < 30:
        name, index, points = next(follower)
        assert index == len(got[name])
        got[name].extend(points.tolist())
    kill(url)
    publisher.resume(connect(ensure_server(server_dir)), lambda n, a, b: sent[n][a:b])  # points 0-29 again
    publisher.publish({n: v[30:] for n, v in sent.items()})
    publisher.seal()
    for name, index, points in follower:
        assert index == len(got[name])  # nothing twice, nothing skipped
        got[name].extend(points.tolist())
    assert got == {n: v.tolist() for n, v in sent.items()}
    assert [f[b"state"].decode() for _, f in connect(url).xrange(state_key(publisher.key))] == \
        ["CREATED", "STARTED", "STOPPED", "CLOSED"]


@pytest.mark.parametrize("restarted", [True, False])
def test_frames_go_on_from_the_current_frame_after_an_outage(server_dir, restarted):
    from bliss_lite.data import bslz4

    url = ensure_server(server_dir)
    spec = ChannelSpec("pilatus", "int32", (4, 5), encoding="bslz4")
    publisher = ScanPublisher(connect(url), session="test", number=1, name="fscan",
                              channels=[ChannelSpec("omega"), spec])
    frames = np.arange(20 * 20, dtype=np.int32).reshape(20, 4, 5)
    chunks = [bslz4.compress(f) for f in frames]
    omega = np.arange(20.0)
    publisher.create(then=("STARTED",))
    publisher.publish({"omega": omega[:10], "pilatus": chunks[:10]})
    if restarted:  # the server dies and comes back empty
        kill(url)
        ensure_server(server_dir)
    publisher.skip({"omega": omega[10:15], "pilatus": chunks[10:15]})  # while Redis was away
    publisher.resume(connect(url), lambda name, a, b: omega[a:b])
    publisher.publish({"omega": omega[15:], "pilatus": chunks[15:]})
    publisher.seal()
    reader = ScanReader(connect(url), publisher.key)
    expected_gap = [0, 15] if restarted else [10, 15]
    assert reader.missing == {"pilatus": [expected_gap]} and reader.record["incomplete"] == {"frames": {"pilatus": [expected_gap]}}
    np.testing.assert_array_equal(reader.read("omega"), omega)  # every raw point, sent again
    held = [i for i in range(20) if not expected_gap[0] <= i < expected_gap[1]]
    np.testing.assert_array_equal(reader.read("pilatus"), frames[held])
    assert [(n, i) for n, i, _ in reader.follow(["pilatus"])] == [("pilatus", i) for i in held]
    assert reader.state == "CLOSED"


def test_a_slow_reader_is_cut_off_before_redis_grows_past_its_budget(server_dir, data_root, monkeypatch,
                                                                       test_session):
    from bliss_lite.scans.scan import Scan

    budget = 64 * 2**20
    monkeypatch.setenv("BLISS_LITE_REDIS_MAXMEMORY", "64mb")
    monkeypatch.setattr(Scan, "frame_budget", 2**20)  # the frame stream holds about 1 MB
    test_session["SESSION"].scan_context.redis.forget()
    url = ensure_server(server_dir)
    ns, peak, done, slow = test_session, [0], threading.Event(), {}

    def slow_reader():  # asks for the whole frame stream again and again, and reads no reply
        client = connect(url)
        while not done.is_set():
            scan = ns["SCANS"][-1] if ns["SCANS"] else None
            if scan is not None and scan.key and client.xlen(channel_key(scan.key, "pilatus")) >= 50:
                break
            threading.Event().wait(0.005)
        key = channel_key(ns["SCANS"][-1].key, "pilatus").encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(url[len("unix://"):])
        command = b"*4\r\n$6\r\nXRANGE\r\n$%d\r\n%s\r\n$1\r\n-\r\n$1\r\n+\r\n" % (len(key), key)
        sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$4\r\nslow\r\n" + command * 400)
        slow["sock"] = sock

    def watch():  # samples the server's memory while all this goes on
        client = connect(url)
        while not done.wait(0.005):
            peak[0] = max(peak[0], client.info("memory")["used_memory"])

    ns["SCANS"].clear()
    threads = [threading.Thread(target=slow_reader, daemon=True), threading.Thread(target=watch, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        scan = ns["fscan"](ns["omega"], 0, 1, 300, 0.005, ns["pilatus"])
        threads[0].join(5)  # the slow reader has sent its requests (during the scan or just after)
    finally:
        done.set()
        threads[1].join(5)
        test_session["SESSION"].scan_context.redis.forget()
    with h5py.File(scan.filename, "r", locking=False) as h5:
        assert h5[f"{scan.entry}/instrument/pilatus/data"].shape[0] == 300  # every frame in the file
    assert scan.end_reason == "SUCCESS" and "sock" in slow
    watcher = connect(url)
    assert "slow" not in [c.get("name") for c in watcher.client_list()]  # cut off by its output buffer limit
    assert peak[0] < budget + 16 * 2**20  # 400 replies of ~1 MB never piled up in the server
    assert_redis_equals_file(url, scan, ["omega", "pilatus_frame_number"])  # and nothing was evicted
    slow["sock"].close()
