"""bliss_lite: a BLISS-like beamline control shell and acquisition framework.

Importing the package is cheap on purpose: the shell's start-up time is a measured figure.
"""
__version__ = "0.1.0"
