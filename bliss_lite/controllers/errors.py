"""Errors of motion and devices; each message starts with the object's name."""


class AxisError(Exception):
    """A move or setting that an axis refuses, or a fault during motion."""


class LimitError(AxisError):
    """A target beyond a software limit: refused before anything moves."""


class AxisFault(AxisError):
    """The controller reports FAULT or a limit switch during a move."""
