"""Safe YAML loading that remembers where every mapping and key came from.

Errors must name the file and the line; PyYAML drops the marks after construction, so the
mappings it builds here are `ConfigNode` dicts carrying `filename`, `line` and `key_lines`.
Only the safe constructors run: no YAML tag can build an arbitrary Python object. The node
graph is measured before anything is built, so aliases that expand exponentially ("billion
laughs") or nesting deep enough to exhaust Python's stack are refused with file and line.
Floats are read as YAML 1.2 reads them: `1e-3` is a number, not the string '1e-3'.
"""
from __future__ import annotations

import os
import re

import yaml

from bliss_lite.config.errors import ConfigError, shown
from bliss_lite.config.file_checks import FileCheckError, read_checked

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 50  # levels of nested lists/mappings; a beamline configuration needs a handful
MAX_VALUES = 1_000_000  # values once aliases are expanded

# YAML 1.2 floats that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot or sign
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class ConfigNode(dict):
    """A YAML mapping with its origin: `filename`, 1-based `line`, and `key_lines[key]`."""

    filename: str = "<config>"
    line: int | None = None

    def __init__(self, *args, filename="<config>", line=None, key_lines=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filename = filename
        self.line = line
        self.key_lines = dict(key_lines or {})
        self.inherited = {}  # key -> "file:line" for keys given by an __init__.yml


def _make_loader(filename):
    class _Loader(_BaseLoader):
        def construct_object(self, node, deep=False):
            """PyYAML's scalar constructors raise ValueError, KeyError... for `!!int abc`."""
            try:
                return super().construct_object(node, deep)
            except (ValueError, KeyError, AttributeError, TypeError, OverflowError):
                tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                raise ConfigError(f"{filename}:{node.start_mark.line + 1}: unsupported YAML: "
                                  f"{tag} {shown(node.value)} is not a valid {tag[2:] or tag}") from None

    def construct_mapping(loader, node, deep=True):
        own = {id(key_node) for key_node, _ in node.value}  # merged (`<<: *x`) keys come first, overridable
        loader.flatten_mapping(node)
        result = ConfigNode(filename=filename, line=node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConfigError(
                    f"{filename}:{key_node.start_mark.line + 1}: mapping key is not hashable"
                ) from None
            if id(key_node) in own and key in result.key_lines:
                raise ConfigError(
                    f"{filename}:{key_node.start_mark.line + 1}: key {shown(key)} appears twice "
                    f"in the same mapping (first at line {result.key_lines[key]})"
                )
            result[key] = loader.construct_object(value_node, deep=True)
            if id(key_node) in own:
                result.key_lines[key] = key_node.start_mark.line + 1
        return result

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    _Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
    return _Loader


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return ()


def _measure(root, filename):
    """Refuse a node graph nested deeper than MAX_DEPTH or expanding to more than MAX_VALUES.

    Iterative and memoised per node, so it costs the size of the file, not of the expansion.
    """
    done = {}  # id(node) -> (height, expanded count)
    on_path = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if key in done:
            continue
        if not finished:
            if key in on_path:
                continue  # a recursive alias: the constructor refuses it with its own message
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in done)
            continue
        on_path.discard(key)
        measured = [done[id(child)] for child in _children(node) if id(child) in done]
        height = 1 + max((h for h, _ in measured), default=0)
        count = 1 + sum(c for _, c in measured)
        line = node.start_mark.line + 1
        if height > MAX_DEPTH:
            raise ConfigError(f"{filename}:{line}: lists and mappings nested more than {MAX_DEPTH} deep")
        if count > MAX_VALUES:
            raise ConfigError(f"{filename}:{line}: aliases expand to more than {MAX_VALUES:,} values")
        done[key] = (height, count)


def _reader_error(exc, text, filename):
    """A character YAML does not accept (NUL, control characters): its line, on one line."""
    line = ""
    if isinstance(exc.character, int):
        index = text.find(chr(exc.character))
        if index >= 0:
            line = f":{text.count(chr(10), 0, index) + 1}"
    return ConfigError(f"{filename}{line}: YAML error: character #x{exc.character:04x} not allowed "
                       f"({exc.reason})" if isinstance(exc.character, int) else
                       f"{filename}: YAML error: {exc.reason}")


def load_yaml_text(text, filename="<string>"):
    """Parse YAML text into plain lists/scalars and ConfigNode mappings."""
    loader = _make_loader(filename)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, filename)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        kind = "unsupported YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise ConfigError(f"{filename}{line}: {kind}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, filename) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{filename}: YAML error: {first}") from None
    finally:
        loader.dispose()


def load_yaml_file(path, display_root=None):
    """Load one YAML file; messages name it relative to `display_root` when given."""
    shown = os.path.relpath(path, display_root) if display_root else str(path)
    try:
        text = read_checked(path, "yaml").decode("utf-8")  # a regular file of bounded size, before reading
    except FileCheckError as exc:
        raise ConfigError(f"{shown}: {exc.reason}") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    return load_yaml_text(text, shown)
