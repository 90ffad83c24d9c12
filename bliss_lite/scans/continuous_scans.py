"""Continuous-scan commands: `fscan` (one axis, position-triggered frames) and `xrdct`
(diffraction tomography: omega or x sweeping, the other stepping, z stepping, snake order).

Everything is checked before anything moves: numbers and counts, the sweep velocity against
the axis' maximum, every position including run-up and run-down against the limits, and the
detector's own settings (its prepare refuses a rate it cannot do).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import replace

import numpy as np

from bliss_lite.config.session import current_session
from bliss_lite.controllers.counters.kinds import counter_channels, read_counter
from bliss_lite.protocols import Detector, Sample
from bliss_lite.scans import arguments as check
from bliss_lite.scans.chain import HARDWARE, AcquisitionChain, AcquisitionObject
from bliss_lite.scans.context import context_of
from bliss_lite.scans.continuous import FrameSlave, Line, SweepMaster, runup
from bliss_lite.scans.estimate import run_or_plan
from bliss_lite.scans.resume import plan_continuation, recorded_info, scan_number
from bliss_lite.scans.scan import Scan
from bliss_lite.scans.suspenders import checked_suspenders

__all__ = ["fscan", "xrdct", "resume_scan"]


class TriggeredCounters(AcquisitionObject):
    """Plain counters read on each hardware trigger, over the exposure (a counter card gated
    by the same position triggers as the detector). Counters that sample a device (Tango, EPICS)
    sample from a point's trigger to the next one (the line's end for its last point), so a
    point's values are emitted when its sampling ends: at the next trigger, or when the line
    settles."""

    trigger_mode = HARDWARE

    def __init__(self, counters, exposure):
        super().__init__("counters")
        self.counters, self.exposure = list(counters), exposure
        self._sampled = [c for c in self.counters if callable(getattr(c, "start_sampling", None))]
        self._plain = [c for c in self.counters if c not in self._sampled]
        self._held = None  # the plain counters' values of the point whose devices are sampled now

    def channels(self):
        return [spec for c in self.counters for spec in counter_channels(c)]

    def start(self):
        self._held = None

    def hardware_trigger(self, t):
        plain = {name: value for c in self._plain for name, value in read_counter(c, self.exposure).items()}
        if not self._sampled:
            self.emit(plain)
            return
        self._flush()  # the previous point: its devices sampled from its trigger to this one
        self._held = plain
        for counter in self._sampled:
            counter.start_sampling()

    def settle_line(self, triggered, kept):
        self._flush()  # the line's last point

    def _flush(self):
        if self._held is None:
            return
        values, self._held = self._held, None
        for counter in self._sampled:
            values.update(read_counter(counter, self.exposure))
        self.emit(values)

    def stop(self):
        self._held = None
        for counter in self._sampled:
            counter.cancel_sampling()


def _is_detector(obj):
    return isinstance(obj, Detector)


def _session_detector(command):
    session = current_session()
    found = [o for o in (session.objects.values() if session else []) if _is_detector(o)]
    if not found:
        raise ValueError(f"{command}: no detector in this session (a Pilatus is needed)")
    return found[0]


def _check_sweep(command, line, period):
    axis = line.axis
    velocity = abs(line.step) / period
    if velocity > axis.velocity * (1 + 1e-9):
        raise ValueError(f"{command}: {axis.name}: {abs(line.step):g} {axis.unit} per {period:g} s needs "
                         f"{velocity:g} {axis.unit}/s, above its velocity {axis.velocity:g}")
    direction = 1.0 if line.step > 0 else -1.0
    distance = runup(axis, velocity)
    end = line.start + line.npoints * line.step
    check.reachable(command, axis, [line.start - direction * distance, end + direction * distance])
    for stepped, target in line.steps.items():
        check.reachable(command, stepped, [target])


def _run(command, title, lines, acq_time, detectors, counters, recorded, sample, scan_info, save, hooks=None,
         run=True, suspenders=None, continues=None):
    nb_frames = sum(line.npoints for line in lines)
    readout = max((d.min_latency for d in detectors), default=0.0)
    exposure = acq_time - readout
    if exposure <= 0:
        raise ValueError(f"{command}: acquisition time {acq_time:g} s leaves no exposure after the detector's "
                         f"{readout * 1e3:g} ms readout")
    for line in lines:
        _check_sweep(command, line, acq_time)
    children = [FrameSlave(d, nb_frames, exposure, acq_time - exposure) for d in detectors]
    if counters:
        children.append(TriggeredCounters(counters, exposure))
    described = next((d.sample for d in detectors if isinstance(getattr(d, "sample", None), Sample)), None)
    if described is not None:  # reduction takes the phases to map from the scan, never from the simulator
        scan_info["sample"] = described.description()
    hooks = _hooks(command, hooks, detectors, scan_info) if detectors else []
    master = SweepMaster(lines, acq_time, exposure, recorded, sample, children=children)
    report = SweepReport(command, master)  # also when run=False now and scan.run() later
    scan = Scan(AcquisitionChain(master), name=command, title=title, npoints=nb_frames, save=save,
                motors=recorded, counters=counters, count_time=acq_time, scan_info=scan_info,
                hooks=[*hooks, report], suspenders=checked_suspenders(command, suspenders))
    scan.continues = continues
    return run_or_plan(scan, run)


class SweepReport:
    """Follows a continuous scan (as a scan hook): at its end, records the frames each
    detector dropped or delivered twice and how late the triggers were handled, and says so
    when frames were lost."""

    name = "sweep_report"

    def __init__(self, command, master):
        self.command, self.master = command, master

    def scan_started(self, scan):
        pass

    def scan_finished(self, scan):
        for child in self.master.children:
            report = getattr(child, "report", None)  # detectors report their frames
            if report and (report["dropped"] or report["duplicated"]):
                print(f"{self.command}: {child.name}: {report['dropped']} frames dropped, "
                      f"{report['duplicated']} delivered twice")
            if report:
                scan.scan_info.setdefault("frames", {})[child.name] = report
        scan.scan_info["sweep"] = {"max_lateness_s": self.master.max_lateness,
                                   "handled_rate_hz": self.master.handled_rate}


def _hooks(command, spec, detectors, scan_info):
    """Processing hooks for this scan, checked before anything moves: `spec` from the call,
    else the session's `processing` (for XRD-CT scans only: an fscan asks for them). The
    session's ScanContext makes them: the scan layer does not know the processing layer."""
    if spec is None and "xrdct" not in scan_info:
        return []
    session = current_session()
    make_hooks = context_of(session).make_hooks
    if make_hooks is None:
        wanted = spec if spec is not None else (session.processing_config if session is not None else None)
        if wanted:
            raise ValueError(f"{command}: hooks {wanted!r} asked for, but this session was opened without "
                             f"processing (bliss_lite.shell.runner.open_session gives it)")
        return []
    return make_hooks(command, spec, session, {"detector": detectors[0], "scan_info": scan_info})


def _roi_of(detector):
    roi = getattr(detector, "roi", None)
    return (roi.row, roi.column, roi.rows, roi.columns) if roi is not None else ()


def _split(command, args):
    detectors = [a for a in args if _is_detector(a)]
    rest = [a for a in args if not _is_detector(a)]
    counters = check.counters(command, rest) if rest or not detectors else []
    return detectors, counters


def fscan(motor, start, step, npoints, acq_time, *counters, save=True, hooks=None, run=True, suspenders=None):
    """fscan(m, start, step, npoints, t, [pilatus, counters...]): m moves at constant velocity
    step/t; a trigger at start + i*step takes frame i; positions recorded per frame.

    motor: an axis. start: the first trigger's position, step: the distance between triggers
    (< 0: backwards), both in the axis's unit. npoints: frames. acq_time: seconds per frame
    (> 0; step/acq_time must not exceed the axis's velocity). counters: detectors and counters
    read at each trigger; none: the active measurement group. hooks: processing while it runs
    (as for xrdct). save, run: as for ascan. Returns the Scan.
    Example: fscan(omega, 0, 0.5, 360, 0.01, pilatus)  (omega 0 to 180 deg at 50 deg/s)"""
    command = "fscan"
    axis = check.axis(command, motor)
    start, step = check.number(command, "start", start), check.number(command, "step", step)
    if step == 0:
        raise ValueError(f"{command}: step must not be 0")
    most = check.session_limits().max_frames
    npoints = check.whole(command, "npoints", npoints, maximum=most, setting="SCAN_LIMITS.max_frames")
    t = check.count_time(command, acq_time)
    if t == 0:
        raise ValueError(f"{command}: acquisition time must be > 0")
    detectors, plain = _split(command, counters)
    save, run = check.flag(command, "save", save), check.flag(command, "run", run)
    line = Line({}, axis, start, step, npoints)
    title = f"{command} {axis.name} {start:g} {step:g} {npoints} {t:g}"
    return _run(command, title, [line], t, detectors, plain, [axis], None, {}, save, hooks, run, suspenders)


def xrdct(omega, x, z, x_start, x_stop, n_x, z_positions, acq_time, n_omega=None, snake=True,
          omega_range=180, fast_axis="omega", detector=None, save=True, hooks=None, run=True, suspenders=None,
          resume=None):
    """A diffraction-tomography scan: n_x beam positions across [x_start, x_stop] (the middle of
    n_x equal intervals), n_omega angles over omega_range (default ceil(n_x * pi / 2), Nyquist),
    at every z of z_positions. `fast_axis` sweeps continuously ("omega" or "x"), the other
    steps; `snake` reverses every other sweep. One frame per (z, x, omega) point, with the
    omega, x, z read-backs at the middle of its exposure, I0 and transmission. `hooks`:
    processing while it runs (None: the session's `processing`; ["integration",
    "reconstruction"]; {"integration": {"npt": 500}}; [] for none). `resume=(file, "N.1")` (or
    an entry of the session's file): measure only the lines scan N lacks, into entry N.k
    (scans/resume.py); refused when anything differs from what the file recorded.

    x_start, x_stop: in x's unit (mm); z_positions: a list in z's unit; omega_range: in
    omega's (deg); acq_time: seconds per frame. detector: default the session's Pilatus.
    Example: xrdct(omega, x, z, -1, 1, 40, [0.0], 0.01)  (n_omega 63: 2520 frames)"""
    command = "xrdct"
    omega, x, z = (check.axis(command, a, name) for a, name in ((omega, "omega"), (x, "x"), (z, "z")))
    check.distinct_axes(command, [omega, x, z])
    x_start, x_stop = check.number(command, "x_start", x_start), check.number(command, "x_stop", x_stop)
    if x_stop == x_start:
        raise ValueError(f"{command}: x_start and x_stop must differ")
    most = check.session_limits().max_frames
    n_x = check.whole(command, "n_x", n_x, maximum=most, setting="SCAN_LIMITS.max_frames")
    n_omega = math.ceil(n_x * math.pi / 2) if n_omega is None else check.whole(command, "n_omega", n_omega)
    omega_range = check.number(command, "omega_range", omega_range)
    if omega_range <= 0:
        raise ValueError(f"{command}: omega_range must be > 0, got {omega_range!r}")
    if isinstance(z_positions, numbers.Real):
        z_positions = [z_positions]
    zs = check.positions(command, "z_positions", z_positions)
    check.total_points(command, [n_x, n_omega, len(zs)], "frames", most, "SCAN_LIMITS.max_frames")
    t = check.count_time(command, acq_time)
    if t == 0:
        raise ValueError(f"{command}: acquisition time must be > 0")
    if not isinstance(fast_axis, str) or fast_axis not in ("omega", "x"):
        raise ValueError(f"{command}: fast_axis must be 'omega' or 'x', got {fast_axis!r}")
    snake, save = check.flag(command, "snake", snake), check.flag(command, "save", save)
    run = check.flag(command, "run", run)
    detector = detector if detector is not None else _session_detector(command)
    if not _is_detector(detector):
        raise TypeError(f"{command}: detector must be a detector such as a Pilatus, got {detector!r}")
    dx, domega = (x_stop - x_start) / n_x, omega_range / n_omega
    x_mid = x_start + (np.arange(n_x) + 0.5) * dx
    omega_mid = (np.arange(n_omega) + 0.5) * domega
    lines, keys, k = [], [], 0
    for iz, zv in enumerate(zs):
        for istep, stepped in enumerate(x_mid if fast_axis == "omega" else omega_mid):
            reverse = snake and k % 2 == 1
            k += 1
            keys.append((iz, istep))  # the line's place on the grid (scans/resume.py)
            if fast_axis == "omega":
                start, step = (omega_range, -domega) if reverse else (0.0, domega)
                lines.append(Line({x: float(stepped), z: zv}, omega, start, step, n_omega))
            else:
                start, step = (x_stop, -dx) if reverse else (x_start, dx)
                lines.append(Line({omega: float(stepped), z: zv}, x, start, step, n_x))
    info = {"xrdct": {"n_x": n_x, "n_omega": n_omega, "z_positions": zs, "x_start": x_start, "x_stop": x_stop,
                      "omega_range": omega_range, "fast_axis": fast_axis, "snake": bool(snake),
                      "detector": detector.name, "roi": list(_roi_of(detector))},
            "plot": {"axis": omega.name, "signal": "it"}}
    title = (f"{command} {omega.name} {x.name} {z.name} {x_start:g} {x_stop:g} {n_x} "
             f"[{' '.join(f'{v:g}' for v in zs)}] {t:g} n_omega={n_omega}")
    sample = getattr(detector, "sample", None)
    continues = None
    if resume is not None:  # only the lines the file lacks, into the continuation entry N.k
        if isinstance(sample, Sample):
            info["sample"] = sample.description()
        left, continues = plan_continuation(command, resume, info, lines, keys, t, [omega, x, z])
        lines = [replace(line, index=k) for k, line in left]
        info["continues"] = dict(continues)
        title += f" (resumed: {len(lines)} of {continues['lines']} lines)"
    return _run(command, title, lines, t, [detector], [], [omega, x, z], sample, info, save, hooks, run, suspenders,
                continues)


def resume_scan(filename, entry, hooks=None, suspenders=None, run=True, session=None):
    """Measure what scan N of `filename` lacks (entry "N.1" or any of its continuations) into
    the next continuation entry, as it was planned: the same axes (by name, from the session),
    count time, grid and detector.

    filename: the scan's HDF5 file. entry: "N.1" or a continuation ("N.2"). hooks,
    suspenders, run: as for xrdct. session: default the current one. Refused, naming what,
    when the session lacks the recorded axes or detector or their settings differ from the
    file's. Returns the Scan of the new entry.
    Example: resume_scan("/data/visitor/sample.h5", "3.1")  ->  the missing lines, into 3.2"""
    session = session if session is not None else current_session()
    number = scan_number(entry)
    recorded = recorded_info(filename, f"{number}.1")
    info = recorded.get("xrdct")
    if not info:
        raise ValueError(f"resume_scan: {filename} entry {number}.1 is not an xrdct scan")
    objects = session.objects if session is not None else {}
    missing = [n for n in [*recorded["motors"], info["detector"]] if n not in objects]
    if missing:
        raise ValueError(f"resume_scan: the session has no {', '.join(missing)} (the scan used them)")
    omega, x, z = (objects[n] for n in recorded["motors"])
    return xrdct(omega, x, z, info["x_start"], info["x_stop"], info["n_x"], info["z_positions"],
                 recorded["count_time"], n_omega=info["n_omega"], snake=info["snake"],
                 omega_range=info["omega_range"], fast_axis=info["fast_axis"], detector=objects[info["detector"]],
                 hooks=hooks, suspenders=suspenders, run=run, resume=(filename, f"{number}.1"))
