"""The Redis contract between a scan that wants its frames integrated and the workers doing it.

Why a consumer group: several workers, on any host that reaches Redis, share one frame
stream; Redis hands each frame to one of them and remembers it as pending until that worker
acknowledges it. A worker that dies leaves its frames pending, and another one claims them
(XAUTOCLAIM) once they have been idle for `CLAIM_IDLE_MS`: nothing is lost.

Keys (`<key>` is the scan's key, docs/redis-protocol.md):
- `bliss_lite:integration:active` hash {scan key: job JSON}: the scans to integrate now.
- `bliss_lite:integration:announce` stream: one entry per new job, so idle workers wake up.
- `<key>:data:<detector>`: the scan's frame stream, consumer group `integration`.
- `<key>:processing:integration` stream: one entry per integrated frame, fields `index`,
  `data` (float32 little-endian, npt values), `worker`; a frame may appear twice (a worker
  died after publishing, before acknowledging): readers keep one per index.
- `<key>:processing:integration:info` string, JSON: `radial` (bin centres), `unit`, `npt`,
  `settings`; set by the first worker that built the geometry.
Only JSON crosses the wire: nothing is unpickled, settings are validated where they enter.
"""
from __future__ import annotations

import json
import time

import numpy as np

from bliss_lite.data.model import INTEGRATION_ACTIVE_KEY as ACTIVE_KEY
from bliss_lite.data.model import INTEGRATION_ANNOUNCE_KEY as ANNOUNCE_KEY
from bliss_lite.data.model import channel_key as frames_key  # the workers read the scan's frame stream
from bliss_lite.data.model import integration_info_key as info_key
from bliss_lite.data.model import integration_results_key as results_key
from bliss_lite.data.model import stream_maxlen
from bliss_lite.protocols import Backend

GROUP = "integration"  # the workers' consumer group on a frame stream
RESULTS_BUDGET = 256 * 2**20  # bytes of integrated patterns a scan's results stream holds
CLAIM_IDLE_MS = 5000  # longer than a worker needs to build a full-frame geometry


def register(client, scan_key, detector, settings, npoints=None, backend=Backend.CPU):
    """Ask the workers to integrate this scan's frames (`backend`: what the scan asks the
    workers for, "cpu", "gpu" or "auto"). The group starts at the stream's first entry, so
    frames written before any worker joins are not missed."""
    import redis

    job = {"scan": scan_key, "detector": detector, "settings": settings.to_dict(), "npoints": npoints,
           "backend": backend, "registered": time.time()}
    try:
        client.xgroup_create(frames_key(scan_key, detector), GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    pipe = client.pipeline(transaction=True)
    pipe.hset(ACTIVE_KEY, scan_key, json.dumps(job))
    pipe.xadd(ANNOUNCE_KEY, {"scan": scan_key}, maxlen=1000, approximate=True)
    pipe.execute()
    return job


def unregister(client, scan_key):
    client.hdel(ACTIVE_KEY, scan_key)


def active_jobs(client):
    """{scan key: job dict} of the scans to integrate; malformed entries (not JSON, not an
    object with a detector name and settings) are skipped."""
    jobs = {}
    for key, raw in client.hgetall(ACTIVE_KEY).items():
        try:
            job = json.loads(raw)
            key = key.decode()
        except ValueError:
            continue
        if isinstance(job, dict) and isinstance(job.get("detector"), str) and isinstance(job.get("settings"), dict):
            jobs[key] = job
    return jobs


def publish_patterns(pipe, scan_key, indices, patterns, worker):
    """One entry per pattern; the stream capped at about RESULTS_BUDGET bytes (at most
    STREAM_WINDOW patterns): a hook that fell that far behind integrates the patterns it lost
    from the file at the end."""
    key = results_key(scan_key)
    for index, pattern in zip(indices, patterns, strict=True):
        data = np.ascontiguousarray(pattern, dtype="<f4").tobytes()
        pipe.xadd(key, {"index": int(index), "data": data, "worker": worker},
                  maxlen=stream_maxlen(RESULTS_BUDGET, len(data), least=1000), approximate=True)


def set_info(client, scan_key, integrator):
    info = {"radial": integrator.radial.tolist(), "unit": integrator.unit, "npt": integrator.npt,
            "settings": integrator.settings.to_dict()}
    client.set(info_key(scan_key), json.dumps(info), nx=True)


def get_info(client, scan_key):
    raw = client.get(info_key(scan_key))
    return None if raw is None else json.loads(raw)


class PatternReader:
    """Reads a scan's integrated patterns as they arrive, each index once (no gevent: polls).
    The indices seen are one flag per frame (a set of Python ints would take ~60 bytes each:
    gigabytes for a seed-scale scan)."""

    def __init__(self, client, scan_key, npt):
        self.client, self.key, self.npt = client, results_key(scan_key), npt
        self.last_id = "0-0"
        self._seen = np.zeros(0, bool)

    def _first_time(self, index):
        if index >= self._seen.size:
            self._seen = np.concatenate([self._seen, np.zeros(max(index + 1, 2 * self._seen.size) - self._seen.size,
                                                              bool)])
        first, self._seen[index] = not self._seen[index], True
        return first

    def poll(self, count=10000):
        """(indices, patterns (k, npt)) of the patterns new since the last call."""
        indices, patterns = [], []
        while True:
            entries = self.client.xrange(self.key, min=f"({self.last_id}" if self.last_id != "0-0" else "-", count=count)
            if not entries:
                break
            for entry_id, fields in entries:
                self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                index = int(fields[b"index"])
                if not self._first_time(index):
                    continue
                indices.append(index)
                patterns.append(np.frombuffer(fields[b"data"], dtype="<f4"))
            if len(entries) < count:
                break
        if not indices:
            return np.empty(0, int), np.empty((0, self.npt), np.float32)
        return np.asarray(indices), np.stack(patterns).astype(np.float32)
