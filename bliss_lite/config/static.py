"""The static configuration: builds objects from the YAML index, on demand, once each.

`class:` picks the factory from a registry of built-in classes (imported lazily, so the shell
starts fast); `module: pkg.mod` with `class: Name` picks `Name` from a module of your own.
`plugin:` is optional and, when given, must match the registered class's plugin.
A factory is `factory(name, node, config) -> object`; a container object (a controller with
named axes) returns its children from `config_children()` so they are cached too.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from bliss_lite.config.errors import ConfigError, shown, where
from bliss_lite.config.fields import describe
from bliss_lite.config.paths import config_dir, run_dir
from bliss_lite.config.settings import SettingsStore
from bliss_lite.config.tree import ConfigTree, is_reference

# class name -> (plugin, "module:attribute"); matched ignoring case and underscores
FACTORIES = {
    "mockup": ("emotion", "bliss_lite.controllers.motors.mockup:create_controller"),
    "socket_motor": ("emotion", "bliss_lite.controllers.motors.socket_motor:create_controller"),
    "tango_motor": ("emotion", "bliss_lite.controllers.motors.tango_motor:create_controller"),
    "tango_attribute_counter": ("bliss", "bliss_lite.controllers.counters.tango_counter:create_counter"),
    "epics_motor": ("emotion", "bliss_lite.controllers.motors.epics_motor:create_controller"),
    "epics_counter": ("bliss", "bliss_lite.controllers.counters.epics_counter:create_counter"),
    "simulation_counter": ("bliss", "bliss_lite.controllers.counters.simulation:create_counter"),
    "simulation_diode": ("bliss", "bliss_lite.controllers.counters.simulation:create_diode"),
    "measurement_group": ("bliss", "bliss_lite.controllers.counters.measurement_group:create"),
    "session": ("session", "bliss_lite.config.session:create_session"),
    "pilatus2m": ("bliss", "bliss_lite.controllers.detectors.pilatus_factory:create"),
    "xrdct_sample": ("bliss", "bliss_lite.controllers.sample.xrdct_sample:create"),
    "pdfct_sample": ("bliss", "bliss_lite.controllers.sample.pdf_sample:create"),
    "sample_monitor": ("bliss", "bliss_lite.controllers.sample.xrdct_sample:create_monitor"),
    "storage_ring": ("bliss", "bliss_lite.controllers.storage_ring:create"),
}


def _normalise(class_name):
    return str(class_name).replace("_", "").replace("-", "").lower()


_BY_NORMALISED = {_normalise(name): name for name in FACTORIES}


def _import(target, node, key):
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as exc:  # also '' and relative names ('.mod')
        raise ConfigError(f"{where(node, key)}: cannot import module {shown(module_name)}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{where(node, 'class')}: module {shown(module_name)} has no {shown(attribute)}") from None


class Config:
    """The beamline database of one configuration directory."""

    def __init__(self, root, settings: SettingsStore | None = None):
        self.tree = ConfigTree(root)
        self.root = self.tree.root
        self.settings = settings or SettingsStore(run_dir())
        self._objects = {}
        self._built = {}
        self._building = []

    @property
    def names(self):
        return self.tree.names

    def get_node(self, name):
        return self.tree.entry(name).node

    def file_beside(self, node, relative):
        """The absolute path of a file named relative to the YAML file that holds `node`."""
        return (Path(self.root) / Path(node.filename).parent / relative).resolve()

    def factory_for(self, node):
        """The factory callable a node's `class` (and `module`/`plugin`) select."""
        class_name = node.get("class")
        if class_name is None:
            raise ConfigError(f"{where(node)}: {describe(node)}: missing key 'class'")
        if not isinstance(class_name, str):
            raise ConfigError(f"{where(node, 'class')}: {describe(node)}: class must be a string, got {shown(class_name)}")
        if "module" in node:
            if not isinstance(node["module"], str) or not node["module"]:
                raise ConfigError(f"{where(node, 'module')}: {describe(node)}: module must be a module name, "
                                  f"got {shown(node['module'])}")
            return _import(f"{node['module']}:{class_name}", node, "module")
        registered = _BY_NORMALISED.get(_normalise(class_name))
        if registered is None:
            choices = ", ".join(sorted(FACTORIES))
            raise ConfigError(
                f"{where(node, 'class')}: {describe(node)}: unknown class {shown(class_name)} "
                f"(known: {choices}; or give 'module:' to use your own)"
            )
        plugin, target = FACTORIES[registered]
        if "plugin" in node and node["plugin"] != plugin:
            raise ConfigError(
                f"{where(node, 'plugin')}: {describe(node)}: class {shown(class_name)} belongs to "
                f"plugin '{plugin}', not {shown(node['plugin'])}"
            )
        return _import(target, node, "class")

    def get(self, name):
        """The object called `name`, built on first use with everything it references."""
        if name in self._objects:
            return self._objects[name]
        entry = self.tree.entry(name)
        if "class" in entry.node or entry.container is None:
            obj = self._build_node(entry.node)
            self._objects[name] = obj
            return obj
        self._build_node(entry.container)
        if name not in self._objects:
            raise ConfigError(
                f"{where(entry.node)}: '{name}' was not created by its controller "
                f"{shown(entry.container.get('class'))}"
            )
        return self._objects[name]

    def _build_node(self, node):
        """Each YAML node is built once, whether asked for by its name or through a child."""
        key = id(node)
        if key not in self._built:
            self._built[key] = self._build(node.get("name"), node)
        return self._built[key]

    def _build(self, name, node):
        label = name or f"<{node.get('class')} at {where(node)}>"
        if label in self._building:
            chain = " -> ".join(self._building + [label])
            raise ConfigError(f"{where(node)}: circular reference: {chain}")
        factory = self.factory_for(node)
        self._building.append(label)
        try:
            obj = factory(name, node, self)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{where(node)}: {describe(node)}: cannot be created: {exc}") from exc
        finally:
            self._building.pop()
        children = getattr(obj, "config_children", None)
        if children is not None:
            self._objects.update(children())
        return obj

    def resolve(self, value):
        """Replace `$name` references (also inside lists) with the objects they name."""
        if is_reference(value):
            return self.get(value[1:])
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value


def load_config(root=None, settings=None) -> Config:
    """Load the configuration directory chosen as docs/configuration.md says (--config, env, ./config)."""
    return Config(config_dir(root), settings)
