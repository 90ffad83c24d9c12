"""The scan side's Redis connection: found (or started) once per session, then reused, and
a scan's publisher kept going while Redis goes away and comes back.

`ensure_server` pings and may start the run directory's server; doing that for every scan
would cost a connection per scan, so the client is kept for the URL it was made for. When
Redis cannot be reached, scans go on saving to their file: `client()` returns None and
warns once until a later scan finds the server again. After a failure the next RETRY_AFTER_S
seconds of scans do not look again, so a dead server costs no scan its connect timeout.
"""
from __future__ import annotations

import logging
import os
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bliss_lite.config.paths import run_dir
from bliss_lite.data.redis_server import REDIS_URL_ENV, RedisUnavailable, connect, ensure_server
from bliss_lite.data.redis_url import mask_url

RETRY_AFTER_S = 5.0
logger = logging.getLogger(__name__)


def _where():
    return os.environ.get(REDIS_URL_ENV), os.environ.get("BLISS_LITE_RUN_DIR")


class ScanRedis:
    """The Redis connection of one session's scans (its ScanContext holds it)."""

    def __init__(self):
        self._key = self._client = self._url = self._failed_at = None
        self._warned = False

    def _open(self, quick=False):
        """(url, client) of the scans' Redis, pinged; RedisUnavailable naming the server (its
        password masked) if it cannot be reached. `quick`: one try with short timeouts first
        (a scan looking for Redis again must not be held by a silent host)."""
        url = ensure_server(run_dir())
        try:
            if quick:
                connect(url, retry=Retry(NoBackoff(), 0), socket_timeout=0.5).ping()
            client = connect(url)
            client.ping()
        except (redis.RedisError, OSError) as exc:
            text, name = str(exc), mask_url(url)
            raise RedisUnavailable(text if name in text else f"Redis at {name}: {text}") from exc
        self._key, self._client, self._url, self._warned, self._failed_at = _where(), client, url, False, None
        return url, client

    def client(self):
        """A redis client for publishing scans, or None (with one warning) if there is no server.
        The server is looked for again when BLISS_LITE_REDIS_URL or the run directory changed."""
        key = _where()
        if self._key == key and self._client is not None:
            return self._client
        if self._key == key and self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return None
        try:
            return self._open()[1]
        except (RedisUnavailable, redis.RedisError, OSError) as exc:
            if not self._warned:
                logger.warning(f"WARNING: no Redis for live data ({exc}); scans are saved to their file only")
                self._warned = True
            self._key, self._client, self._failed_at = key, None, time.monotonic()
            return None

    def reconnect(self):
        """A fresh client to the scans' Redis (the private server restarted if it died), or None,
        silently: for a scan that lost Redis and looks for it again."""
        self.forget()
        try:
            return self._open(quick=True)[1]
        except (RedisUnavailable, redis.RedisError, OSError):
            return None

    def url(self):
        """The URL of the server `client()` connected to (for worker processes), or None."""
        return self._url if self.client() is not None else None

    def forget(self):
        """Drop the cached client (after the server went away), so the next scan looks again."""
        self._key = self._client = self._url = self._failed_at = None


class LiveLink:
    """A scan's publisher while Redis may go away and come back.

    At the first Redis error publishing stops, with one warning; the file keeps every point.
    While the scan runs, Redis is looked for again at most every RETRY_S (connects time out
    fast, so the scan loop is never held long). When it answers, the publisher resumes: the
    record and its states written again if the server lost them, every raw point it lacks
    sent again (from memory, or from the file for a long scan), the frames it missed listed in record["incomplete"]; one warning
    says so, and live publishing goes on. At the end the seal is tried once more.
    """

    RETRY_S = 1.5

    def __init__(self, publisher, raw_points, warn, label, link):
        self.link = link  # the session's ScanRedis: looked for again through it
        self.publisher = publisher
        self.raw_points = raw_points  # (channel, start, stop) -> points, from memory or the scan's file
        self.warn = warn
        self.label = label
        self.offline = False
        self._next_try = 0.0

    @property
    def key(self):
        """The scan's Redis key, None while its record never reached Redis."""
        return self.publisher.key if self.publisher.published else None

    def call(self, method, *args, **kwargs):
        """Run a publisher call; True if it went through. A Redis error takes the link offline."""
        if self.offline:
            return False
        try:
            method(*args, **kwargs)
            return True
        except (redis.RedisError, OSError) as exc:
            self.offline = True
            self._next_try = time.monotonic() + self.RETRY_S
            self.link.forget()
            self.warn(f"WARNING: Redis lost ({exc}); {self.label} goes on and saves every point to its file; "
                      f"Redis is looked for every {self.RETRY_S:g} s and at the end")
            return False

    def create(self, then=()):
        return self.call(self.publisher.create, then=then)

    def publish(self, batch):
        """Publish a batch, or count it as missed while Redis is away (looking for it when due)."""
        if self.offline and time.monotonic() >= self._next_try:
            self.retry()
        if not batch:
            return
        if self.offline:
            self.publisher.skip(batch)
        else:
            self.call(self.publisher.publish, batch)

    def retry(self):
        """Look for Redis now; if it answers, resume publishing. True when back."""
        self._next_try = time.monotonic() + self.RETRY_S
        client = self.link.reconnect()
        if client is None:
            return False
        try:
            self.publisher.resume(client, self.raw_points)
        except (redis.RedisError, OSError):
            self.link.forget()
            return False
        self.offline = False
        missing = {n: sum(stop - first for first, stop in gaps) for n, gaps in self.publisher.missing.items()}
        said = ", ".join(f"{n}: {count} frames not in Redis (all in the file)" for n, count in missing.items())
        self.warn(f"Redis is back: {self.label} published again, every point of its scalar channels"
                  f"{'; ' + said if said else ''}")
        return True

    def seal(self, end_reason, last):
        """Seal the scan in Redis; if Redis is away, or the seal fails, look for it once more."""
        if self.offline and not self.retry():
            return False
        if self.call(self.publisher.seal, end_reason, last):
            return True
        return self.retry() and self.call(self.publisher.seal, end_reason)
