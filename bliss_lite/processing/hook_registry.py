"""The registry of scan hooks: the name a session or a scan call uses -> the factory of the hook.

A hook is a bliss_lite.protocols.ScanHook: `scan_started(scan)` (outputs open, Redis record
created, before the first trigger) and `scan_finished(scan)` (entry closed, Redis scan sealed,
axes back). The shipped ones (`integration`, `reconstruction`) register here as they are
imported; users register their own the same way:

    @register_hook("my_roi_sum")
    def make(options, context):       # options: the dict from the YAML or the scan call
        return MyHook(**options)

bliss_lite.processing.hooks turns a scan's `hooks=` (or the session's `processing`) into hooks.
"""
from __future__ import annotations

import logging

HOOK_FACTORIES = {}


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


def warn(text):
    """A hook's warning for the user: plain text on stderr (bliss_lite.config.logs), and in the log."""
    logging.getLogger("bliss_lite.processing.hooks").warning(text)
