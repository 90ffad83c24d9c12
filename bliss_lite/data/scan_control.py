"""Asking a running scan to pause or resume through Redis (a queue server, a web page, a
second shell): the scan's guard (scans/suspension.py) reads `model.control_key(scan key)`
every ~0.2 s and holds at its next safe place. redis-py only: no gevent, no scan objects."""
from __future__ import annotations

from bliss_lite.data.model import CONTROL_TTL_S, control_key

PAUSE = "pause"
RESUME = "resume"


def request(client, key, what):
    """Ask the scan of Redis key `key` to "pause" or "resume"."""
    if what not in (PAUSE, RESUME):
        raise ValueError(f"scan control: ask for {PAUSE!r} or {RESUME!r}, got {what!r}")
    client.set(control_key(key), what, ex=CONTROL_TTL_S)


def read(client, key):
    """"pause", "resume" or None (nothing asked); a Redis error is raised."""
    value = client.get(control_key(key))
    return value.decode() if isinstance(value, bytes) else value


def requested(client, key):
    """As `read`, a Redis error reading as None (the scan goes on as it is)."""
    try:
        return read(client, key)
    except Exception:  # noqa: BLE001 - Redis away: nobody can ask anything meanwhile
        return None


def clear(client, key):
    try:
        client.delete(control_key(key))
    except Exception:  # noqa: BLE001 - expires on its own
        pass
