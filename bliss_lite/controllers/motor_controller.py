"""The interface between axes and motor hardware; positions are in steps.

A controller is built from one YAML mapping with its `axes` list; it creates its axes, which
the configuration then knows by name. Real controllers poll `state` in `wait_move`; the
mockup overrides it to wake exactly at the end of its analytic trajectory.
"""
from __future__ import annotations

import gevent

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import read_fields
from bliss_lite.controllers.axis import Axis
from bliss_lite.controllers.axis_config import AxisConfig


class MotorController:
    AXIS_EXTRA_FIELDS = ()  # keys a controller adds to its axes' YAML
    FIELDS = ()  # keys of the controller's own mapping
    POLLING_TIME = 0.01

    def __init__(self, name, node, config):
        self.name = name or node.get("class")
        self.settings = config.settings
        self.options = read_fields(node, self.FIELDS, f"controller '{self.name}'", extra_keys=("axes",))
        axes_nodes = node.get("axes")
        if not isinstance(axes_nodes, list) or not axes_nodes:
            raise ConfigError(f"{where(node)}: controller '{self.name}': 'axes' must be a non-empty list")
        self.axes = {}
        for number, axis_node in enumerate(axes_nodes, 1):
            if not isinstance(axis_node, dict) or "name" not in axis_node:
                at = where(axis_node) if isinstance(axis_node, dict) else where(node, "axes")
                raise ConfigError(f"{at}: controller '{self.name}': axes item {number} "
                                  f"must be a mapping with a 'name', got {axis_node!r}")
            axis_config, extras = AxisConfig.from_node(axis_node, self.AXIS_EXTRA_FIELDS)
            axis = Axis(axis_config, self, self.settings)
            self.axes[axis.name] = axis
            self.initialize_axis(axis, extras)

    def config_children(self):
        return dict(self.axes)

    # -- what a hardware controller implements -----------------------------------------------
    def initialize_axis(self, axis, extras):
        pass

    def read_position(self, axis) -> float:
        raise NotImplementedError

    def set_position(self, axis, steps):
        raise NotImplementedError

    def state(self, axis):
        raise NotImplementedError

    def start_all(self, *moves):
        """Start every (axis, target steps) of `moves` together."""
        raise NotImplementedError

    def stop_all(self, *axes):
        raise NotImplementedError

    def wait_move(self, axis):
        while "MOVING" in self.state(axis):
            gevent.sleep(self.POLLING_TIME)

    def motion_done(self, axis):
        """Called once a motion task of the axis has ended (normally, stopped or failed)."""

    def sync(self, axis):
        pass

    def axis_info(self, axis):
        return f"CONTROLLER {self.name} ({type(self).__name__})"

    def __info__(self):
        return f"{type(self).__name__} '{self.name}': axes {', '.join(self.axes)}"
