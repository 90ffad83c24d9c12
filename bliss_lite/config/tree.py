"""The beamline database as an index: every named node in a directory tree of YAML files.

As in BLISS's Beacon: each object has a unique `name`; a file holds one mapping or a list of
them; named mappings may nest (a controller's `axes`); `__init__.yml` in a folder gives keys
that every top-level object below it inherits; `$name` strings reference other objects.
Everything that can be checked without building objects is checked here, at load time.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.yaml_loader import ConfigNode, load_yaml_file

YAML_SUFFIXES = (".yml", ".yaml")
INIT_FILES = ("__init__.yml", "__init__.yaml")


@dataclass
class Entry:
    """One named node and the mapping that holds it (a controller, named or not; else None)."""

    name: str
    node: ConfigNode
    container: ConfigNode | None


def is_reference(value):
    return isinstance(value, str) and value.startswith("$") and len(value) > 1


def _named_children(node):
    """Named mappings nested in the lists of a node (a controller's axes, counters...)."""
    for value in node.values():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ConfigNode) and "name" in item:
                    yield item


def _references(value):
    """All `$name` strings in a value, not descending into nested named objects."""
    if is_reference(value):
        yield value[1:]
    elif isinstance(value, list):
        for item in value:
            if not (isinstance(item, ConfigNode) and "name" in item):
                yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


class ConfigTree:
    """Load and index a configuration directory; raise ConfigError on the first problem."""

    def __init__(self, root):
        self.root = Path(root)
        self.entries: dict[str, Entry] = {}
        self._load()
        self._check_references()

    # -- loading -----------------------------------------------------------------------------
    def _load(self):
        inherited_by_dir = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            inherited = dict(inherited_by_dir.get(here.parent, {}))
            for init_name in INIT_FILES:
                if init_name in filenames:
                    init = load_yaml_file(here / init_name, self.root) or {}
                    if not isinstance(init, dict):
                        display = os.path.relpath(here / init_name, self.root)
                        raise ConfigError(f"{display}: must be a mapping of inherited keys, got {shown(init)}")
                    for key in init:
                        inherited[key] = (init[key], where(init, key))
            inherited_by_dir[here] = inherited
            for filename in sorted(filenames):
                if filename.startswith(".") or filename in INIT_FILES:
                    continue
                if filename.endswith(YAML_SUFFIXES):
                    self._load_file(here / filename, inherited)

    def _load_file(self, path, inherited):
        content = load_yaml_file(path, self.root)
        display = os.path.relpath(path, self.root)
        if content is None:
            return
        items = content if isinstance(content, list) else [content]
        for item in items:
            if not isinstance(item, ConfigNode):
                raise ConfigError(f"{display}: top-level entries must be mappings, got {shown(item)}")
            for key, (value, origin) in inherited.items():
                if key not in item:
                    item[key] = value
                    item.inherited[key] = origin
            self._index(item, container=None)

    def _index(self, node, container):
        if "name" in node:
            name = node["name"]
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(
                    f"{where(node, 'name')}: name must be a Python identifier, got {shown(name)}"
                )
            if unicodedata.normalize("NFKC", name) != name:  # Python reads 'ﬁ' as 'fi': unreachable
                raise ConfigError(f"{where(node, 'name')}: name {shown(name)} is read by Python as "
                                  f"{shown(unicodedata.normalize('NFKC', name))}: write it that way")
            if name in self.entries:
                first = self.entries[name].node
                raise ConfigError(
                    f"{where(node, 'name')}: duplicate name '{name}' "
                    f"(already defined at {where(first, 'name')})"
                )
            self.entries[name] = Entry(name, node, container)
        children = list(_named_children(node))
        if "name" not in node and not children:
            raise ConfigError(f"{where(node)}: object has no 'name'")
        for child in children:
            self._index(child, node)

    def _check_references(self):
        for entry in self.entries.values():
            for key, value in entry.node.items():
                for ref in _references(value):
                    if ref not in self.entries:
                        raise ConfigError(
                            f"{where(entry.node, key)}: '{entry.name}': key {shown(key)}: "
                            f"reference {shown('$' + ref)} names no object in the configuration"
                        )

    # -- queries -----------------------------------------------------------------------------
    @property
    def names(self):
        return list(self.entries)

    def entry(self, name) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise ConfigError(f"{self.root}: no object named {shown(name)} in the configuration") from None
