"""Motor controllers selectable by `class:` in the YAML configuration."""
