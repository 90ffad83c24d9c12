"""Short errors, as BLISS shows them: the exception's message on one line, the whole traceback
kept for `last_error()`.

A refused move is one line a user reads ("LimitError: m0: target 150 beyond high limit 100"),
not 20 lines of internals. The traceback stays available: `last_error()` prints it in the same
process, and it is also written to `<run dir>/errors/<session>.txt`, so after a failed `-c` or
script `bliss-lite -s SESSION -c "last_error()"` shows it too. A NameError names the close
names of the namespace (difflib), as a typo is the usual cause.
"""
from __future__ import annotations

import builtins
import difflib
import os
import sys
import traceback

from bliss_lite.config.paths import run_dir

RED, RESET = "\x1b[31m", "\x1b[0m"


class ErrorLog:
    """The last error of a session and its whole traceback; calling it (`last_error()` in the
    session) prints the traceback."""

    def __init__(self, session_name):
        self.session_name = session_name
        self.text = None  # the formatted traceback of the last error, in this process

    @property
    def path(self):
        return run_dir() / "errors" / f"{self.session_name}.txt"

    def record(self, exc):
        """Keep the traceback (memory and file: the file is best effort)."""
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self.text, encoding="utf-8")
        except OSError:
            pass

    def __call__(self):
        self.last_error()

    def __repr__(self):
        return "<last_error(): the traceback of the session's last error>"

    def last_error(self):
        """Print the whole traceback of the session's last error (this process's, else the one
        the last `-c` or script of the session left)."""
        text = self.text
        if text is None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except OSError:
                text = None
        print(text.rstrip("\n") if text else "last_error: no error yet in this session")


def close_names(name, namespace):
    """Names of the namespace (and builtins) that look like `name`, closest first."""
    known = [n for n in list(namespace) + dir(builtins) if not n.startswith("__")]
    return difflib.get_close_matches(name, known, n=3, cutoff=0.6)


def short_message(exc, namespace=(), source=None):
    """'Type: message' on one line; `source` (a file name) adds the line of that file where it
    happened; a NameError gets the close names."""
    message = str(exc).replace("\n", " ").strip()
    if isinstance(exc, NameError) and getattr(exc, "name", None):
        close = close_names(exc.name, namespace)
        if close:
            message = f"{message}. Did you mean: {', '.join(close)}?"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if source is not None:
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == source]
        if lines:
            text = f"{os.path.basename(source)}, line {lines[-1]}: {text}"
    return text


def colour_ok(stream):
    """Colour only on a terminal that is not dumb, unless NO_COLOR is set."""
    return (getattr(stream, "isatty", lambda: False)() and os.environ.get("TERM", "") not in ("", "dumb")
            and "NO_COLOR" not in os.environ)


def show(text, stream=None, colour=None):
    """Write one error line, red where the terminal has colour."""
    stream = stream or sys.stderr
    colour = colour_ok(stream) if colour is None else colour
    stream.write(f"{RED}{text}{RESET}\n" if colour else f"{text}\n")
    stream.flush()
