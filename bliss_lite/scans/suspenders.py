"""Suspenders: conditions under which a running scan waits, and what it does meanwhile.

`suspend_when(source, ...)` watches a counter, an axis or any callable:

- a floor: `below=10, resume_above=150` (the scan suspends under 10 and resumes only once the
  value is back above 150: no flapping on a refill); `above=`/`resume_below=` is the ceiling;
- a boolean: `equals=0` (a shutter's state counter reads 0 when closed);
- an axis state: `state="FAULT"` (or a list of states).

`settle_s`: once the condition has cleared, the value must stay clear that long before the
scan goes on (the whole settle starts again if it trips meanwhile). `pre_suspend` and
`pre_resume`: callables run once when the scan suspends and before it goes on (close and
open a shutter). Bluesky's SuspendFloor and SuspendBoolHigh are the model; not its resume
bugs: the scan goes on at the point (step scans) or the sweep line (continuous scans) that
was interrupted, never from the start, and every redone point is taken exactly once.

The session YAML's `suspenders:` (a list of mappings with `when: <object name>` and the same
keys) applies to every scan; a scan's `suspenders=[...]` replaces them (`[]`: none). Bad
entries are refused with the file and line when the session opens (`load_suspenders`).
"""
from __future__ import annotations

import numbers

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.fields import is_finite_number
from bliss_lite.protocols import Axis

KINDS = ("below", "above", "equals", "state")


class Suspender:
    """One condition. `check()` -> the reason to suspend now, or None; `clear()` -> True when
    the scan may go on (before the settle time)."""

    def __init__(self, source, *, below=None, resume_above=None, above=None, resume_below=None, equals=None,
                 state=None, settle_s=0.0, pre_suspend=None, pre_resume=None, name=None):
        given = [k for k, v in (("below", below), ("above", above), ("equals", equals), ("state", state))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"suspend_when: give one of below=, above=, equals=, state= (got "
                             f"{', '.join(given) or 'none'})")
        self.kind = given[0]
        self.source = source
        self.name = name or getattr(source, "name", None) or getattr(source, "__name__", repr(source))
        if self.kind in ("below", "above"):
            limit = below if self.kind == "below" else above
            resume = resume_above if self.kind == "below" else resume_below
            self.limit = _number("below" if self.kind == "below" else "above", limit)
            self.resume = self.limit if resume is None else _number(
                "resume_above" if self.kind == "below" else "resume_below", resume)
            if (self.kind == "below" and self.resume < self.limit) or (self.kind == "above" and self.resume > self.limit):
                raise ValueError(f"suspend_when: {self.name}: resume_{'above' if self.kind == 'below' else 'below'} "
                                 f"{self.resume:g} must be on the good side of {self.limit:g}")
        elif resume_above is not None or resume_below is not None:
            raise ValueError(f"suspend_when: {self.name}: resume_above/resume_below go with below=/above=")
        if self.kind == "equals":
            self.limit = equals
        if self.kind == "state":
            if not isinstance(source, Axis) and not hasattr(source, "state"):
                raise ValueError(f"suspend_when: {self.name}: state= needs an axis")
            states = [state] if isinstance(state, str) else list(state)
            if not states or not all(isinstance(s, str) for s in states):
                raise ValueError(f"suspend_when: {self.name}: state must be a state name or a list of them, "
                                 f"got {state!r}")
            self.limit = [s.upper() for s in states]
        self.settle_s = _number("settle_s", settle_s)
        if self.settle_s < 0:
            raise ValueError(f"suspend_when: {self.name}: settle_s must be >= 0, got {settle_s!r}")
        for key, action in (("pre_suspend", pre_suspend), ("pre_resume", pre_resume)):
            if action is not None and not callable(action):
                raise ValueError(f"suspend_when: {self.name}: {key} must be callable, got {action!r}")
        self.pre_suspend, self.pre_resume = pre_suspend, pre_resume
        if self.kind != "state" and not (callable(source) or hasattr(source, "read") or hasattr(source, "position")):
            raise ValueError(f"suspend_when: {source!r} is neither a counter, an axis nor a callable")

    def value(self):
        source = self.source
        if self.kind == "state":
            return str(source.state).upper()
        if hasattr(source, "read"):  # a sampling counter's value now; an integrating one's rate
            sampling = "sampling" in (getattr(source, "counter_kind", None), getattr(source, "kind", None))
            return source.read(0.0) if sampling else source.read(1.0)
        if hasattr(source, "position"):
            return source.position
        return source()

    def check(self):
        """The reason to suspend now, or None."""
        value = self.value()
        unit = getattr(self.source, "unit", "") or ""
        if self.kind == "below" and not value >= self.limit:
            return f"{self.name} {value:g} {unit} below {self.limit:g}".replace("  ", " ")
        if self.kind == "above" and not value <= self.limit:
            return f"{self.name} {value:g} {unit} above {self.limit:g}".replace("  ", " ")
        if self.kind == "equals" and value == self.limit:
            return f"{self.name} is {value!r}"
        if self.kind == "state" and any(s in value for s in self.limit):
            return f"{self.name} state {value}"
        return None

    def clear(self):
        """True when the condition allows going on (a floor: at or above resume_above)."""
        value = self.value()
        if self.kind == "below":
            return value >= self.resume
        if self.kind == "above":
            return value <= self.resume
        return self.check() is None

    def waiting_for(self):
        if self.kind == "below":
            return f"{self.name} >= {self.resume:g}"
        if self.kind == "above":
            return f"{self.name} <= {self.resume:g}"
        return f"{self.name} clear"

    def __repr__(self):
        return f"<Suspender {self.kind} {self.name} {self.limit!r}>"


def _number(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"suspend_when: {key} must be a number, got {value!r}")
    return float(value)


def suspend_when(source, below=None, resume_above=None, above=None, resume_below=None, equals=None, state=None,
                 settle_s=0.0, pre_suspend=None, pre_resume=None):
    """A suspender: `suspend_when(ring_current, below=10, resume_above=150, settle_s=60)`.
    Give it to a scan (`ascan(..., suspenders=[s])`) or to every scan of the session
    (`SUSPENDERS.append(s)` in the shell, `suspenders:` in the session YAML)."""
    return Suspender(source, below=below, resume_above=resume_above, above=above, resume_below=resume_below,
                     equals=equals, state=state, settle_s=settle_s, pre_suspend=pre_suspend, pre_resume=pre_resume)


def checked_suspenders(command, suspenders):
    """A scan's `suspenders=`: None (the session's), or a list of Suspenders ([] for none)."""
    if suspenders is None:
        return None
    if isinstance(suspenders, Suspender):
        suspenders = [suspenders]
    if not isinstance(suspenders, (list, tuple)) or not all(isinstance(s, Suspender) for s in suspenders):
        raise TypeError(f"{command}: suspenders must be a list of suspend_when(...) conditions ([] for none), "
                        f"got {suspenders!r}")
    return list(suspenders)


# -- the session YAML ---------------------------------------------------------------------------
YAML_KEYS = ("when", "below", "resume_above", "above", "resume_below", "equals", "state", "settle_s",
             "pre_suspend", "pre_resume")


def load_suspenders(session, namespace):
    """The session's `suspenders:` as Suspenders, or ConfigError naming the file and line.
    `when`: an object of the session; `pre_suspend`/`pre_resume`: a name in its namespace
    ("fshutter.close")."""
    items = getattr(session, "suspenders_config", None) or []
    made = []
    for number, item in enumerate(items, 1):
        at = where(item) if hasattr(item, "line") else f"session '{session.name}'"
        what = f"session '{session.name}': suspenders item {number}"
        if not isinstance(item, dict):
            raise ConfigError(f"{at}: {what} must be a mapping, got {shown(item)}")
        unknown = [k for k in item if k not in YAML_KEYS]
        if unknown:
            raise ConfigError(f"{where(item, unknown[0])}: {what}: unknown key {shown(unknown[0])} "
                              f"(known: {', '.join(YAML_KEYS)})")
        name = str(item.get("when", "")).lstrip("$")
        source = session.objects.get(name)
        if source is None:
            raise ConfigError(f"{where(item, 'when')}: {what}: when: {shown(item.get('when'))} is not an object of "
                              f"the session")
        for key in ("below", "resume_above", "above", "resume_below", "settle_s"):
            if key in item and not is_finite_number(item[key]):
                raise ConfigError(f"{where(item, key)}: {what}: {key} must be a number, got {shown(item[key])}")
        options = {k: v for k, v in item.items() if k != "when"}
        for key in ("pre_suspend", "pre_resume"):
            if key in options:
                options[key] = _action(options[key], namespace, f"{where(item, key)}: {what}: {key}")
        try:
            made.append(Suspender(source, name=name, **options))
        except (TypeError, ValueError) as exc:
            text = str(exc).removeprefix("suspend_when: ")
            key = next((k for k in YAML_KEYS if k in text and k in item), None)
            raise ConfigError(f"{where(item, key) if key else at}: {what}: {text}") from None
    return made


def _action(text, namespace, label):
    """A callable named by a dotted name in the session namespace ("fshutter.close")."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{label} must be the name of a function of the session, got {shown(text)}")
    head, *rest = text.split(".")
    obj = namespace.get(head)
    for part in rest:
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(f"{label}: {shown(text)} is not a function of the session")
    return obj
