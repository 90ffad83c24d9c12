"""Typed reading of one object's YAML keys, with errors that name file, line, object and key.

A factory declares the keys it understands as `Field`s; `read_fields` checks types, ranges,
required keys and unknown (mistyped) keys once, where the configuration enters.
"""
from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.tree import is_reference

REQUIRED = object()

# keys every object may carry, handled by the configuration itself
COMMON_KEYS = frozenset({"name", "class", "plugin", "module"})


@dataclass(frozen=True)
class Field:
    """One accepted key: its type ('number', 'int', 'str', 'bool', 'list', 'ref' ($name), 'any')."""

    key: str
    kind: str
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None


def positive(value):
    return None if value > 0 else "must be > 0"


def non_negative(value):
    return None if value >= 0 else "must be >= 0"


def non_zero(value):
    return None if value != 0 else "must not be 0"


def one_of(*choices):
    def check(value):
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"

    return check


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value):
    """True for a real number (int, float, numpy scalar) that converts to a finite float.

    bool is not a number here, and neither is an integer too large for a float.
    """
    if not _is_number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _convert(kind, value):
    """Return (converted value, complaint)."""
    if kind == "number":
        if is_finite_number(value):
            return float(value), None
        return None, "must be a finite number"
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
            return value, None
        return None, "must be a whole number"
    if kind == "str":
        return (value, None) if isinstance(value, str) else (None, "must be a string")
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if kind == "list":
        return (value, None) if isinstance(value, list) else (None, "must be a list")
    if kind == "ref":  # resolved to its object by the caller, who checks what kind of object it is
        if is_reference(value):
            return value, None
        return None, "must be a reference to an object ($name)"
    return value, None  # 'any' is checked by the caller


def describe(node):
    """How messages name an object: "axis 'srot'" style, from its class or role."""
    name = node.get("name")
    role = node.get("_role") or node.get("class")
    if not isinstance(role, str) or not role:
        role = "object"  # never a list or bytes dumped
    elif not role.isprintable():
        role = shown(role)
    return f"{role} '{name}'" if name is not None else role


def read_fields(node, fields, what=None, extra_keys=()):
    """Validate `node` against `fields`; return {key: value} with defaults filled in."""
    what = what or describe(node)
    known = {f.key for f in fields} | COMMON_KEYS | set(extra_keys)
    for key in node:
        if key not in known and not str(key).startswith("_"):
            hint = difflib.get_close_matches(str(key), sorted(known), n=1)
            tail = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{where(node, key)}: {what}: unknown key {shown(key)}{tail}")
    values = {}
    for field in fields:
        if field.key not in node or node[field.key] is None:
            if field.default is REQUIRED:
                raise ConfigError(f"{where(node)}: {what}: missing key '{field.key}'")
            values[field.key] = field.default
            continue
        raw = node[field.key]
        value, complaint = _convert(field.kind, raw)
        if complaint is None and field.check is not None:
            complaint = field.check(value)
        if complaint is not None:
            raise ConfigError(
                f"{where(node, field.key)}: {what}: {field.key} {complaint}, got {shown(raw)}"
            )
        values[field.key] = value
    return values
