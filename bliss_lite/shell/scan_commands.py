"""The scan commands and peak tools as the shell offers them (the library's, plus `umv`'s
live display for the goto_* moves), and the hook that shows every scan while it runs."""
from __future__ import annotations

from bliss_lite.scans import peaks
from bliss_lite.scans.continuous_scans import fscan, xrdct
from bliss_lite.scans.step import *  # noqa: F403 - the commands, by their SPEC/BLISS names
from bliss_lite.scans.step import __all__ as _step_commands
from bliss_lite.scans.suspenders import suspend_when
from bliss_lite.shell.scan_display import ScanDisplay
from bliss_lite.shell.standard import umv

cen, com, peak, fwhm, plotselect = peaks.cen, peaks.com, peaks.peak, peaks.fwhm, peaks.plotselect


def _goto(position, counter, axis):
    targets = peaks.goto_targets(position, counter, axis)
    umv(*[x for axis_target in targets.items() for x in axis_target])
    return position


def goto_peak(counter=None, axis=None):
    """Move the scanned axes to the peak (highest point) of the last scan."""
    return _goto(peaks.peak(counter, axis), counter, axis)


def goto_com(counter=None, axis=None):
    """Move the scanned axes to the center of mass of the last scan."""
    return _goto(peaks.com(counter, axis), counter, axis)


def goto_cen(counter=None, axis=None):
    """Move the scanned axes to the center (middle of the half maxima) of the last scan."""
    return _goto(peaks.cen(counter, axis), counter, axis)


__all__ = [*_step_commands, "fscan", "xrdct", "suspend_when", *peaks.__all__]


def show_scans(context):
    """Have every scan of the session print its table and summary (when a session opens)."""
    if ScanDisplay not in context.watchers:
        context.watchers.append(ScanDisplay)
