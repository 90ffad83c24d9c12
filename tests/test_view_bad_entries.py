"""The live view's reader against bad stream entries: one entry it cannot decode stops nothing.

A real scan in a real Redis (state, points, frames, integrated patterns, live maps) gets
entries no writer of bliss_lite makes: garbage bytes, a wrong shape or size, missing fields,
not JSON, an index far beyond the scan. The view leaves each out, counts it (naming the stream
and the entry), reads past it and keeps following the scan: the good entries before and after
are all there, and the server never marks the scan bad.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import redis
from view_helpers import ViewServer, read_events

from bliss_lite.data import bslz4
from bliss_lite.data.model import HISTORY_KEY, ChannelSpec, channel_key, scan_key, state_key
from bliss_lite.data.model import reconstruction_live_key as live_key
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.processing.integration_queue import info_key, publish_patterns, results_key
from bliss_lite.view.live_scan import LiveScan

XRDCT = {"n_x": 2, "n_omega": 2, "x_start": -1.0, "x_stop": 1.0, "omega_range": 180.0, "z_positions": [0.0, 0.5]}
FRAMES = np.arange(8 * 2 * 3, dtype=np.int32).reshape(8, 2, 3)
NPT = 3
PATTERNS = np.arange(1, 8 * NPT + 1, dtype=np.float32).reshape(8, NPT)
MAP = np.arange(4, dtype=np.float32).reshape(2, 2)
F8 = np.float64(1.5).tobytes()

# what a hostile or broken writer puts in each stream the view reads (the index is that of the next point)
BAD = {
    "state": [{"state": b"\xff\xfe"}, {"nostate": "x"}, {"state": "EXPLODED"}, {"state": "CLOSED", "end_reason": "?"}],
    "points": [{"index": 2, "count": 1, "data": b"\x00\x01\x02"}, {"index": 2, "count": 3, "data": F8},
               {"index": "two", "count": 1, "data": F8}, {"data": F8}, {"index": 10**15, "count": 1, "data": F8}],
    "frames": [{"index": 2, "data": b"\x00garbage"}, {"index": 2, "data": bslz4.compress(np.zeros((3, 3), np.int32))},
               {"data": bslz4.compress(FRAMES[2])}, {"index": "x", "data": bslz4.compress(FRAMES[2])}],
    "patterns": [{"index": 2, "data": b"\x00" * 5}, {"index": "x", "data": PATTERNS[2].tobytes()}, {"worker": "w"},
                 {"index": 10**12, "data": PATTERNS[2].tobytes()}],
    "maps": [{"z_index": 0, "phase": "B", "shape": "{not json", "data": MAP.tobytes(), "complete": 1},
             {"z_index": 0, "phase": "B", "shape": "[4, 4]", "data": MAP.tobytes(), "complete": 1},
             {"z_index": 7, "phase": "B", "shape": "[2, 2]", "data": MAP.tobytes(), "complete": 1},
             {"z_index": 0, "phase": b"\xff", "shape": "[2, 2]", "data": MAP.tobytes(), "complete": 1},
             {"z_index": 0, "phase": "B", "shape": "[2, 2]", "complete": 1}],
}


def stream_of(key):
    return {"state": state_key(key), "points": channel_key(key, "diode"), "frames": channel_key(key, "pilatus"),
            "patterns": results_key(key), "maps": live_key(key)}


def new_scan(client, number):
    publisher = ScanPublisher(client, session="bad-entries", number=number, name="xrdct",
                              scan_info={"title": "xrdct with bad entries", "npoints": 8, "xrdct": XRDCT},
                              channels=[ChannelSpec("diode"), ChannelSpec("pilatus", "int32", (2, 3), "counts", "bslz4")])
    publisher.create(then=("PREPARED", "STARTED"))
    client.set(info_key(publisher.key), json.dumps({"radial": [1.0, 2.0, 3.0], "unit": "q_nm^-1", "npt": NPT}))
    return publisher


def publish_good(client, publisher, indices, phase):
    publisher.publish({"diode": [float(i) for i in indices], "pilatus": [bslz4.compress(FRAMES[i]) for i in indices]})
    pipe = client.pipeline()
    publish_patterns(pipe, publisher.key, indices, PATTERNS[indices], "w")
    pipe.xadd(live_key(publisher.key), {"z_index": 0, "phase": phase, "shape": "[2, 2]",
                                        "data": (MAP + indices[-1]).tobytes(), "complete": 0})
    pipe.execute()


def settle(live):
    for _ in range(100):  # a hang guard: each poll reads what is new
        if not live.poll():
            return live
    raise AssertionError(f"{live.key}: the view never stopped finding changes")


def delete_scan(client, publisher):
    client.delete(publisher.key, info_key(publisher.key), *stream_of(publisher.key).values())


def assert_followed_through(live, streams):
    np.testing.assert_array_equal(live.points["diode"].values, np.arange(8.0))
    assert live.state == "CLOSED" and live.end_reason == "SUCCESS"
    assert live.frame[0] == 7 and np.array_equal(live.frame[1], FRAMES[7])
    assert live.pattern_count == 8
    np.testing.assert_array_equal(live.pattern_sum, PATTERNS.astype(float).sum(axis=0))
    assert sorted(live.map_state) == [(0, "A"), (0, "C")]
    np.testing.assert_array_equal(live.map_image(0, "C"), MAP + 7)
    described = live.describe()
    assert set(described["bad_entry_reasons"]) <= set(streams.values())
    for stream, reason in described["bad_entry_reasons"].items():
        assert reason.startswith(f"{stream} entry ") and "\n" not in reason


def test_the_view_reads_past_every_bad_entry_of_every_stream_and_counts_it(shared_redis):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    publisher = new_scan(client, 1)
    streams = stream_of(publisher.key)
    try:
        publish_good(client, publisher, [0, 1], "A")
        following = settle(LiveScan(client, publisher.key))
        assert following.npoints == 2 and following.bad_entries == 0
        for kind, entries in BAD.items():
            for fields in entries:  # one a poll: the newest frame is all a view reads of frames
                client.xadd(streams[kind], fields)
                following.poll()
        assert following.bad_entries == sum(len(entries) for entries in BAD.values())
        assert set(following.describe()["bad_entry_reasons"]) == set(streams.values())
        assert following.state == "STARTED"  # no bad state taken for the scan's
        publish_good(client, publisher, [2, 3, 4, 5, 6, 7], "C")
        publisher.seal("SUCCESS")
        assert_followed_through(settle(following), streams)
        late = settle(LiveScan(client, publisher.key))  # a view that comes after: bad entries in the middle
        assert_followed_through(late, streams)
        # of the frame stream a view reads only the newest entries: for this one, good ones
        assert late.bad_entries == sum(len(entries) for kind, entries in BAD.items() if kind != "frames")
    finally:
        delete_scan(client, publisher)


def test_an_unreadable_pattern_description_shows_no_patterns_until_it_is_readable(shared_redis):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    publisher = new_scan(client, 2)
    try:
        publish_good(client, publisher, [0, 1], "A")
        for raw in (b"{not json", json.dumps({"radial": [1.0], "npt": NPT}), json.dumps({"radial": [1, 2, 3], "npt": 1e9})):
            client.set(info_key(publisher.key), raw)
            live = settle(LiveScan(client, publisher.key))
            assert live.pattern_count == 0 and live.bad_entries == 1
            assert live.describe()["bad_entry_reasons"][info_key(publisher.key)].startswith(info_key(publisher.key))
            np.testing.assert_array_equal(live.points["diode"].values, [0.0, 1.0])  # the rest goes on
            client.set(info_key(publisher.key), json.dumps({"radial": [1.0, 2.0, 3.0], "unit": "q", "npt": NPT}))
            assert settle(live).pattern_count == 2 and live.bad_entries == 1
    finally:
        delete_scan(client, publisher)


def test_a_running_xrdct_keeps_updating_in_the_view_after_bad_entries(shared_redis):
    """The server's watcher follows the scan (a page listens) through bad entries of every
    stream: the map published after them reaches the page, the scan is never marked bad."""
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    server = ViewServer("--redis", shared_redis)
    publisher = new_scan(client, 3)
    streams = stream_of(publisher.key)
    messages = []
    done = lambda m: m["key"] == publisher.key and "C" in m["phases"] and m["state"] == "CLOSED"  # noqa: E731
    reader = threading.Thread(target=read_events, args=(server.base, done, messages), daemon=True)
    try:
        publish_good(client, publisher, [0, 1], "A")
        reader.start()
        for _ in range(200):  # a hang guard: the page is listening once the watcher counts it
            if server.get("/api/health")["viewers"] == 1 and server.get(f"/api/scans/{publisher.key}")["points"] == 2:
                break
            time.sleep(0.05)
        for kind, entries in BAD.items():
            for fields in entries:
                client.xadd(streams[kind], fields)
        publish_good(client, publisher, [2, 3, 4, 5, 6, 7], "C")
        publisher.seal("SUCCESS")
        reader.join(60)
        assert messages and done(messages[-1]), messages[-1:] or server.output()[-2000:]
        last = messages[-1]
        assert last["points"] == 8 and last["patterns"] == 8 and last["phases"] == ["A", "C"]
        assert last["bad_entries"] >= sum(len(e) for k, e in BAD.items() if k != "frames")
        assert set(last["bad_entry_reasons"]) >= set(streams.values()) - {streams["frames"]}
        assert publisher.key not in server.get("/api/health")["poisoned"]
        snap = server.get(f"/api/scans/{publisher.key}")
        assert snap["columns"]["diode"] == list(np.arange(8.0)) and snap["frame_index"] == 7
    finally:
        server.close()
        reader.join(10)
        delete_scan(client, publisher)


def test_bad_records_as_the_newest_scans_stall_no_page_before_a_newer_scan_comes(shared_redis):
    """The reported case: the newest history entries are a malformed record, a key of another
    type and a scan whose streams hold only garbage, and no scan comes after them. Every page
    answers at once: the list, the readable scans (bad entries counted), the health."""
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    good = new_scan(client, 4)
    garbage = new_scan(client, 5)
    bad_record, other_type = scan_key("bad-entries-not-json"), scan_key("bad-entries-a-hash")
    server = ViewServer("--redis", shared_redis)
    try:
        publish_good(client, good, [0, 1], "A")
        for kind, entries in BAD.items():
            for fields in entries:
                client.xadd(stream_of(garbage.key)[kind], fields)
        client.set(bad_record, b"{\xff not json")
        client.hset(other_type, "a", "b")
        for key in (bad_record, other_type):
            client.xadd(HISTORY_KEY, {"key": key})
        listed = server.get("/api/scans")
        assert listed["current"] == garbage.key
        assert {garbage.key, good.key} <= {s["key"] for s in listed["scans"]}
        snap = server.get(f"/api/scans/{garbage.key}")
        assert snap["state"] == "STARTED" and snap["points"] == 0 and snap["phases"] == []
        assert snap["bad_entries"] >= sum(len(e) for k, e in BAD.items() if k != "frames")
        assert server.get(f"/api/scans/{good.key}")["columns"]["diode"] == [0.0, 1.0]
        poisoned = server.get("/api/health")["poisoned"]
        assert {bad_record, other_type} <= set(poisoned) and garbage.key not in poisoned
        for key in (bad_record, other_type):
            with pytest.raises(urllib.error.HTTPError) as refused:
                server.get(f"/api/scans/{key}")
            assert refused.value.code == 400 and key in refused.value.read().decode()
    finally:
        server.close()
        for publisher in (good, garbage):
            publisher.seal("SUCCESS")
            delete_scan(client, publisher)
        client.delete(bad_record, other_type)
