"""Publishing a scan to Redis: its record, state stream, channel batches, seal and history.

Each call is one pipelined round trip (batch points: ~80k small XADDs/s pipelined against
~10k/s one at a time). Synchronous on purpose: the scan engine calls it from its own I/O
greenlet or thread so that publishing never blocks the scan loop.
"""
from __future__ import annotations

import json
import time
import uuid

from bliss_lite.data.model import (END_REASONS, HISTORY_KEY, HISTORY_MAXLEN, STATES, channel_key,
                                   encode_points, scan_key, state_key)


PIPELINE_BYTES = 16 * 2**20


class ScanPublisher:
    def __init__(self, client, *, session, number, name, scan_info=None, channels=(), frame_budget=256 * 2**20):
        self.client = client
        self.frame_budget = frame_budget  # bytes of frames a channel stream may hold
        self.frame_budget_len = None
        self.id = uuid.uuid4().hex
        self.key = scan_key(self.id)
        self.channels = {spec.name: spec for spec in channels}
        self.record = {
            "id": self.id, "name": name, "number": number, "session": session,
            "scan_info": {**(scan_info or {}), "channels": {n: s.to_json() for n, s in self.channels.items()}},
            "state": None,
        }
        self._counts = {name: 0 for name in self.channels}

    def create(self, then=()):
        """Record, first state(s) and history entry, in one transaction: a follower sees all
        or none. `then`: states entered at once after CREATED (a scan already prepared)."""
        states = ("CREATED", *then)
        for state in states:
            if state not in STATES:
                raise ValueError(f"scan state must be one of {', '.join(STATES)}, got {state!r}")
        self.record["state"] = states[-1]
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, json.dumps(self.record))
        for state in states:
            pipe.xadd(state_key(self.key), {"state": state, "time": repr(time.time())})
        pipe.xadd(HISTORY_KEY, {"key": self.key}, maxlen=HISTORY_MAXLEN, approximate=True)
        pipe.execute()

    def set_state(self, *states, **extra):
        """Enter one state, or several in order (PREPARED, STARTED), in one transaction."""
        for state in states:
            if state not in STATES:
                raise ValueError(f"scan state must be one of {', '.join(STATES)}, got {state!r}")
        self.record["state"] = states[-1]
        self.record.update(extra)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, json.dumps(self.record))
        for state in states:
            pipe.xadd(state_key(self.key), {"state": state, "time": repr(time.time()),
                                            **{k: str(v) for k, v in extra.items()}})
        pipe.execute()

    def publish(self, batches):
        """Append {channel: points} (points along the first axis), each as one stream entry.
        Frames go in pipelines of at most PIPELINE_BYTES, so a backlog never lands in Redis's
        input buffer all at once."""
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for name, values in batches.items():
            if self.channels[name].encoding == "raw":
                self._add_batch(pipe, name, values)
                continue
            for chunk in values:
                self._add_chunks(pipe, name, [chunk])
                queued += len(chunk)
                if queued > PIPELINE_BYTES:
                    pipe.execute()
                    queued = 0
        pipe.execute()

    def _add_batch(self, pipe, name, values, **seal):
        spec = self.channels[name]
        if spec.encoding != "raw":
            self._add_chunks(pipe, name, values, **seal)
            return
        count, data = encode_points(spec, values)
        if count == 0 and not seal:
            return
        fields = {"index": self._counts[name], "count": count, "data": data} if count else {}
        self._counts[name] += count
        if seal:
            fields.update(sealed=1, total=self._counts[name])
        pipe.xadd(channel_key(self.key, name), fields)

    def _add_chunks(self, pipe, name, chunks, sealed=False):
        """One entry per frame (the detector's compressed bytes), the stream capped so that it
        holds about `frame_budget` bytes: a slow reader loses old frames (they are in the file),
        acquisition never waits."""
        key = channel_key(self.key, name)
        for chunk in chunks:
            maxlen = max(8, self.frame_budget // max(1, len(chunk)))
            pipe.xadd(key, {"index": self._counts[name], "count": 1, "data": chunk}, maxlen=maxlen, approximate=True)
            self._counts[name] += 1
            self.frame_budget_len = maxlen
        if sealed:
            pipe.xadd(key, {"sealed": 1, "total": self._counts[name]})

    def trimmed(self):
        """{frame channel: frames no longer (or soon no longer) in Redis because of the budget}."""
        if self.frame_budget_len is None:
            return {}
        return {n: self._counts[n] - self.frame_budget_len for n, spec in self.channels.items()
                if spec.encoding != "raw" and self._counts[n] > self.frame_budget_len}

    @property
    def counts(self):
        return dict(self._counts)

    def seal(self, end_reason="SUCCESS", last_batches=None):
        """The last points (if given) with a seal on every channel, then STOPPED and CLOSED,
        in one transaction: readers know nothing follows."""
        if end_reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {', '.join(END_REASONS)}, got {end_reason!r}")
        last_batches = dict(last_batches or {})
        frames = {n: last_batches.pop(n) for n in list(last_batches) if self.channels[n].encoding != "raw"}
        if frames:
            self.publish(frames)  # big: before the transaction, in bounded pipelines
        pipe = self.client.pipeline(transaction=True)
        for name in self.channels:
            self._add_batch(pipe, name, last_batches.get(name, ()), sealed=True)
        self.record.update(state="CLOSED", end_reason=end_reason)
        pipe.set(self.key, json.dumps(self.record))
        for state in ("STOPPED", "CLOSED"):
            pipe.xadd(state_key(self.key), {"state": state, "time": repr(time.time()), "end_reason": end_reason})
        pipe.execute()
