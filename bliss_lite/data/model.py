"""The Redis data model of a scan: key names and the encoding of channel batches.

Shared by the publisher (the scan side) and the client (any analysis program); plain Python
and numpy only. docs/redis-protocol.md describes it for programs in other languages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bliss_lite.protocols import END_REASONS as END_REASONS  # re-exported: the seal's words
from bliss_lite.protocols import PUBLISHED_STATES

HISTORY_KEY = "bliss_lite:scans:history"  # stream: one entry {"key": scan key} per new scan
HISTORY_MAXLEN = 10000
STATES = PUBLISHED_STATES  # the state stream's words, in order (bliss_lite.protocols.ScanState)
TIMERS = ("elapsed_time", "epoch")  # channels of every step scan, not counters a scientist plots
STREAM_WINDOW = 50_000  # entries a scan's data stream keeps at most (200 s of frames at 250 Hz)


def stream_maxlen(budget_bytes, entry_bytes, least=8):
    """Entries a scan's data stream (frames, points, patterns) keeps: its byte budget's worth,
    and never more than STREAM_WINDOW entries, so that small entries (a 48 x 160 ROI's frames,
    short patterns) fill the window early in a long scan instead of growing the server for
    hours. Older entries are in the files; readers that fall behind read them there."""
    return max(least, min(STREAM_WINDOW, budget_bytes // max(1, entry_bytes)))


def scan_key(scan_id):
    return f"bliss_lite:scan:{scan_id}"  # string: the scan record (JSON)


def state_key(key):
    return f"{key}:state"  # stream: {"state": ..., "time": ..., ["end_reason": ...]}


def channel_key(key, channel):
    return f"{key}:data:{channel}"  # stream: batches {"index", "count", "data"}; the last one sealed


# -- the other keys bliss_lite keeps in Redis (every name is defined here, and only here) ------
def plotselect_key(session):
    return f"bliss_lite:session:{session}:plotselect"  # string: JSON list of counter names


def control_key(key):
    return f"{key}:control"  # string: "pause" or "resume", asked of a running scan (data/scan_control.py)


CONTROL_TTL_S = 7 * 24 * 3600  # a request outlives no week-long scan by much


INTEGRATION_ACTIVE_KEY = "bliss_lite:integration:active"  # hash: scan key -> integration job (JSON)
INTEGRATION_ANNOUNCE_KEY = "bliss_lite:integration:announce"  # stream: {"scan": key} per new job


def dead_letters_key(key):
    return f"{key}:dead_letters"  # stream: entries of the scan's streams a reader could not decode (data/dead_letters.py)


DEAD_LETTERS_KEY = "bliss_lite:dead_letters"  # stream: messages of no one scan (a job, a queue entry) refused
DEAD_LETTERS_MAXLEN = 10000


def integration_results_key(key):
    return f"{key}:processing:integration"  # stream: patterns integrated by the workers


def integration_info_key(key):
    return f"{key}:processing:integration:info"  # string: the radial axis and unit (JSON)


def reconstruction_live_key(key):
    return f"{key}:processing:reconstruction"  # stream: live phase maps of each height


JOBS_QUEUE_KEY = "bliss_lite:jobs:queue"  # stream: jobs submitted to the job servers
JOBS_GROUP = "bliss_lite:jobs:servers"  # its consumer group
JOBS_DONE_KEY = "bliss_lite:jobs:done"  # stream: ids of finished jobs


def job_result_key(job_id):
    return f"bliss_lite:jobs:{job_id}"  # string: a job's record and result (JSON), with a TTL


# -- the queue server of a session (shell/queue_server.py, data/queue_client.py) -----------------
def queue_key(session, part):
    """Keys of a session's queue: "items" (hash id -> item JSON), "order" (list of queued ids),
    "history" (list of finished ids, oldest first), "running" (string: the running id),
    "status" (hash: mode, holding, server), "server" (string host:pid with a TTL: the
    server's lease), "requests" (stream: changes asked of the server), "log" (stream: who
    changed what)."""
    if part not in QUEUE_PARTS:
        raise ValueError(f"queue key: unknown part {part!r}")
    return f"bliss_lite:queue:{session}:{part}"


QUEUE_PARTS = ("items", "order", "history", "running", "status", "server", "requests", "log")
QUEUE_LOG_MAXLEN = 10000


def queue_sessions(keys):
    """Session names of the queues' status keys among `keys` (from SCAN of QUEUE_STATUS_MATCH)."""
    prefix, suffix = "bliss_lite:queue:", ":status"
    names = (k.decode() if isinstance(k, bytes) else k for k in keys)
    return sorted({n[len(prefix):-len(suffix)] for n in names if n.startswith(prefix) and n.endswith(suffix)})


QUEUE_STATUS_MATCH = "bliss_lite:queue:*:status"  # SCAN pattern: every session's queue status


def queue_reply_key(session, request_id):
    return f"bliss_lite:queue:{session}:reply:{request_id}"  # list: the server's answer to one request


def axis_lock_key(session, axis):
    return f"bliss_lite:session:{session}:axis_lock:{axis}"  # string: who moves the axis, with a TTL (lease)


@dataclass(frozen=True)
class ChannelSpec:
    """What a reader needs to decode a channel: numpy dtype string, per-point shape, unit."""

    name: str
    dtype: str = "float64"
    shape: tuple = ()
    unit: str = ""
    encoding: str = "raw"  # raw little-endian C-order bytes ("bslz4" for frames, later)
    extra: dict = field(default_factory=dict)

    def to_json(self):
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "unit": self.unit,
                "encoding": self.encoding, "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, data):
        return cls(**{**data, "shape": tuple(data.get("shape", ()))})

    @property
    def numpy_dtype(self):
        return np.dtype(self.dtype).newbyteorder("<")


def encode_points(spec: ChannelSpec, values) -> tuple[int, bytes]:
    """(number of points, bytes) of a batch of points of this channel."""
    array = np.ascontiguousarray(values, dtype=spec.numpy_dtype)
    if array.shape[1:] != tuple(spec.shape):
        array = array.reshape((-1, *spec.shape))
    return array.shape[0], array.tobytes()


def decode_points(spec: ChannelSpec, data: bytes, count: int) -> np.ndarray:
    array = np.frombuffer(data, dtype=spec.numpy_dtype)
    return array.reshape((count, *spec.shape)).astype(spec.numpy_dtype.newbyteorder("="), copy=False)
