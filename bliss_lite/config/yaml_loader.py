"""Safe YAML loading that remembers where every mapping and key came from.

Errors must name the file and the line; PyYAML drops the marks after construction, so the
mappings it builds here are `ConfigNode` dicts carrying `filename`, `line` and `key_lines`.
Only the safe constructors run: no YAML tag can build an arbitrary Python object.
"""
from __future__ import annotations

import os

import yaml

from bliss_lite.config.errors import ConfigError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        pass

    def construct_mapping(loader, node, deep=True):
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
            if key in result:
                raise ConfigError(
                    f"{filename}:{key_node.start_mark.line + 1}: key '{key}' appears twice "
                    f"in the same mapping (first at line {result.key_lines[key]})"
                )
            result[key] = loader.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return _Loader


def load_yaml_text(text, filename="<string>"):
    """Parse YAML text into plain lists/scalars and ConfigNode mappings."""
    try:
        return yaml.load(text, Loader=_make_loader(filename))  # noqa: S506 - safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        kind = "unsupported YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise ConfigError(f"{filename}{line}: {kind}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: YAML error: {exc}") from None


def load_yaml_file(path, display_root=None):
    """Load one YAML file; messages name it relative to `display_root` when given."""
    shown = os.path.relpath(path, display_root) if display_root else str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    return load_yaml_text(text, shown)
