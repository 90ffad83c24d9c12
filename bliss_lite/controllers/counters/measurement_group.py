"""Measurement groups: named sets of counters, one of them active (what `ct`/scans count)."""
from __future__ import annotations

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, read_fields
from bliss_lite.config.session import current_session


def active_mg():
    """The measurement group that `ct` and scans count when given no counters: the current
    session's (each session keeps its own)."""
    session = current_session()
    return session.active_mg if session is not None else None


class MeasurementGroup:
    def __init__(self, name, counters, settings=None):
        self.name = name
        self._settings = settings
        self._counters = {c.name: c for c in counters}
        self._disabled = set()

    @property
    def counters(self):
        """The enabled counters, in configuration order."""
        return [c for n, c in self._counters.items() if n not in self._disabled]

    @property
    def available(self):
        return list(self._counters.values())

    def _names(self, counters):
        names = [getattr(c, "name", c) for c in counters]
        unknown = [n for n in names if n not in self._counters]
        if unknown:
            raise ValueError(f"{self.name}: no counter {', '.join(map(str, unknown))} in this group")
        return names

    def disable(self, *counters):
        self._disabled.update(self._names(counters))

    def enable(self, *counters):
        self._disabled.difference_update(self._names(counters) if counters else list(self._disabled))

    def set_active(self):
        """Make this the active group of the current session, which remembers the choice."""
        session = current_session()
        if session is None:
            raise RuntimeError(f"{self.name}: no session is open: a measurement group is active in a session")
        session.active_mg = self
        if self._settings is not None:
            self._settings.update("session", session.name, active_mg=self.name)

    @property
    def is_active(self):
        return active_mg() is self

    def __info__(self):
        enabled = [c.name for c in self.counters]
        disabled = sorted(self._disabled)
        width = max([len("Enabled")] + [len(n) for n in enabled])
        rows = [f"MeasurementGroup: {self.name}{' (active)' if self.is_active else ''}", "",
                f"  {'Enabled':<{width}}  Disabled", f"  {'-' * width}  --------"]
        for i in range(max(len(enabled), len(disabled))):
            left = enabled[i] if i < len(enabled) else ""
            right = disabled[i] if i < len(disabled) else ""
            rows.append(f"  {left:<{width}}  {right}".rstrip())
        return "\n".join(rows)

    def __repr__(self):
        return f"<MeasurementGroup {self.name}: {', '.join(c.name for c in self.counters)}>"


def create(name, node, config):
    values = read_fields(node, (Field("counters", "list"),), f"measurement group '{name}'")
    counters = []
    for item in values["counters"]:
        counter = config.resolve(item)
        if not hasattr(counter, "read"):
            raise ConfigError(f"{where(node, 'counters')}: measurement group '{name}': {item!r} is not a counter")
        counters.append(counter)
    return MeasurementGroup(name, counters, config.settings)
