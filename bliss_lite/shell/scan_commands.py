"""The scan commands and peak tools as the shell offers them (the library's, plus `umv`'s
live display for the goto_* moves), and the hook that shows every scan while it runs."""
from __future__ import annotations

from bliss_lite.scans import peaks
from bliss_lite.scans.continuous_scans import fscan, resume_scan, xrdct
from bliss_lite.scans.step import *  # noqa: F403 - the commands, by their SPEC/BLISS names
from bliss_lite.scans.step import __all__ as _step_commands
from bliss_lite.scans.suspenders import suspend_when
from bliss_lite.shell.scan_display import ScanDisplay
from bliss_lite.shell.standard import umv

cen, com, peak, fwhm, plotselect = peaks.cen, peaks.com, peaks.peak, peaks.fwhm, peaks.plotselect


def _goto(command, found, counter, axis):
    targets = peaks.goto_targets(found, counter, axis)
    umv(*[x for axis_target in targets.items() for x in axis_target])
    return peaks.arrived(command, found, targets)  # where the axes went: targets rounded to steps


def goto_peak(counter=None, axis=None):
    return _goto("goto_peak", peaks.peak(counter, axis), counter, axis)


def goto_com(counter=None, axis=None):
    return _goto("goto_com", peaks.com(counter, axis), counter, axis)


def goto_cen(counter=None, axis=None):
    return _goto("goto_cen", peaks.cen(counter, axis), counter, axis)


for _shell, _library in ((goto_peak, peaks.goto_peak), (goto_com, peaks.goto_com), (goto_cen, peaks.goto_cen)):
    _shell.__doc__ = _library.__doc__ + " The move is shown as umv shows it."


__all__ = [*_step_commands, "fscan", "xrdct", "suspend_when", "resume_scan", *peaks.__all__]


def show_scans(context):
    """Have every scan of the session print its table and summary (when a session opens)."""
    if ScanDisplay not in context.watchers:
        context.watchers.append(ScanDisplay)
