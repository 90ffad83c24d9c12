"""Reading scans from Redis, live or finished: for analysis programs and `bliss-lite follow`.

Imports neither gevent nor the shell: redis-py and numpy only. Streams are read by entry id,
so a follower gets every batch exactly once and in order, and `wait_next_scan` continues
from the last history entry it saw, so no scan is missed between two calls.

Never hangs on a server that dies: reads block at most BLOCK_MS at a time, and a lost
server (or a scan it no longer holds) raises RedisLost naming the server, password masked.
Replies are paged (PAGE_BYTES), so no reply passes the private server's output buffer limit.
"""
from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import redis

from bliss_lite.data import bslz4
from bliss_lite.data.model import HISTORY_KEY, ChannelSpec, channel_key, decode_points, state_key
from bliss_lite.data.redis_server import RedisUnavailable
from bliss_lite.data.redis_url import server_name

BLOCK_MS = 1000  # longest single blocking read: under any client's socket timeout
PAGE_BYTES = 4 * 2**20  # most bytes of frames asked for in one reply
GONE_AFTER_MS = 5000  # a followed scan whose record stays gone that long (server restarted) ends the follow


class RedisLost(RedisUnavailable, redis.ConnectionError):
    """Redis went away (or lost the scan) while a reader used it; the message names the server."""


def decode_entry(spec: ChannelSpec, fields):
    """(index of the first point, points) of one stream entry of a channel described by `spec`."""
    if spec.encoding == "bslz4":  # one compressed frame per entry
        frame = bslz4.decompress(fields[b"data"], spec.shape, spec.numpy_dtype.newbyteorder("="))
        return int(fields[b"index"]), frame[np.newaxis]
    return int(fields[b"index"]), decode_points(spec, fields[b"data"], int(fields[b"count"]))


@contextmanager
def _named(client, what):
    """Connection errors become RedisLost, saying which server and what was being read."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc, RedisLost):
            raise
        name, text = server_name(client), str(exc)
        happened = "refused the credentials" if isinstance(exc, redis.AuthenticationError) else "went away"
        raise RedisLost(f"Redis at {name} {happened} while {what}: "
                        f"{text.replace(f'Redis at {name}: ', '')}") from exc


class ScanReader:
    """One scan in Redis: its record, state and channels."""

    def __init__(self, client, key):
        self.client = client
        self.key = key
        with _named(client, f"reading scan {key}"):
            raw = client.get(key)
        if raw is None:
            raise KeyError(f"no scan at Redis key {key} on {server_name(client)}")
        self.record = json.loads(raw)
        self.channels = {n: ChannelSpec.from_json(s) for n, s in self.record["scan_info"]["channels"].items()}

    name = property(lambda self: self.record["name"])
    number = property(lambda self: self.record["number"])
    session = property(lambda self: self.record["session"])
    scan_info = property(lambda self: self.record["scan_info"])

    @property
    def missing(self):
        """{frame channel: [[first, stop], ...]}: frames Redis never got (an outage during the
        scan; they are in the file). Read from the record as it is now."""
        with _named(self.client, f"reading scan {self.key}"):
            raw = self.client.get(self.key)
        record = json.loads(raw) if raw is not None else self.record
        return record.get("incomplete", {}).get("frames", {})

    def _last_state(self):
        with _named(self.client, f"reading the state of scan {self.key}"):
            last = self.client.xrevrange(state_key(self.key), count=1)
        return last[0][1] if last else {}

    @property
    def state(self):
        state = self._last_state().get(b"state")
        return state.decode() if state else None

    @property
    def end_reason(self):
        reason = self._last_state().get(b"end_reason")
        return reason.decode() if reason else None

    def decode(self, name, fields):
        """(index of the first point, points) of one stream entry of channel `name`."""
        return decode_entry(self.channels[name], fields)

    def page(self, names):
        """Entries to ask for at once: a frame channel's page stays under PAGE_BYTES."""
        sizes = [int(np.prod(self.channels[n].shape)) * self.channels[n].numpy_dtype.itemsize
                 for n in names if self.channels[n].encoding != "raw"]
        return max(1, min(1000, PAGE_BYTES // max(sizes))) if sizes else 1000

    def entries(self, name):
        """(entry id, fields) of a channel's stream, read in pages."""
        key, start, count = channel_key(self.key, name), "-", self.page([name])
        while True:
            with _named(self.client, f"reading {key}"):
                batch = self.client.xrange(key, min=start, count=count)
            yield from batch
            if len(batch) < count:
                return
            start = "(" + batch[-1][0].decode()

    def read(self, name) -> np.ndarray:
        """Every point of a channel published so far (frames: those Redis still holds)."""
        spec = self.channels[name]
        parts = [self.decode(name, f)[1] for _, f in self.entries(name) if b"data" in f]
        if not parts:
            return np.empty((0, *spec.shape), dtype=spec.numpy_dtype.newbyteorder("="))
        return np.concatenate(parts)

    def get_data(self):
        return {name: self.read(name) for name in self.channels}

    def follow(self, names=None, block_ms=BLOCK_MS, timeout_ms=None):
        """Yield (channel, first index, points) as batches arrive, until every channel is sealed.

        Each point is yielded once, in order, even across a server restart (the scan then
        publishes its points again: those already yielded are skipped); a frame channel may
        jump over frames Redis missed (see `missing`). `timeout_ms`: give up (return) after
        that long without any new entry. RedisLost if the server goes away, or stays without
        this scan for GONE_AFTER_MS."""
        names = list(names or self.channels)
        last = {channel_key(self.key, n): "0-0" for n in names}
        by_key = {channel_key(self.key, n): n for n in names}
        following = {n: 0 for n in names}  # index of the next point to yield
        count, block_ms = self.page(names), min(block_ms, BLOCK_MS)
        waited = gone = 0
        while last:
            with _named(self.client, f"following scan {self.key}"):
                answer = self.client.xread(last, block=block_ms, count=count)
                if not answer:
                    gone = gone + block_ms if not self.client.exists(self.key) else 0
            if not answer:
                waited += block_ms
                if gone >= GONE_AFTER_MS:
                    raise RedisLost(f"scan {self.key} is no longer in Redis at {server_name(self.client)} "
                                    f"(the server restarted or evicted it)")
                if timeout_ms is not None and waited >= timeout_ms:
                    return
                continue
            waited = gone = 0
            for stream, entries in answer:
                stream = stream.decode()
                name = by_key[stream]
                for entry_id, fields in entries:
                    last[stream] = entry_id
                    if b"data" in fields:
                        index, points = self.decode(name, fields)
                        skip = following[name] - index  # > 0: sent again after an outage
                        if skip < len(points):
                            index, points = index + max(0, skip), points[max(0, skip):]
                            following[name] = index + len(points)
                            yield name, index, points
                    if b"sealed" in fields:
                        del last[stream]
                        break


class ScanClient:
    """Find scans: wait for the next one (missing none), or list the recent ones."""

    def __init__(self, client):
        self.client = client
        self._last_history_id = None

    def start_from_now(self):
        """Only scans created from now on count as 'next'."""
        with _named(self.client, "reading the scan history"):
            last = self.client.xrevrange(HISTORY_KEY, count=1)
        self._last_history_id = last[0][0] if last else "0-0"

    def wait_next_scan(self, timeout_ms=None):
        """The next scan after the last one returned (or after `start_from_now`); None on timeout.
        `timeout_ms`: None waits until there is one, 0 only looks. RedisLost if the server goes
        away meanwhile."""
        if self._last_history_id is None:
            self.start_from_now()
        left = timeout_ms
        while True:
            block = None if left == 0 else min(BLOCK_MS, BLOCK_MS if left is None else left)
            with _named(self.client, "waiting for the next scan"):
                answer = self.client.xread({HISTORY_KEY: self._last_history_id}, block=block, count=1)
            if answer:
                break
            if left is not None:
                left = max(0, left - block) if block else 0
                if left == 0:
                    return None
        entry_id, fields = answer[0][1][0]
        self._last_history_id = entry_id
        return ScanReader(self.client, fields[b"key"].decode())

    def recent_scans(self, count=10):
        """The last `count` scans, oldest first (those the server evicted left out)."""
        with _named(self.client, "reading the scan history"):
            entries = self.client.xrevrange(HISTORY_KEY, count=count)
        scans = []
        for _, fields in reversed(entries):
            try:
                scans.append(ScanReader(self.client, fields[b"key"].decode()))
            except KeyError:
                continue
        return scans
