"""Scan hooks: processing that follows a scan while it runs and finishes after it.

A hook is any object with `scan_started(scan)` (outputs open, Redis record created, before the
first trigger) and `scan_finished(scan)` (entry closed, Redis scan sealed, axes back). The
shipped ones are `integration` and `reconstruction`; users register their own the same way:

    @register_hook("my_roi_sum")
    def make(options, context):       # options: the dict from the YAML or the scan call
        return MyHook(**options)

The session enables hooks for its XRD-CT scans in YAML (`processing: {integration: {...},
reconstruction: {...}}`); a scan call overrides with `hooks=` (a list of names, a dict of
name -> options, hook objects, or [] for none). Options are checked when the hooks are made,
before anything moves.
"""
from __future__ import annotations

import sys

HOOK_FACTORIES = {}
ORDER = ("integration", "reconstruction")  # reconstruction reads the integration's patterns
REQUIRES = {"reconstruction": "integration"}


class ScanHook:
    """Base class with the two calls; `name` is how other hooks find it (`scan.hook(name)`)."""

    name = None

    def scan_started(self, scan):
        pass

    def scan_finished(self, scan):
        pass


def register_hook(name, factory=None):
    """Register factory(options: dict, context: dict) -> hook under `name` (decorator or call)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"hook name must be an identifier, got {name!r}")

    def add(f):
        HOOK_FACTORIES[name] = f
        return f

    return add(factory) if factory is not None else add


def _shipped():
    from bliss_lite.processing import integration_hook, reconstruction_hook  # noqa: F401 - they register


def make_hooks(command, spec, session=None, context=None):
    """The hook objects for one scan. `spec`: None (the session's `processing`), a list of
    names or hook objects, a dict {name: options}, or [] / False for none."""
    _shipped()
    session_options = dict(getattr(session, "processing_config", None) or {})
    if spec is None:
        spec = session_options
    if spec is False:
        spec = {}
    if isinstance(spec, (list, tuple)):
        objects = [h for h in spec if not isinstance(h, str)]
        for hook in objects:
            if not callable(getattr(hook, "scan_started", None)) or not callable(getattr(hook, "scan_finished", None)):
                raise ValueError(f"{command}: hook {hook!r} has no scan_started/scan_finished")
        spec = {name: session_options.get(name) or {} for name in spec if isinstance(name, str)}
    else:
        objects = []
    if not isinstance(spec, dict):
        raise ValueError(f"{command}: hooks must be a list of names, a dict of name -> options, or [], got {spec!r}")
    spec = dict(spec)
    for name, needed in REQUIRES.items():
        if name in spec and needed not in spec:
            spec[needed] = session_options.get(needed) or {}
    unknown = [n for n in spec if n not in HOOK_FACTORIES]
    if unknown:
        raise ValueError(f"{command}: unknown hook(s) {', '.join(map(repr, unknown))}; "
                         f"registered: {', '.join(sorted(HOOK_FACTORIES))}")
    names = sorted(spec, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    hooks = []
    for name in names:
        options = spec[name] if spec[name] is not None else {}
        if not isinstance(options, dict):
            raise ValueError(f"{command}: hook {name}: options must be a mapping, got {options!r}")
        try:
            hooks.append(HOOK_FACTORIES[name](dict(options), dict(context or {})))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{command}: hook {name}: {exc}") from None
    return hooks + objects


def warn(text):
    print(text, file=sys.stderr, flush=True)
