"""How big a scan may be: settings, not constants, so a beamline can allow its week-long scan.

The defaults admit the facility's 1000^3 XRD-CT target (1000 heights x 1000 positions x 1571
angles, Nyquist: 1.57e9 frames) and ten million points of a step scan; the disk check decides
the rest. A session sets its own in YAML (`scan_limits: {max_frames: N, max_points: N}`); the
shell's SCAN_LIMITS changes them while it runs. Messages name the setting to change.
"""
from __future__ import annotations

import numbers

from bliss_lite.config.session import SCAN_LIMIT_KEYS

MAX_POINTS = 10_000_000  # points of a step scan (each one a Python-level move and count)
MAX_FRAMES = 2_000_000_000  # frames of a continuous scan: the 1000^3 target with Nyquist angles
KEYS = dict(zip(SCAN_LIMIT_KEYS, (MAX_POINTS, MAX_FRAMES), strict=True))


def _checked(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"SCAN_LIMITS.{key} must be a whole number >= 1, got {value!r}")
    return int(value)


class ScanLimits:
    """max_points (step scans) and max_frames (continuous scans) of one session's scans."""

    def __init__(self, max_points=MAX_POINTS, max_frames=MAX_FRAMES):
        self.max_points, self.max_frames = max_points, max_frames

    def __setattr__(self, key, value):
        if key not in KEYS:
            raise AttributeError(f"SCAN_LIMITS has no setting {key!r} (settings: {', '.join(KEYS)})")
        object.__setattr__(self, key, _checked(key, value))

    @classmethod
    def from_config(cls, options):
        """From the session YAML's `scan_limits` mapping (checked there: bliss_lite.config.session)."""
        return cls(**{key: options.get(key, default) for key, default in KEYS.items()})

    def named(self, key):
        """How a message names the setting: 'SCAN_LIMITS.max_frames = 2,000,000,000'."""
        return f"SCAN_LIMITS.{key} = {getattr(self, key):,}"

    def __info__(self):
        return (f"SCAN_LIMITS (session YAML scan_limits:, or set here)\n"
                f"  max_points: {self.max_points:,}  (points of a step scan)\n"
                f"  max_frames: {self.max_frames:,}  (frames of a continuous scan)")

    def __repr__(self):
        return f"<ScanLimits max_points={self.max_points:,} max_frames={self.max_frames:,}>"
