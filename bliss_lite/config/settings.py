"""Persistent settings: what must survive a restart (offsets, signs, user limits, positions).

BLISS keeps these in Redis; here they are small JSON files under the run directory, one per
object, replaced atomically so a crash never leaves half a file. Values that change at every
move (a mockup's position) can be written behind: `update_later` keeps them in memory, where
every store of this process sees them at once, and writes them within `WRITE_BEHIND_S` and at
exit, because a file replace costs ~0.25 ms here, more than a whole scan point.
"""
from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
from pathlib import Path

WRITE_BEHIND_S = 0.2
_pending = {}  # path -> data not yet on disk (shared by every store of this process)
_flush_timer = {"timer": None}
_lock = threading.Lock()


def flush_pending():
    """Write every value kept by `update_later` now."""
    with _lock:
        items = list(_pending.items())
        _pending.clear()
        _flush_timer["timer"] = None
    for path, data in items:
        _write(path, data)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


atexit.register(flush_pending)


class SettingsStore:
    """Key/value settings per (scope, object name), e.g. ("axis", "srot") -> {"offset": 1.0}."""

    def __init__(self, root):
        self.root = Path(root) / "settings"

    def _path(self, scope, name):
        return self.root / scope / f"{name}.json"

    def get(self, scope, name) -> dict:
        path = self._path(scope, name)
        pending = _pending.get(path)
        if pending is not None:
            return dict(pending)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, scope, name, **values):
        data = self.get(scope, name)
        data.update(values)
        path = self._path(scope, name)
        with _lock:
            _pending.pop(path, None)
        _write(path, data)

    def update_later(self, scope, name, **values):
        """Like `update`, written to disk within WRITE_BEHIND_S (seen by this process at once)."""
        data = self.get(scope, name)
        data.update(values)
        with _lock:
            _pending[self._path(scope, name)] = data
            if _flush_timer["timer"] is None:
                timer = _flush_timer["timer"] = threading.Timer(WRITE_BEHIND_S, flush_pending)
                timer.daemon = True
                timer.start()

    def clear(self, scope, name):
        with _lock:
            _pending.pop(self._path(scope, name), None)
        try:
            self._path(scope, name).unlink()
        except FileNotFoundError:
            pass
