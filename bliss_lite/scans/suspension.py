"""A running scan's guard: where it may stop for its suspenders or a pause, and what it redoes.

The scan's masters ask the guard at their safe places: `before_point()` before a step
scan's point or a sweep line (it returns once nothing holds the scan: suspenders clear and
settled, not paused), then `after_point()` once it is done (False: a suspender tripped
during it, the point or line is redone). During a sweep, `tripped` is read at every trigger:
a watcher greenlet reads the suspenders every POLL_S and the Redis control key (`pause()` /
`resume()` from another process, data/scan_control.py) every CONTROL_POLL_S.

While suspended the motors hold and the detector waits: the guard only sleeps (gevent), so
Ctrl-C aborts at once. Every suspension or pause is kept as (start, end, reason) and goes to
the entry's `suspensions` group (data/writer.py).
"""
from __future__ import annotations

import logging
import time

import gevent

from bliss_lite.data import scan_control

POLL_S = 0.05
CONTROL_POLL_S = 0.2
CONTROL_AWAY_S = 2.0  # between two looks at the control key while Redis does not answer
PAUSE_REASON = "paused by request"

logger = logging.getLogger(__name__)


class ScanGuard:
    def __init__(self, suspenders=(), label="scan", client=None, key=None, on_change=None):
        self.suspenders = list(suspenders)
        self.label = label
        self.client, self.key = client, key  # Redis control, when the scan is published
        self.on_change = on_change  # called with each finished suspension (start, end, reason)
        self.suspensions = []  # (start epoch, end epoch or None, reason)
        self.suspended = None  # (reason, since epoch) while the scan waits
        self.tripped = None  # a suspender's reason seen by the watcher since the point began
        self.redone = 0  # points or lines measured again
        self.stage = None  # a step scan's StagedPoint while it has suspenders
        self._paused = False
        self._greenlet = None

    # -- hands on the scan -----------------------------------------------------------------------
    def pause(self):
        """Hold the scan at its next safe place (after the current point or sweep line)."""
        self._paused = True

    def resume(self):
        self._paused = False

    @property
    def paused(self):
        return self._paused

    # -- the watcher -----------------------------------------------------------------------------
    def start(self):
        if self.suspenders or self.client is not None:
            self._greenlet = gevent.spawn(self._watch)
        return self

    def stop(self):
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self.suspended is not None:  # aborted while suspended: the suspension ends now
            self._end(self.suspended[1], self.suspended[0])
        if self.client is not None and self.key is not None:
            scan_control.clear(self.client, self.key)

    def _watch(self):
        next_control = 0.0
        while True:
            if self.tripped is None and self.suspenders:
                try:
                    self.tripped = self._reason()
                except Exception as exc:  # noqa: BLE001 - a suspender that cannot be read: say it, hold
                    self.tripped = f"suspender unreadable: {exc}"
            if self.client is not None and time.monotonic() >= next_control:
                next_control = time.monotonic() + CONTROL_POLL_S
                try:
                    wanted = scan_control.read(self.client, self.key)
                except Exception:  # noqa: BLE001 - Redis away: ask it less often (the scan's link says so)
                    next_control = time.monotonic() + CONTROL_AWAY_S
                    wanted = None
                if wanted == scan_control.PAUSE:
                    self._paused = True
                elif wanted == scan_control.RESUME:
                    self._paused = False
            gevent.sleep(POLL_S)

    def _reason(self):
        for suspender in self.suspenders:
            reason = suspender.check()
            if reason is not None:
                return reason
        return None

    # -- the safe places -------------------------------------------------------------------------
    def before_point(self):
        """Return when the scan may take its next point or line (waits while suspended)."""
        reason = self.tripped or (self._reason() if self.suspenders else None)
        if reason is None and not self._paused:
            return
        self._wait(reason)

    def after_point(self):
        """True: the point or line just taken stands (a step scan's staged point goes on to the
        scan). False: a suspender tripped during it (or trips now): it is dropped, to be redone
        after the scan has waited."""
        reason = self.tripped or (self._reason() if self.suspenders else None)
        if reason is None:
            if self.stage is not None:
                self.stage.commit()
            return True
        if self.stage is not None:
            self.stage.discard()
        self.tripped = reason
        self.redone += 1
        return False

    def _wait(self, reason):
        since = time.time()
        reason = reason or PAUSE_REASON
        self.suspended = (reason, since)
        _say(f"{self.label}: suspended since {time.strftime('%H:%M:%S', time.localtime(since))}: {reason}"
             + (f"; waiting for {', '.join(s.waiting_for() for s in self.suspenders)}" if self.suspenders else ""))
        actions = [s for s in self.suspenders if s.pre_suspend is not None]
        for suspender in actions:
            suspender.pre_suspend()
        self._wait_clear()
        for suspender in self.suspenders:
            if suspender.pre_resume is not None:
                suspender.pre_resume()
        end = self._end(since, reason)
        _say(f"{self.label}: resumed after {end - since:.1f} s")

    def _wait_clear(self):
        """Until every suspender is clear for its settle time and nobody holds a pause."""
        settle = max((s.settle_s for s in self.suspenders), default=0.0)
        clear_since = None
        while True:
            clear = all(s.clear() for s in self.suspenders)
            moment = time.monotonic()
            if not clear:
                clear_since = None
            elif clear_since is None:
                clear_since = moment
            if clear and moment - clear_since >= settle and not self._paused:
                self.tripped = None
                return
            gevent.sleep(POLL_S)

    def _end(self, since, reason):
        end = time.time()
        self.suspended = None
        self.suspensions.append((since, end, reason))
        if self.on_change is not None:
            try:
                self.on_change(since, end, reason)
            except Exception as exc:  # noqa: BLE001 - kept in memory, written at the close
                logger.warning("%s: cannot record the suspension: %s", self.label, exc)
        return end


class StagedPoint:
    """A step scan's emits held until its point stands: `emit` collects, `commit` hands the
    whole point on, `discard` drops it (the point is redone)."""

    def __init__(self, emit):
        self._emit = emit
        self._values = {}

    def emit(self, values):
        self._values.update(values)

    def commit(self):
        values, self._values = self._values, {}
        if values:
            self._emit(values)

    def discard(self):
        self._values = {}


def _say(text):
    print(text, flush=True)
    logger.info(text)
