"""What the scans of one session share: its Redis connection, where it saves, its scan history,
the plot selection, the watchers around each scan (the shell's display) and the factory of its
processing hooks.

Whoever opens a session makes its ScanContext (bliss_lite.shell.runner.open_session, which
also hands it the processing layer's `make_hooks`, so the scan layer never imports
processing); `Session.close()` closes it. Scans, peak tools and hooks find it through their
session, so two sessions in one process (tests) share nothing but the current-session pointer.
"""
from __future__ import annotations

from bliss_lite.config.session import current_session
from bliss_lite.scans.history import ScanHistory
from bliss_lite.scans.limits import ScanLimits
from bliss_lite.scans.redis_link import ScanRedis
from bliss_lite.scans.saving import ScanSaving, session_scan_saving

HISTORY = 20  # scans kept in SCANS, newest last


class ScanContext:
    def __init__(self, session=None, make_hooks=None):
        self.session = session
        self.redis = ScanRedis()
        self.scans = ScanHistory(maxlen=HISTORY)  # SCANS in the shell
        self.watchers = []  # callables scan -> context manager around the scan's run
        self.plot_selection = []  # counter names chosen by plotselect; the peak tools use the first
        self.make_hooks = make_hooks  # (command, spec, session, context) -> hooks; None: no processing
        self.scan_saving = session_scan_saving(session) if session is not None else ScanSaving("default")
        self.limits = ScanLimits.from_config(session.scan_limits_config if session is not None else {})
        self.suspenders = []  # every scan's, unless it gives its own (SUSPENDERS in the shell)
        self._closers = []

    def load_suspenders(self, namespace):
        """The session YAML's `suspenders:`, once its objects exist (ConfigError: file and line)."""
        from bliss_lite.scans.suspenders import load_suspenders

        if self.session is not None:
            self.suspenders[:] = load_suspenders(self.session, namespace)
        return self.suspenders

    def selected_counter(self):
        return self.plot_selection[0] if self.plot_selection else None

    def saving(self):
        """Where this session's scans are saved (SCAN_SAVING in the shell)."""
        return self.scan_saving

    def on_close(self, call):
        """Run `call()` when the session closes (workers a hook started, say), once."""
        if call not in self._closers:
            self._closers.append(call)

    def close(self):
        """Run what was registered with on_close, newest first, then drop the Redis client."""
        errors = []
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as exc:  # noqa: BLE001 - the others still run
                errors.append(exc)
        self.redis.forget()
        if errors:
            raise errors[0]


def context_of(session):
    """The session's ScanContext (one is made on first need for a session opened without one);
    a fresh, unshared one when there is no session (library use: no history, no hooks)."""
    if session is None:
        return ScanContext()
    if session.scan_context is None:
        session.scan_context = ScanContext(session)
    return session.scan_context


def current_context():
    return context_of(current_session())
