"""Publishing a scan to Redis: its record, state stream, channel batches, seal and history.

Each call is one pipelined round trip (batch points: ~80k small XADDs/s pipelined against
~10k/s one at a time). Synchronous on purpose: the scan engine calls it from its own I/O
greenlet or thread so that publishing never blocks the scan loop.
"""
from __future__ import annotations

import collections
import json
import time
import uuid

import redis

from bliss_lite.data.model import (
    END_REASONS,
    HISTORY_KEY,
    HISTORY_MAXLEN,
    STATES,
    channel_key,
    encode_points,
    scan_key,
    state_key,
    stream_maxlen,
)

PIPELINE_BYTES = 16 * 2**20
POINT_BUDGET = 64 * 2**20  # bytes of points a scalar channel's stream may hold
POINT_WINDOW = 100_000  # points a scalar channel's stream holds at most (400 s at 250 Hz)
REPUBLISH_POINTS = 10000  # points per entry when a channel is published again after an outage


class ScanLost(redis.RedisError):
    """The server no longer holds the scan's record: it restarted (redis-py reconnects to it
    without a word) or evicted it. `resume` writes the scan again."""


class ScanPublisher:
    def __init__(self, client, *, session, number, name, scan_info=None, channels=(), frame_budget=256 * 2**20,
                 point_budget=POINT_BUDGET):
        self.client = client
        self.frame_budget = frame_budget  # bytes of frames a channel stream may hold
        self.frame_budget_len = None
        self.point_budget = point_budget  # bytes of points a scalar channel stream may hold
        self._kept = {}  # scalar channel -> points per entry of the entries its stream still holds
        self.id = uuid.uuid4().hex
        self.key = scan_key(self.id)
        self.channels = {spec.name: spec for spec in channels}
        self.record = {
            "id": self.id, "name": name, "number": number, "session": session,
            "scan_info": {**(scan_info or {}), "channels": {n: s.to_json() for n, s in self.channels.items()}},
            "state": None,
        }
        self._counts = {name: 0 for name in self.channels}  # points handed over, sent or not
        self._states = []  # (state, time, extra) entered so far, to write them again after an outage
        self.published = False  # the record reached Redis at least once

    def _enter(self, states, extra=None):
        for state in states:
            if state not in STATES:
                raise ValueError(f"scan state must be one of {', '.join(STATES)}, got {state!r}")
        now = time.time()
        entered = [(state, now, {k: str(v) for k, v in (extra or {}).items()}) for state in states]
        self._states.extend(entered)
        self.record["state"] = states[-1]
        return entered

    @staticmethod
    def _add_states(pipe, key, entered):
        for state, when, extra in entered:
            pipe.xadd(state_key(key), {"state": state, "time": repr(when), **extra})

    def create(self, then=()):
        """Record, first state(s) and history entry, in one transaction: a follower sees all
        or none. `then`: states entered at once after CREATED (a scan already prepared)."""
        entered = self._enter(("CREATED", *then))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, json.dumps(self.record))
        self._add_states(pipe, self.key, entered)
        pipe.xadd(HISTORY_KEY, {"key": self.key}, maxlen=HISTORY_MAXLEN, approximate=True)
        pipe.execute()
        self.published = True

    def set_state(self, *states, **extra):
        """Enter one state, or several in order (PREPARED, STARTED), in one transaction."""
        entered = self._enter(states, extra)
        self.record.update(extra)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, json.dumps(self.record))
        self._add_states(pipe, self.key, entered)
        pipe.execute()

    def skip(self, batches):
        """Count {channel: points} as handed over without sending them (Redis is away; the
        raw points are sent again by `resume`). Returns each channel's first index."""
        first = {}
        for name, values in batches.items():
            first[name] = self._counts[name]
            self._counts[name] += len(values)
        return first

    def publish(self, batches):
        """Append {channel: points} (points along the first axis), each as one stream entry.
        Frames go in pipelines of at most PIPELINE_BYTES, so a backlog never lands in Redis's
        input buffer all at once. The points count as handed over even if Redis fails."""
        self._send(batches, self.skip(batches))

    def _send(self, batches, first):
        pipe = self.client.pipeline(transaction=False)
        # answered with the batch: a server that lost the record is seen at once (and TOUCH
        # keeps the running scan's record from looking old to the LRU eviction)
        pipe.touch(self.key)
        held, queued = None, 0
        for name, values in batches.items():
            if self.channels[name].encoding == "raw":
                self._add_points(pipe, name, first[name], values)
                continue
            for offset, chunk in enumerate(values):
                self._add_frame(pipe, name, first[name] + offset, chunk)
                queued += len(chunk)
                if queued > PIPELINE_BYTES:
                    replies, queued = pipe.execute(), 0
                    held = replies[0] if held is None else held
        replies = pipe.execute()
        if (replies[0] if held is None else held) == 0:
            raise ScanLost(f"Redis no longer holds scan {self.key} (restarted?)")

    def _add_points(self, pipe, name, index, values, **seal):
        """One entry of points; the stream capped at about `point_budget` bytes and
        POINT_WINDOW points, as frame streams are (a scan of a hundred million points must not
        fill Redis: the file has them all, and readers take the points with their index). The
        window in points, not bytes, makes the stream stop growing early in a long scan: a
        week's scan at 250 Hz would take days to reach 64 MB of float64 points."""
        count, data = encode_points(self.channels[name], values) if len(values) else (0, b"")
        fields = {"index": index, "count": count, "data": data} if count else {}
        fields.update(seal)
        if not fields:
            return
        if not count:
            pipe.xadd(channel_key(self.key, name), fields)
            return
        maxlen = min(stream_maxlen(self.point_budget, len(data)), max(8, POINT_WINDOW // count))
        kept = self._kept.setdefault(name, collections.deque())
        kept.append(count)
        while len(kept) > maxlen:
            kept.popleft()
        pipe.xadd(channel_key(self.key, name), fields, maxlen=maxlen, approximate=True)

    def _add_frame(self, pipe, name, index, chunk):
        """One entry per frame (the detector's compressed bytes), the stream capped so that it
        holds about `frame_budget` bytes (at most STREAM_WINDOW frames): a slow reader loses old frames (they are in the file),
        acquisition never waits."""
        maxlen = stream_maxlen(self.frame_budget, len(chunk))
        pipe.xadd(channel_key(self.key, name), {"index": index, "count": 1, "data": chunk},
                  maxlen=maxlen, approximate=True)
        self.frame_budget_len = maxlen

    def trimmed(self):
        """{channel: points (frames) no longer, or soon no longer, in Redis because of the budgets}."""
        trimmed = {}
        for name, spec in self.channels.items():
            if spec.encoding != "raw":
                kept = self.frame_budget_len
            else:
                kept = sum(self._kept[name]) if name in self._kept else None
            if kept is not None and self._counts[name] > kept:
                trimmed[name] = self._counts[name] - kept
        return trimmed

    @property
    def counts(self):
        return dict(self._counts)

    @property
    def missing(self):
        """{frame channel: [[first, stop], ...]} of frames Redis never got (outages)."""
        return self.record.get("incomplete", {}).get("frames", {})

    def seal(self, end_reason="SUCCESS", last_batches=None):
        """The last points (if given) with a seal on every channel, then STOPPED and CLOSED,
        in one transaction: readers know nothing follows."""
        if end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {', '.join(END_REASONS)}, got {end_reason!r}")
        last_batches = dict(last_batches or {})
        first = self.skip(last_batches)  # counted once: a seal tried again after a failure sends none twice
        if self.published and not self.client.exists(self.key):
            raise ScanLost(f"Redis no longer holds scan {self.key} (restarted?)")
        frames = {n: last_batches.pop(n) for n in list(last_batches) if self.channels[n].encoding != "raw"}
        if frames:
            self._send(frames, first)  # big: before the transaction, in bounded pipelines
        # sealed again after a failed try: `resume` has written the states entered then
        entered = [] if self.record["state"] == "CLOSED" else self._enter(("STOPPED", "CLOSED"), {"end_reason": end_reason})
        self.record.update(end_reason=end_reason)
        pipe = self.client.pipeline(transaction=True)
        for name in self.channels:
            self._add_points(pipe, name, first.get(name, 0), last_batches.get(name, ()), sealed=1,
                             total=self._counts[name])
        pipe.set(self.key, json.dumps(self.record))
        self._add_states(pipe, self.key, entered)
        pipe.execute()

    # -- after an outage ---------------------------------------------------------------------
    def _held(self, name):
        """Points of a channel the server holds (the index after its last entry)."""
        last = self.client.xrevrange(channel_key(self.key, name), count=1)
        if not last:
            return 0
        fields = last[0][1]
        if b"total" in fields:
            return int(fields[b"total"])
        return int(fields[b"index"]) + int(fields[b"count"])

    def _add_gap(self, name, start, stop):
        gaps = self.record.setdefault("incomplete", {}).setdefault("frames", {}).setdefault(name, [])
        merged = []
        for first, end in sorted([*gaps, [start, stop]]):
            if merged and first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([first, end])
        gaps[:] = merged

    def resume(self, client, raw_points):
        """Redis is back (maybe a restarted server that lost everything): write the record and
        its states again where they are gone, send every raw point the server lacks
        (`raw_points(channel, start, stop)` returns them from memory) and record in
        record["incomplete"]["frames"] the frames it lacks; then live publishing goes on."""
        self.client = client
        kept = bool(client.exists(self.key))
        have = {name: self._held(name) if kept else 0 for name in self.channels}
        states_kept = client.xlen(state_key(self.key)) if kept else 0
        for name, spec in self.channels.items():
            if spec.encoding != "raw" and have[name] < self._counts[name]:
                self._add_gap(name, have[name], self._counts[name])
        pipe = client.pipeline(transaction=True)
        if not kept:  # nothing of this scan may be left half: start its keys afresh
            pipe.delete(state_key(self.key), *(channel_key(self.key, n) for n in self.channels))
        pipe.set(self.key, json.dumps(self.record))
        self._add_states(pipe, self.key, self._states[states_kept:])
        if not kept:
            pipe.xadd(HISTORY_KEY, {"key": self.key}, maxlen=HISTORY_MAXLEN, approximate=True)
        pipe.execute()
        self.published = True
        pipe = client.pipeline(transaction=False)
        for name, spec in self.channels.items():
            if spec.encoding != "raw":
                continue
            for start in range(have[name], self._counts[name], REPUBLISH_POINTS):
                stop = min(start + REPUBLISH_POINTS, self._counts[name])
                self._add_points(pipe, name, start, raw_points(name, start, stop))
            if len(pipe) > 100:
                pipe.execute()
        pipe.execute()
