"""Scan hooks for one scan: processing that follows it while it runs and finishes after it.

The session enables hooks for its XRD-CT scans in YAML (`processing: {integration: {...},
reconstruction: {...}}`); a scan call overrides with `hooks=` (a list of names, a dict of
name -> options, hook objects, or [] for none). Options are checked when the hooks are made,
before anything moves. The scan layer does not import this module: whoever opens the session
hands `make_hooks` to its ScanContext (bliss_lite.shell.runner.open_session does).
Hooks register in bliss_lite.processing.hook_registry; the shipped ones are imported here.
"""
from __future__ import annotations

from bliss_lite.processing import integration_hook, pdf_scan, reconstruction_hook  # noqa: F401 - they register
from bliss_lite.processing.hook_registry import HOOK_FACTORIES, ScanHook, register_hook  # noqa: F401 - the API
from bliss_lite.protocols import ScanHook as ScanHookProtocol

ORDER = ("integration", "reconstruction", "pdf")  # each reads what the one before made
REQUIRES = {"reconstruction": "integration", "pdf": "reconstruction"}


def make_hooks(command, spec, session=None, context=None):
    """The hook objects for one scan. `spec`: None (the session's `processing`), a list of
    names or hook objects, a dict {name: options}, or [] / False for none."""
    session_options = dict(session.processing_config or {}) if session is not None else {}
    if spec is None:
        spec = session_options
    if spec is False:
        spec = {}
    if isinstance(spec, (list, tuple)):
        objects = [h for h in spec if not isinstance(h, str)]
        for hook in objects:
            if not isinstance(hook, ScanHookProtocol):
                raise ValueError(f"{command}: hook {hook!r} has no scan_started/scan_finished")
        spec = {name: session_options.get(name) or {} for name in spec if isinstance(name, str)}
    else:
        objects = []
    if not isinstance(spec, dict):
        raise ValueError(f"{command}: hooks must be a list of names, a dict of name -> options, or [], got {spec!r}")
    spec = dict(spec)
    for name, needed in reversed(list(REQUIRES.items())):  # pdf needs reconstruction, which needs integration
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
    by_name = {getattr(hook, "name", None): hook for hook in hooks}
    for hook in hooks:  # what one hook needs of another's settings, checked before the scan starts
        check = getattr(hook, "check_with", None)
        if check is not None:
            try:
                check(by_name)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{command}: hook {hook.name}: {exc}") from None
    return hooks + objects
