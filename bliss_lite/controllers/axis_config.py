"""An axis's static configuration, validated once where the YAML enters."""
from __future__ import annotations

import math
from dataclasses import dataclass

from bliss_lite.config.errors import ConfigError, where
from bliss_lite.config.fields import Field, non_negative, non_zero, one_of, positive, read_fields
from bliss_lite.controllers.motion_bounds import RATES, position_problem, rate_problem

POSITIONS = ("backlash", "tolerance", "low_limit", "high_limit", "position")  # position: a mockup's dial at first start

AXIS_FIELDS = (
    Field("unit", "str", ""),
    Field("steps_per_unit", "number", check=non_zero),
    Field("velocity", "number", check=positive),
    Field("acceleration", "number", check=positive),
    Field("backlash", "number", 0.0),
    Field("tolerance", "number", 1e-4, check=non_negative),
    Field("low_limit", "number", None),
    Field("high_limit", "number", None),
    Field("sign", "int", 1, check=one_of(1, -1)),
)


@dataclass(frozen=True)
class AxisConfig:
    """Units: velocity unit/s, acceleration unit/s^2; limits in dial units (None: none)."""

    name: str
    unit: str
    steps_per_unit: float
    velocity: float
    acceleration: float
    backlash: float
    tolerance: float
    low_limit: float
    high_limit: float
    sign: int

    @classmethod
    def from_node(cls, node, extra_fields=()):
        """Validate an axis node; returns (AxisConfig, {extra key: value})."""
        what = f"axis '{node.get('name')}'"
        values = read_fields(node, AXIS_FIELDS + tuple(extra_fields), what)
        low = -math.inf if values["low_limit"] is None else values["low_limit"]
        high = math.inf if values["high_limit"] is None else values["high_limit"]
        if low > high:
            raise ConfigError(f"{where(node, 'low_limit')}: {what}: low_limit {low} is above high_limit {high}")
        spu = abs(values["steps_per_unit"])  # controllers count in steps: each value must stay finite there
        for f in AXIS_FIELDS + tuple(extra_fields):
            value = values[f.key]
            if f.kind != "number" or f.key == "steps_per_unit" or value is None:
                continue
            if not math.isfinite(value * spu):
                raise ConfigError(f"{where(node, f.key)}: {what}: {f.key} {value:g} is too large in steps "
                                  f"(steps_per_unit {values['steps_per_unit']:g})")
            problem = (rate_problem(f.key, value, spu) if f.key in RATES else
                       position_problem(f.key, value, spu) if f.key in POSITIONS else None)
            if problem:  # every motion computed from these stays finite (motion_bounds)
                raise ConfigError(f"{where(node, f.key)}: {what}: {problem} "
                                  f"(steps_per_unit {values['steps_per_unit']:g})")
        extras = {f.key: values.pop(f.key) for f in extra_fields}
        values.update(low_limit=low, high_limit=high)
        return cls(name=node["name"], **values), extras
