"""Axis leases of this process: taken before an axis moves, renewed while it does.

Whoever opens a session installs a LeaseService (shell/runner.py); without one (library use,
unit tests) moves take no lease. A scan holds its axes from its first point to its end
(nested holds are counted), so another process cannot slip a move in between two points.
The leases themselves live in Redis (data/axis_locks.py) and expire if this process dies.
"""
from __future__ import annotations

import logging
import os
import socket

import gevent

from bliss_lite.controllers.errors import AxisError
from bliss_lite.data import axis_locks

logger = logging.getLogger(__name__)
_installed = {"service": None}


class AxisLocked(AxisError):
    """Another process of the session moves the axis; the message names it."""


class LeaseService:
    def __init__(self, session, client_factory, role="a shell"):
        self.session = session
        self.client_factory = client_factory  # () -> redis client, or None: no leases (no Redis)
        self.role = role  # "the queue server", "a shell": how others see this process
        self.counts = {}  # axis name -> holds in this process
        self.values = {}  # axis name -> the value its lease was set with
        self._renewer = None

    def _client(self):
        try:
            return self.client_factory()
        except Exception as exc:  # noqa: BLE001 - no Redis: the axis still moves (said once per move)
            logger.warning(f"axis leases: no Redis ({exc}); moving without a lease")
            return None

    def hold(self, names, what):
        """Lease the axes `names` for `what` ("move", "scan 12"); AxisLocked if another holds one.

        When Redis cannot be reached, or fails while the leases are taken, the axes move without
        a lease (a warning is logged) instead of being refused. This is deliberate: a lease only
        keeps the processes of one session from moving the same axis at once, and Redis is a
        shared service, not part of the motion. If moves failed whenever Redis was down, no
        shell could move an axis out of the beam or finish an alignment until Redis came back.
        The risk, accepted and logged, is that during an outage two processes may both move an
        axis unleased. docs/queue.md says the same."""
        names = list(dict.fromkeys(names))
        new = [n for n in names if n not in self.counts]
        client = self._client() if new else None
        if client is not None:
            value = f"{self.role}'s {what} on {socket.gethostname()}:{os.getpid()}"
            try:
                ok, refused = axis_locks.acquire(client, self.session, new, value)
                while not ok and self._gone(refused[1]) and \
                        axis_locks.take_over(client, self.session, refused[0], refused[1], value):
                    ok, refused = axis_locks.acquire(client, self.session, new, value)
            except Exception as exc:  # noqa: BLE001 - Redis went away: move unleased rather than not at all
                logger.warning(f"axis leases: Redis failed ({exc}); moving without a lease")
                ok, refused, client = True, None, None
            if not ok:
                raise AxisLocked(f"{refused[0]} is moving in {refused[1]}")
            if client is not None:
                self.values.update({n: value for n in new})
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1
        if self.values and (self._renewer is None or self._renewer.dead):
            self._renewer = gevent.spawn(self._renew)
        return names

    @staticmethod
    def _gone(holder):
        """True for a lease of a dead process of this host, or of this very process (a session
        opened again): no need to wait for it to expire."""
        host, _, pid = holder.rpartition(" on ")[2].rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def free(self, names):
        done = []
        for name in names:
            self.counts[name] = self.counts.get(name, 1) - 1
            if self.counts[name] <= 0:
                self.counts.pop(name)
                if name in self.values:
                    done.append((name, self.values.pop(name)))
        if done:
            client = self._client()
            try:
                for name, value in done:
                    axis_locks.release(client, self.session, [name], value)
            except Exception as exc:  # noqa: BLE001 - the lease expires on its own
                logger.warning(f"axis leases: could not release {[n for n, _ in done]}: {exc}")

    def _renew(self):
        while self.values:
            gevent.sleep(axis_locks.RENEW_S)
            client = self._client()
            for name, value in list(self.values.items()):
                if self.values.get(name) != value:
                    continue  # freed (or held anew) while an earlier renewal waited on Redis
                try:
                    lost = axis_locks.renew(client, self.session, [name], value)
                    if self.values.get(name) != value:  # freed while the renewal waited on Redis:
                        axis_locks.release(client, self.session, [name], value)  # not taken back
                    elif lost:
                        logger.warning(f"axis leases: the lease of {name} was lost while moving it")
                except Exception as exc:  # noqa: BLE001 - tried again at the next turn
                    logger.warning(f"axis leases: renewing {name} failed: {exc}")


def install(service):
    """Make `service` this process's (None: no leases); returns the one it replaces."""
    previous, _installed["service"] = _installed["service"], service
    return previous


def installed():
    return _installed["service"]


def hold(names, what="move"):
    """Lease the axes while they move; the handle to give to `free` (None: no service)."""
    service = _installed["service"]
    return None if service is None else (service, service.hold(names, what))


def free(handle):
    if handle is not None:
        handle[0].free(handle[1])
