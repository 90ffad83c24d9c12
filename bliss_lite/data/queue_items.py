"""Queue items as text: `ascan(m0, 0, 1, 10, 0.1)` parsed without ever evaluating it.

Text comes from the network (HTTP, Redis), so it is read with `ast` and only a call of a
plain name is accepted, whose arguments are literals (numbers, strings, True/False/None,
lists and tuples of them) or bare names, kept as `Ref`s for the queue server to look up
among the session's objects. Anything else (attributes, calls inside, operators, `*args`)
is refused with the reason. Pure Python: no gevent, no session.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

MAX_TEXT = 4000  # characters: a command line, never a program


class ItemError(ValueError):
    """The text is not a queueable call; the message says why."""


@dataclass(frozen=True)
class Ref:
    """A bare name in an item: a session object, looked up when validated and when run."""

    name: str

    def __repr__(self):
        return self.name


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple
    kwargs: tuple  # ((keyword, value), ...) in the order given

    @property
    def text(self):
        """The canonical text: what is stored, listed and parsed again when it runs."""
        parts = [_show(a) for a in self.args] + [f"{k}={_show(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})"

    def refs(self):
        """Names of every Ref in the arguments."""
        found = []
        for value in [*self.args, *(v for _, v in self.kwargs)]:
            _collect(value, found)
        return found


def _show(value):
    if isinstance(value, tuple):
        inner = ", ".join(_show(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _collect(value, found):
    if isinstance(value, Ref):
        found.append(value.name)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, found)


def _value(node, where):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Name):
        return Ref(node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_value(n, where) for n in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    raise ItemError(f"{where}: only numbers, strings, True/False/None, lists, tuples and names of "
                    f"session objects are allowed, not {ast.unparse(node)!r}")


def parse(text) -> Call:
    """The Call of `text` (e.g. "ascan(m0, 0, 1, 10, 0.1)"); ItemError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ItemError("give a command such as 'ascan(m0, 0, 1, 10, 0.1)'")
    if len(text) > MAX_TEXT:
        raise ItemError(f"a queue item is at most {MAX_TEXT} characters, got {len(text)}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ItemError(f"not a command: {exc.msg}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ItemError("a queue item is one call of a command by its name, e.g. 'ct(0.1)'")
    name = call.func.id
    args = []
    for node in call.args:
        if isinstance(node, ast.Starred):
            raise ItemError(f"{name}: *arguments are not allowed")
        args.append(_value(node, name))
    kwargs = []
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ItemError(f"{name}: **arguments are not allowed")
        kwargs.append((keyword.arg, _value(keyword.value, f"{name}({keyword.arg}=...)")))
    return Call(name, tuple(args), tuple(kwargs))
