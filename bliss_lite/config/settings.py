"""Persistent settings: what must survive a restart (offsets, signs, user limits, positions).

BLISS keeps these in Redis; here they are small JSON files under the run directory, one per
object, replaced atomically so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class SettingsStore:
    """Key/value settings per (scope, object name), e.g. ("axis", "srot") -> {"offset": 1.0}."""

    def __init__(self, root):
        self.root = Path(root) / "settings"

    def _path(self, scope, name):
        return self.root / scope / f"{name}.json"

    def get(self, scope, name) -> dict:
        try:
            with open(self._path(scope, name), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, scope, name, **values):
        data = self.get(scope, name)
        data.update(values)
        path = self._path(scope, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)

    def clear(self, scope, name):
        try:
            self._path(scope, name).unlink()
        except FileNotFoundError:
            pass
