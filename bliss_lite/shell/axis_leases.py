"""Axis leases for an opened session: moves and whole scans hold their axes in Redis.

Leases are taken only where a Redis is already there to hold them (BLISS_LITE_REDIS_URL, or
the run directory's server running): a shell alone on a laptop starts no server for them.
"""
from __future__ import annotations

import os

from bliss_lite.config.paths import run_dir
from bliss_lite.controllers import axis_lease
from bliss_lite.data.redis_server import REDIS_URL_ENV, ServerPaths


def _client_of(context):
    def client():
        if os.environ.get(REDIS_URL_ENV) or ServerPaths.of(run_dir()).socket.exists():
            return context.redis.client()
        return None
    return client


class ScanLease:
    """A scan's watcher: its axes stay leased from its start to its end, between points too."""

    def __init__(self, scan):
        self.scan, self.handle = scan, None

    def __enter__(self):
        names = [m.name for m in self.scan.motors]
        if names:
            self.handle = axis_lease.hold(names, f"scan {self.scan.number}")
        return self

    def __exit__(self, *exc):
        handle, self.handle = self.handle, None
        axis_lease.free(handle)
        return False


def install_leases(session_name, context, role="a shell"):
    """This process's moves lease their axes as `role` of session `session_name`."""
    axis_lease.install(axis_lease.LeaseService(session_name, _client_of(context), role))
    if ScanLease not in context.watchers:
        context.watchers.append(ScanLease)
