"""What a queue item may be, and how it is checked and run: never code from the network.

An item is a registered scan (checked by building it with run=False, exactly as the shell
would before moving anything), `mv`/`mvr` (axis/position pairs checked against the limits),
`sleep(seconds)`, or `script("name.py")`: a file of the server's scripts folder, run in the
session namespace like a setup file. Names in the arguments must be the session's objects.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from bliss_lite.config.fields import is_finite_number
from bliss_lite.controllers.motion import check_reachable
from bliss_lite.data.queue_items import ItemError, Ref, parse
from bliss_lite.shell import scan_commands, standard

SCANS = ("ct", "sct", "ascan", "a2scan", "anscan", "dscan", "d2scan", "dnscan", "amesh", "dmesh",
         "lookupscan", "pointscan", "timescan", "loopscan", "fscan", "xrdct", "resume_scan")
COMMANDS = ("mv", "mvr", "sleep", "script")
RESERVED = ("run", "hooks", "suspenders", "session")  # keywords the queue sets itself, or never
MAX_SLEEP_S = 24 * 3600


def registered():
    return SCANS + COMMANDS


def _resolve(value, objects, command):
    if isinstance(value, Ref):
        if value.name not in objects:
            close = ", ".join(sorted(n for n in objects if n.lower().startswith(value.name[:1].lower()))[:5])
            raise ItemError(f"{command}: '{value.name}' is not an object of the session"
                            + (f" (like: {close})" if close else ""))
        return objects[value.name]
    if isinstance(value, list):
        return [_resolve(v, objects, command) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, objects, command) for v in value)
    return value


def _sleep(seconds):
    if not is_finite_number(seconds) or not 0 <= seconds <= MAX_SLEEP_S:
        raise ItemError(f"sleep: seconds must be a number from 0 to {MAX_SLEEP_S}, got {seconds!r}")
    time.sleep(seconds)


def _script_path(name, folder):
    if not isinstance(name, str) or not name.endswith(".py") or Path(name).name != name or name.startswith("."):
        raise ItemError(f"script: give the file name of a script of the queue's folder, e.g. 'align.py', got {name!r}")
    if folder is None:
        raise ItemError("script: this queue server has no scripts folder (bliss-lite queue --scripts DIR)")
    path = Path(folder) / name
    if not path.exists():
        raise ItemError(f"script: no {name} in {folder}")
    return _checked_script(path)


def _checked_script(path, read=False):
    """`path` (its text if `read`) once it is a regular file of bounded size: a FIFO would
    block the server, /dev/zero or a huge file fill its memory."""
    from bliss_lite.config.file_checks import FileCheckError, checked_file, read_checked

    try:
        return read_checked(path, "script").decode("utf-8") if read else checked_file(path, "script")
    except FileCheckError as exc:
        raise ItemError(f"script: {path}: {exc.reason}") from None
    except UnicodeDecodeError:
        raise ItemError(f"script: {path}: not UTF-8 text") from None


class Prepared:
    """A checked item: `text` (canonical), `kind` and `run()` in the session."""

    def __init__(self, text, kind, run):
        self.text, self.kind, self.run = text, kind, run


def prepare(text, namespace, objects, scripts=None, check=True):
    """The Prepared item of `text`; ItemError (or the scan's own TypeError/ValueError) saying
    what is wrong. `check`: build scans with run=False and check moves now (when queued)."""
    call = parse(text)
    name = call.name
    if name not in registered():
        raise ItemError(f"'{name}' cannot be queued (queueable: {', '.join(registered())})")
    reserved = [k for k, _ in call.kwargs if k in RESERVED]
    if reserved:
        raise ItemError(f"{name}: the queue does not take {', '.join(reserved)}=")
    args = [_resolve(a, objects, name) for a in call.args]
    kwargs = {k: _resolve(v, objects, name) for k, v in call.kwargs}
    if name in SCANS:
        function = getattr(scan_commands, name)
        if check:
            function(*args, run=False, **kwargs)  # every check the scan makes before it moves
        return Prepared(call.text, "scan", lambda: function(*args, **kwargs))
    if kwargs:
        raise ItemError(f"{name}: takes no keywords")
    if name in ("mv", "mvr"):
        pairs = standard._pairs(name, args)
        if check:
            for axis, value in pairs:
                check_reachable(axis, axis.position + value if name == "mvr" else value)
        return Prepared(call.text, "command", lambda: getattr(standard, name)(*args))
    if name == "sleep":
        if len(args) != 1 or not is_finite_number(args[0]) or not 0 <= args[0] <= MAX_SLEEP_S \
                or math.isnan(args[0]):
            raise ItemError(f"sleep: give seconds from 0 to {MAX_SLEEP_S}, e.g. sleep(10)")
        return Prepared(call.text, "command", lambda: _sleep(args[0]))
    if len(args) != 1:
        raise ItemError("script: give one file name, e.g. script('align.py')")
    path = _script_path(args[0], scripts)

    def run_script():
        code = compile(_checked_script(path, read=True), str(path), "exec")  # checked again: it may have changed
        exec(code, namespace)  # noqa: S102 - a file of the configured folder, as a setup file
    return Prepared(call.text, "script", run_script)
