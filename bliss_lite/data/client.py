"""Reading scans from Redis, live or finished: for analysis programs and `bliss-lite follow`.

Imports neither gevent nor the shell: redis-py and numpy only. Streams are read by entry id,
so a follower gets every batch exactly once and in order, and `wait_next_scan` continues
from the last history entry it saw, so no scan is missed between two calls.
"""
from __future__ import annotations

import json

import numpy as np

from bliss_lite.data import bslz4
from bliss_lite.data.model import HISTORY_KEY, ChannelSpec, channel_key, decode_points, state_key


class ScanReader:
    """One scan in Redis: its record, state and channels."""

    def __init__(self, client, key):
        self.client = client
        self.key = key
        raw = client.get(key)
        if raw is None:
            raise KeyError(f"no scan at Redis key {key}")
        self.record = json.loads(raw)
        self.channels = {n: ChannelSpec.from_json(s) for n, s in self.record["scan_info"]["channels"].items()}

    name = property(lambda self: self.record["name"])
    number = property(lambda self: self.record["number"])
    session = property(lambda self: self.record["session"])
    scan_info = property(lambda self: self.record["scan_info"])

    @property
    def state(self):
        last = self.client.xrevrange(state_key(self.key), count=1)
        return last[0][1][b"state"].decode() if last else None

    @property
    def end_reason(self):
        last = self.client.xrevrange(state_key(self.key), count=1)
        reason = last[0][1].get(b"end_reason") if last else None
        return reason.decode() if reason else None

    def decode(self, name, fields):
        """(index of the first point, points) of one stream entry of channel `name`."""
        spec = self.channels[name]
        if spec.encoding == "bslz4":  # one compressed frame per entry
            frame = bslz4.decompress(fields[b"data"], spec.shape, spec.numpy_dtype.newbyteorder("="))
            return int(fields[b"index"]), frame[np.newaxis]
        return int(fields[b"index"]), decode_points(spec, fields[b"data"], int(fields[b"count"]))

    def read(self, name) -> np.ndarray:
        """Every point of a channel published so far."""
        spec = self.channels[name]
        parts = [self.decode(name, f)[1] for _, f in self.client.xrange(channel_key(self.key, name))
                 if b"data" in f]
        if not parts:
            return np.empty((0, *spec.shape), dtype=spec.numpy_dtype.newbyteorder("="))
        return np.concatenate(parts)

    def get_data(self):
        return {name: self.read(name) for name in self.channels}

    def follow(self, names=None, block_ms=1000, timeout_ms=None):
        """Yield (channel, first index, points) as batches arrive, until every channel is sealed.

        `timeout_ms`: give up (return) after that long without any new entry.
        """
        names = list(names or self.channels)
        last = {channel_key(self.key, n): "0-0" for n in names}
        by_key = {channel_key(self.key, n): n for n in names}
        waited = 0
        while last:
            answer = self.client.xread(last, block=block_ms, count=1000)
            if not answer:
                waited += block_ms
                if timeout_ms is not None and waited >= timeout_ms:
                    return
                continue
            waited = 0
            for stream, entries in answer:
                stream = stream.decode()
                for entry_id, fields in entries:
                    last[stream] = entry_id
                    if b"data" in fields:
                        index, points = self.decode(by_key[stream], fields)
                        yield by_key[stream], index, points
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
        last = self.client.xrevrange(HISTORY_KEY, count=1)
        self._last_history_id = last[0][0] if last else "0-0"

    def wait_next_scan(self, timeout_ms=None):
        """The next scan after the last one returned (or after `start_from_now`); None on timeout.
        `timeout_ms`: None waits forever, 0 only looks."""
        if self._last_history_id is None:
            self.start_from_now()
        block = 0 if timeout_ms is None else (None if timeout_ms == 0 else timeout_ms)
        answer = self.client.xread({HISTORY_KEY: self._last_history_id}, block=block, count=1)
        if not answer:
            return None
        entry_id, fields = answer[0][1][0]
        self._last_history_id = entry_id
        return ScanReader(self.client, fields[b"key"].decode())

    def recent_scans(self, count=10):
        entries = self.client.xrevrange(HISTORY_KEY, count=count)
        return [ScanReader(self.client, f[b"key"].decode()) for _, f in reversed(entries)]
