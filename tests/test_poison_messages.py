"""Poison messages: one entry or record a reader cannot decode stops nothing else.

Malformed frame-stream entries (generated: garbage bytes, cut chunks, missing fields, wrong
indices), jobs no worker can do, queue entries that are no job, scan records that are not JSON
or of another Redis type: each is recorded (a dead letter, or the view's `poisoned`) with its
reason, acknowledged, and every good message around it is still handled. A scan whose frames
no worker could decode integrates them from its file and says how many.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from view_helpers import ViewServer

from bliss_lite.data import bslz4, dead_letters
from bliss_lite.data.model import HISTORY_KEY, ChannelSpec, plotselect_key, scan_key
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.redis_server import connect
from bliss_lite.processing import integration_queue as queue
from bliss_lite.processing import job_server
from bliss_lite.processing.integration_settings import IntegrationSettings
from bliss_lite.processing.integrator import LeanIntegrator
from bliss_lite.processing.worker import Worker

PONI = Path(__file__).resolve().parents[1] / "config" / "xrdct" / "pilatus2m.poni"
ROI = (816, 700, 16, 24)
SETTINGS = IntegrationSettings.from_poni(PONI, roi=ROI, npt=40)
INTEGRATOR = LeanIntegrator(SETTINGS)
FRAMES = np.random.default_rng(3).poisson(40, (6, 16, 24)).astype(np.int32)
GOOD = bslz4.compress(FRAMES[0])


@pytest.fixture
def client(shared_redis):
    from bliss_lite.processing import worker_pool

    worker_pool.stop_all()  # no worker of another test takes these frames
    client = connect(shared_redis, socket_timeout=5)
    yield client
    client.delete(queue.ACTIVE_KEY)


def fake_scan(client, number=1):
    spec = ChannelSpec("pilatus", "int32", FRAMES.shape[1:], "counts", "bslz4")
    publisher = ScanPublisher(client, session="test", number=number, name="xrdct", channels=[spec])
    publisher.create(then=("PREPARED", "STARTED"))
    queue.register(client, publisher.key, "pilatus", SETTINGS, len(FRAMES))
    return publisher


def work(worker, client, key, until):
    for _ in range(200):  # a hang guard: each round blocks 20 ms at most
        worker.round(block_ms=20)
        if until():
            return
    raise AssertionError(f"the worker did not finish {key}")


BAD_ENTRY = st.one_of(
    st.builds(lambda data: {"index": 2, "data": data}, st.binary(max_size=64)),  # garbage
    st.builds(lambda cut: {"index": 2, "data": GOOD[:cut]}, st.integers(0, len(GOOD) - 1)),  # cut short
    st.builds(lambda at, byte: {"index": 2, "data": GOOD[:at] + bytes([byte]) + GOOD[at + 1:]},  # a byte changed
              st.integers(0, 15), st.integers(0, 255)),
    st.just({"data": GOOD}),  # no index
    st.builds(lambda text: {"index": text, "data": GOOD}, st.text(max_size=5).filter(lambda t: not t.isdigit())),
    st.just({"index": 2, "data": bslz4.compress(np.zeros((3, 3), np.int32))}),  # a frame of another shape
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=BAD_ENTRY)
def test_a_worker_records_an_undecodable_entry_acks_it_and_goes_on(client, bad):
    publisher = fake_scan(client)
    stream = queue.frames_key(publisher.key, "pilatus")
    try:
        for index in (0, 1):
            client.xadd(stream, {"index": index, "data": bslz4.compress(FRAMES[index])})
        bad_id = client.xadd(stream, bad)
        for index in (3, 4, 5):
            client.xadd(stream, {"index": index, "data": bslz4.compress(FRAMES[index])})
        said = []
        worker = Worker(client, name="w-poison", log=said.append)
        reader = queue.PatternReader(client, publisher.key, SETTINGS.npt)
        got = {}

        def done():
            for index, pattern in zip(*reader.poll()):
                got[int(index)] = pattern
            return client.xpending(stream, queue.GROUP)["pending"] == 0 and len(got) >= 5

        work(worker, client, publisher.key, done)
        expected = INTEGRATOR.integrate_many(FRAMES)
        decodable = 2 in got  # a changed byte may still decode (no checksum in the format): then it is a frame
        assert set(got) == ({0, 1, 3, 4, 5} | ({2} if decodable else set()))
        for index in (0, 1, 3, 4, 5):
            np.testing.assert_allclose(got[index], expected[index], rtol=1e-6)
        letters = dead_letters.read(client, publisher.key)
        if not decodable:
            assert [(letter["id"], letter["source"], letter["reader"]) for letter in letters] == [
                (bad_id.decode(), stream, "w-poison")]
            assert letters[0]["reason"] and "\n" not in letters[0]["reason"]
            assert worker.poisoned == 1 and any("dead letters" in line for line in said)
    finally:
        queue.unregister(client, publisher.key)
        client.delete(stream, f"{publisher.key}:dead_letters", queue.results_key(publisher.key))


def test_a_job_no_worker_can_do_is_a_dead_letter_and_other_scans_go_on(client):
    bad_settings = fake_scan(client, 1)
    good = fake_scan(client, 2)
    client.hset(queue.ACTIVE_KEY, "bliss_lite:scan:garbage", "{not json")  # skipped
    client.hset(queue.ACTIVE_KEY, "bliss_lite:scan:list", "[1, 2]")  # skipped
    job = json.loads(client.hget(queue.ACTIVE_KEY, bad_settings.key))
    job["settings"]["npt"] = "many"
    client.hset(queue.ACTIVE_KEY, bad_settings.key, json.dumps(job))
    for publisher in (bad_settings, good):
        publisher.publish({"pilatus": [bslz4.compress(f) for f in FRAMES]})
    worker = Worker(client, name="w-jobs", log=lambda text: None)
    reader = queue.PatternReader(client, good.key, SETTINGS.npt)
    got = set()

    def good_done():
        got.update(int(i) for i in reader.poll()[0])
        return len(got) == len(FRAMES)

    try:
        work(worker, client, good.key, good_done)
        letters = dead_letters.read(client, bad_settings.key)
        assert len(letters) == 1 and letters[0]["source"] == queue.ACTIVE_KEY and "npt" in letters[0]["reason"]
        worker.round(block_ms=20)  # asked again, the same job is not tried again
        assert len(dead_letters.read(client, bad_settings.key)) == 1
    finally:
        for publisher in (bad_settings, good):
            queue.unregister(client, publisher.key)
        client.delete("bliss_lite:scan:garbage", "bliss_lite:scan:list")
        client.hdel(queue.ACTIVE_KEY, "bliss_lite:scan:garbage", "bliss_lite:scan:list")


def test_the_scan_integrates_undecodable_frames_from_its_file_and_counts_them(scan_session, shared_redis):
    """A worker in this process that gets frames 3 and 7 garbled (as a bad link or a hostile
    writer would deliver them)."""
    ns = scan_session
    client = connect(shared_redis, socket_timeout=5)
    stop = threading.Event()

    class Garbled(Worker):
        def _process(self, key, job, entries):
            entries = [(entry_id, {**fields, b"data": b"\x00garbage"} if fields.get(b"index") in (b"3", b"7")
                        else fields) for entry_id, fields in entries]
            return super()._process(key, job, entries)

    def poisoning_worker():
        worker = Garbled(client, name="w-scan", log=lambda text: None)
        while not stop.is_set():
            worker.round(block_ms=20)

    thread = threading.Thread(target=poisoning_worker, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        scan = ns["xrdct"](ns["omega"], ns["x"], ns["z"], -0.5, 0.5, 4, [0.0], 0.02, n_omega=3, fast_axis="x",
                           hooks={"integration": {"npt": 60, "workers": 0, "timeout": 30}})
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(10)
    hook = scan.hook("integration")
    assert len(hook.received) == hook.received.count_below(12) == 12
    assert hook.dead_letters == 2 and hook.local_frames == 2
    assert took < 25  # it did not wait out the 30 s timeout for frames no worker can decode
    from bliss_lite.data.entry_reader import read_frames

    expected = hook.integrator().integrate_many(read_frames(scan.filename, scan.entry, "pilatus", range(12)))
    import h5py

    with h5py.File(scan.filename, "r") as h5:
        np.testing.assert_allclose(h5[f"{scan.entry}/measurement/integrated"][()], expected, rtol=1e-6)


def test_the_job_server_keeps_a_queue_entry_that_is_no_job_as_a_dead_letter(client):
    stop = threading.Event()
    thread = threading.Thread(target=job_server.serve, args=(client, stop), daemon=True,
                              kwargs=dict(block_ms=20, log=lambda m: None))
    thread.start()
    try:
        before = len(dead_letters.read(client))
        client.xadd(job_server.QUEUE_KEY, {"job": "{not json"})
        client.xadd(job_server.QUEUE_KEY, {"other": "x"})
        good = job_server.submit_remote(client, "dummy", {"npt": 3})
        assert job_server.wait_remote(client, good, timeout=30).status == "success"
        letters = dead_letters.read(client)[before:]
        assert [letter["source"] for letter in letters] == [job_server.QUEUE_KEY] * 2
        assert "not JSON" in letters[0]["reason"] and "no 'job' field" in letters[1]["reason"]
    finally:
        stop.set()
        thread.join(10)


def test_a_malformed_scan_record_stalls_no_page_of_the_view(shared_redis):
    client = redis.Redis.from_url(shared_redis, socket_timeout=5)
    server = ViewServer("--redis", shared_redis)
    try:
        good = ScanPublisher(client, session="poison", number=1, name="ascan", channels=[ChannelSpec("diode")],
                             scan_info={"title": "good one", "counters": ["diode"]})
        good.create(then=("PREPARED", "STARTED"))
        good.publish({"diode": np.arange(4.0)})
        bad = {"json": scan_key("not-json"), "type": scan_key("a-hash"), "fields": scan_key("no-fields")}
        client.set(bad["json"], b"{\xff not json")
        client.hset(bad["type"], "a", "b")
        client.set(bad["fields"], json.dumps([1, 2, 3]))
        for key in bad.values():
            client.xadd(HISTORY_KEY, {"key": key})
        client.xadd(HISTORY_KEY, {"nokey": "x"})
        client.set(plotselect_key("poison"), b"\x00\x01")
        newest = ScanPublisher(client, session="poison", number=2, name="ascan", channels=[ChannelSpec("diode")],
                               scan_info={"title": "after the bad ones", "counters": ["diode"]})
        newest.create(then=("PREPARED", "STARTED"))
        newest.publish({"diode": np.arange(3.0)})
        listed = server.get("/api/scans")
        titles = [s["title"] for s in listed["scans"]]
        assert "after the bad ones" in titles and "good one" in titles
        assert listed["current"] == newest.key
        assert server.get(f"/api/scans/{newest.key}")["columns"]["diode"] == [0.0, 1.0, 2.0]
        for key in bad.values():
            with pytest.raises(Exception) as error:
                server.get(f"/api/scans/{key}")
            assert getattr(error.value, "code", None) in (400, 404), error.value
    finally:
        server.close()
        for key in (scan_key("not-json"), scan_key("a-hash"), scan_key("no-fields"), plotselect_key("poison")):
            client.delete(key)
