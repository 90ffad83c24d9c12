"""Axis states as in BLISS: a set of flags, several of which may hold at once."""
from __future__ import annotations

STATES = {
    "READY": "Axis is READY",
    "MOVING": "Axis is MOVING",
    "LIMPOS": "Hardware high limit active",
    "LIMNEG": "Hardware low limit active",
    "FAULT": "Error from controller",
    "DISABLED": "Axis is disabled",
}


class AxisState(frozenset):
    """Immutable set of state names; `state.READY` is True when READY holds."""

    def __new__(cls, *names):
        for name in names:
            if name not in STATES:
                raise ValueError(f"unknown axis state '{name}' (known: {', '.join(STATES)})")
        return super().__new__(cls, names)

    def __getattr__(self, name):
        if name in STATES:
            return name in self
        raise AttributeError(name)

    def with_(self, *names):
        return AxisState(*(set(self) | set(names)))

    def without(self, *names):
        return AxisState(*(set(self) - set(names)))

    @property
    def names(self):
        return [name for name in STATES if name in self]

    def __str__(self):
        return " | ".join(self.names) or "UNKNOWN"

    def __repr__(self):
        return f"AxisState({', '.join(map(repr, self.names))})"

    def describe(self):
        return " | ".join(f"{n} ({STATES[n]})" for n in self.names) or "UNKNOWN"
