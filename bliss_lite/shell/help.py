"""`help(...)` and `name?` in the shell: a command's signature and docstring, on the screen.

Python's own help() pages through `less` and shows a class's internals; a user asking about
`ascan` wants its arguments, their units and an example. Objects with a summary (`__info__`:
axes, counters, groups) show it, followed by what their class is for.
"""
from __future__ import annotations

import inspect
import pydoc
import re

# `ascan?`, `m0.velocity??`: IPython's way of asking, which the shell turns into help(...)
QUESTION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\?\??\s*$")


def question(text):
    """`help(name)` when the line asks `name?`, else None."""
    match = QUESTION.match(text)
    return f"help({match.group(1)})" if match else None


def describe(obj):
    """Signature and docstring of a function; summary and class docstring of an object."""
    if callable(obj) and not isinstance(obj, type):
        name = getattr(obj, "__name__", type(obj).__name__)
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = "(...)"
        return f"{name}{signature}\n\n{inspect.getdoc(obj) or '(no description)'}"
    info = getattr(obj, "__info__", None)
    if callable(info) and not isinstance(obj, type):
        doc = inspect.getdoc(type(obj))
        return info() + (f"\n\n{type(obj).__name__}: {doc}" if doc else "")
    return pydoc.render_doc(obj, title="%s", renderer=pydoc.plaintext)


def session_help(namespace):
    """The session's `help`: bound to its namespace."""

    def help(obj=None):  # noqa: A001 - the shell's help, by its usual name
        """help(obj): the signature and description of a command, or an object's summary.
        help() lists the session's commands. `obj?` at the prompt does the same."""
        _show_help(namespace, obj)

    return help


def _show_help(namespace, obj):
    if obj is not None:
        print(describe(obj))
        return
    rows = []
    for name, value in sorted(namespace.items()):
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        doc = (inspect.getdoc(value) or "").splitlines()
        rows.append(f"  {name:<14} {doc[0] if doc else ''}")
    print("Commands (help(name) or name? for one):\n" + "\n".join(rows))
