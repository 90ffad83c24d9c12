"""Where things live: the configuration tree and the per-user run directory."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from bliss_lite.config.errors import ConfigError

# a source checkout (editable install), else what a wheel installs under <prefix>/share
_SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config"
SHIPPED_CONFIG = _SOURCE_CONFIG if _SOURCE_CONFIG.is_dir() else Path(sys.prefix) / "share" / "bliss_lite" / "config"


def config_dir(explicit=None) -> Path:
    """--config DIR, else $BLISS_LITE_CONFIG, else ./config, else the shipped configuration."""
    for candidate, origin in ((explicit, "--config"), (os.environ.get("BLISS_LITE_CONFIG"), "BLISS_LITE_CONFIG")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_dir():
                raise ConfigError(f"{origin}: configuration directory '{candidate}' does not exist")
            return path.resolve()
    local = Path.cwd() / "config"
    if local.is_dir():
        return local.resolve()
    if SHIPPED_CONFIG.is_dir():
        return SHIPPED_CONFIG
    raise ConfigError("no configuration: give --config DIR or set BLISS_LITE_CONFIG")


def run_dir() -> Path:
    """$BLISS_LITE_RUN_DIR, else a per-user state directory; created on first use."""
    explicit = os.environ.get("BLISS_LITE_RUN_DIR")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        path = Path(state_home) / "bliss_lite"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission: said once, where it starts
        origin = "BLISS_LITE_RUN_DIR" if explicit else "run directory"
        raise ConfigError(f"{origin}: cannot create '{path}': {exc.strerror or exc}") from None
    return path
