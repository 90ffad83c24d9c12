"""Leases on axes in Redis, so two processes of a session never move one axis at once.

A lease is `SET key holder NX PX ttl`: whoever set it moves the axis and renews it while
the motion lasts; a holder that dies stops renewing and the lease expires after `ttl`, so a
crash never leaves an axis locked. Renewal and release check the holder first (one Lua
script each, sent by hash after the first time: redis-py's register_script), so a process never extends nor frees a lease that expired and went to another.
redis-py only.
"""
from __future__ import annotations

from bliss_lite.data.model import axis_lock_key

TTL_MS = 5000  # a dead holder's axes are free after this (at once on its own host: controllers/axis_lease.py)
RENEW_S = 1.0  # a living holder renews this often

_RENEW = ("local held = redis.call('get', KEYS[1]) "
          "if held == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
          "if not held then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end return 0")
_TAKE = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
         "end return false")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def acquire(client, session, axes, holder, ttl_ms=TTL_MS):
    """Lease every axis name in `axes` for `holder`, all or none: (True, None) or (False,
    (axis, who holds it)). An axis this holder already leases counts as leased."""
    taken = []
    for axis in axes:
        key = axis_lock_key(session, axis)
        if client.set(key, holder, nx=True, px=ttl_ms) or _text(client.get(key)) == holder:
            taken.append(axis)
            continue
        current = _text(client.get(key))
        release(client, session, taken, holder)
        return False, (axis, current or "another process (its lease just ended: try again)")
    return True, None


def take_over(client, session, axis, old, holder, ttl_ms=TTL_MS):
    """Replace the lease `old` (a holder known dead) by `holder`; False if it changed meanwhile."""
    return bool(client.register_script(_TAKE)(keys=[axis_lock_key(session, axis)], args=[old, holder, ttl_ms]))


def renew(client, session, axes, holder, ttl_ms=TTL_MS):
    """Extend the leases still held, and take again those that expired while nobody took them
    (this process was too busy to renew in time: the axis was never another's). The names of
    those lost to another holder are returned."""
    lost = []
    for axis in axes:
        if not client.register_script(_RENEW)(keys=[axis_lock_key(session, axis)], args=[holder, ttl_ms]):
            lost.append(axis)
    return lost


def release(client, session, axes, holder):
    for axis in axes:
        client.register_script(_RELEASE)(keys=[axis_lock_key(session, axis)], args=[holder])


def holder_of(client, session, axis):
    """Who leases the axis now, or None."""
    return _text(client.get(axis_lock_key(session, axis)))
