"""2-D detectors: the Pilatus 2M simulator and its TCP driver (siblings on pilatus_base)."""
