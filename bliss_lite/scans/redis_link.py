"""The scan side's Redis connection: found (or started) once per process, then reused.

`ensure_server` pings and may start the run directory's server; doing that for every scan
would cost a connection per scan, so the client is kept for the URL it was made for. When
Redis cannot be reached, scans go on saving to their file: `scan_redis()` returns None and
warns once until a later scan finds the server again. After a failure the next RETRY_AFTER_S
seconds of scans do not look again, so a dead server costs no scan its connect timeout.
"""
from __future__ import annotations

import os
import sys
import time

import redis

from bliss_lite.config.paths import run_dir
from bliss_lite.data.redis_server import REDIS_URL_ENV, RedisUnavailable, connect, ensure_server

RETRY_AFTER_S = 5.0
_state = {"key": None, "client": None, "url": None, "warned": False, "failed_at": None}


def scan_redis():
    """A redis client for publishing scans, or None (with one warning) if there is no server."""
    key = (os.environ.get(REDIS_URL_ENV), os.environ.get("BLISS_LITE_RUN_DIR"))
    if _state["key"] == key and _state["client"] is not None:
        return _state["client"]
    failed_at = _state["failed_at"]
    if _state["key"] == key and failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER_S:
        return None
    try:
        url = ensure_server(run_dir())
        client = connect(url)
        client.ping()
    except (RedisUnavailable, redis.RedisError, OSError) as exc:
        if not _state["warned"]:
            print(f"WARNING: no Redis for live data ({exc}); scans are saved to their file only",
                  file=sys.stderr, flush=True)
            _state["warned"] = True
        _state.update(key=key, client=None, failed_at=time.monotonic())
        return None
    _state.update(key=key, client=client, url=url, warned=False, failed_at=None)
    return client


def scan_redis_url():
    """The URL of the server `scan_redis()` connected to (for worker processes), or None."""
    return _state["url"] if scan_redis() is not None else None


def forget():
    """Drop the cached client (after the server went away), so the next scan looks again."""
    _state.update(key=None, client=None, url=None, failed_at=None)
