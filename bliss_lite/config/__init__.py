"""Static configuration: the YAML beamline database, its object factories, sessions, settings."""
from bliss_lite.config.errors import ConfigError
from bliss_lite.config.static import Config, load_config

__all__ = ["Config", "ConfigError", "load_config"]
