"""What a scan will cost, read before committing a week of beam time: `run=False` on any scan.

A scan built with `run=False` moves nothing and writes nothing; `scan.estimate` says how many
points or frames it takes, how long at the detector's rate (every move's trapezoid included,
as the mockup runs it), the bytes at each stage (raw frames, frames as stored, measured by
compressing a frame of the detector's own where it can render one; scalars; what its hooks
will write), the data files, the reduction's peak memory, and whether the disk holds it.
`scan.run()` then runs it as planned.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass

import numpy as np

from bliss_lite.controllers.trajectory import ideal_move_time
from bliss_lite.data import bslz4
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE
from bliss_lite.protocols import EstimatingHook
from bliss_lite.scans.continuous import FrameSlave, SweepMaster, runup
from bliss_lite.scans.saving import FRAME_RATIO, MARGIN_BYTES, human_bytes
from bliss_lite.scans.step_objects import MotorMaster, TimerMaster


@dataclass(frozen=True)
class ScanEstimate:
    points: int | None  # points of the scan (frames of a continuous one); None: open-ended
    duration_s: float | None  # at the detector's rate, motion included; None: open-ended
    frames: int  # detector frames, all detectors
    bytes_raw: int  # the frames uncompressed
    bytes_frames: int  # the frames as stored (Bitshuffle-LZ4)
    compression_measured: bool  # bytes_frames from a frame the detector rendered (else assumed)
    bytes_scalars: int  # positions, monitors, counters, times
    bytes_reduction: int  # what the hooks write (integrated patterns, volume, maps)
    bytes_total: int  # all of it on disk, with the file structures' margin
    data_files: int  # frame files beside the master file
    reduction_peak_bytes: int  # the largest memory a hook holds at once
    disk_free_bytes: int
    disk_holds: bool
    details: dict  # per-hook figures, the measured bytes per frame

    def __info__(self):
        size = human_bytes
        duration = "until stopped" if self.duration_s is None else _duration(self.duration_s)
        points = "open-ended" if self.points is None else f"{self.points:,}"
        rows = [f"Estimate: {points} points, {duration} (motion included)"]
        if self.frames:
            rows += [f"  frames:      {self.frames:,} in {self.data_files:,} data files",
                     f"  raw:         {size(self.bytes_raw)}",
                     f"  stored:      {size(self.bytes_frames)}"
                     f" ({'measured' if self.compression_measured else 'assumed'} compression)"]
        rows.append(f"  scalars:     {size(self.bytes_scalars)}")
        if self.details["hooks"]:
            rows.append(f"  reduction:   {size(self.bytes_reduction)} on disk, peak memory "
                        f"{size(self.reduction_peak_bytes)}")
        rows.append(f"  disk:        {size(self.bytes_total)} needed, {size(self.disk_free_bytes)} free: "
                    f"{'fits' if self.disk_holds else 'DOES NOT FIT'}")
        return "\n".join(rows)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- time -------------------------------------------------------------------------------------
def _move(axis, distance, velocity=None):
    if distance == 0:
        return 0.0
    return ideal_move_time(distance, velocity or axis.velocity, axis.acceleration)


def sweep_duration(master: SweepMaster):
    """Seconds for every line of a continuous scan: the stepped axes' group move, the run-up
    move, and the sweep at step/period through run-up, the points and run-down."""
    where = {}
    total = 0.0
    for line in master.lines:
        axis = line.axis
        velocity = abs(line.step) / master.period
        if line.steps:
            total += max(_move(a, target - where.get(a, a.position)) for a, target in line.steps.items())
            where.update(line.steps)
        distance = runup(axis, velocity)
        direction = 1.0 if line.step > 0 else -1.0
        start = line.start - direction * distance
        total += _move(axis, start - where.get(axis, axis.position))
        span = 2 * distance + line.npoints * abs(line.step)
        total += _move(axis, span, velocity)
        where[axis] = start + direction * span
    return total


def step_duration(master: MotorMaster, per_point_s):
    """Seconds for a step scan: at each point the slowest axis' move, then the count."""
    points = np.asarray(master.points, dtype=float).reshape((-1, len(master.axes)))
    if len(points) == 0:
        return 0.0
    here = np.array([a.position for a in master.axes])
    steps = np.abs(np.diff(np.vstack([here, points]), axis=0))
    moves = [max(_move(a, d) for a, d in zip(master.axes, row, strict=True)) for row in steps]
    return float(sum(moves)) + len(points) * per_point_s


def _per_point(node):
    """Seconds a timer master spends per point (count and sleep), found in the chain."""
    if isinstance(node, TimerMaster):
        return node.count_time + node.sleep_time
    return max((_per_point(c) for c in getattr(node, "children", ())), default=0.0)


def duration(scan):
    top = scan.chain.top
    if isinstance(top, SweepMaster):
        return sweep_duration(top)
    if isinstance(top, MotorMaster):
        return step_duration(top, _per_point(top))
    if isinstance(top, TimerMaster):
        return None if top.npoints is None else top.npoints * (top.count_time + top.sleep_time)
    return None


# -- bytes ------------------------------------------------------------------------------------
def frame_bytes(detector, exposure):
    """(bytes of one raw frame, of one stored frame, measured?): stored as a frame the detector
    renders now compresses; else the assumed ratio of saving.FRAME_RATIO."""
    raw = int(np.prod(detector.shape, dtype=np.int64)) * np.dtype(detector.dtype).itemsize
    render = getattr(detector, "render", None)  # a simulator can show a frame without taking it
    if callable(render) and getattr(detector, "sample", None) is not None:
        frame = render(time.monotonic(), exposure)
        return raw, len(bslz4.compress(np.ascontiguousarray(frame))), True
    return raw, int(raw * FRAME_RATIO), False


def estimate(scan):
    """The ScanEstimate of a scan built with run=False (or of any scan before it runs)."""
    npoints = scan.npoints
    slaves = [n for n in scan.chain.nodes if isinstance(n, FrameSlave)]
    frames = sum(s.nb_frames for s in slaves)
    raw = stored = files = 0
    measured = bool(slaves)
    per_frame = {}
    for slave in slaves:
        detector = slave.detector
        one_raw, one_stored, was_measured = frame_bytes(detector, slave.expo_time)
        measured = measured and was_measured
        per_frame[detector.name] = {"raw": one_raw, "stored": one_stored}
        raw += one_raw * slave.nb_frames
        stored += one_stored * slave.nb_frames
        per_file = getattr(detector, "frames_per_file", None) or DEFAULT_FRAMES_PER_FILE  # optional setting
        files += math.ceil(slave.nb_frames / per_file)
    frame_channels = {s.detector.name for s in slaves}
    scalars = sum(np.dtype(spec.dtype).itemsize * int(np.prod(spec.shape, dtype=np.int64))
                  for name, spec in scan.data.specs.items() if name not in frame_channels) * (npoints or 0)
    hooks, reduction, peak = {}, 0, 0
    for hook in scan.hooks:
        if isinstance(hook, EstimatingHook):
            figures = hook.estimate(frames, scan.scan_info, dict(hooks))
            hooks[getattr(hook, "name", None) or type(hook).__name__] = figures
            reduction += int(figures.get("bytes", 0))
            peak = max(peak, int(figures.get("peak_memory_bytes", 0)))
    total = (stored + scalars + reduction) * 105 // 100 + MARGIN_BYTES
    directory = scan.context.saving().filename.parent
    free = _free_bytes(directory)
    return ScanEstimate(points=npoints, duration_s=duration(scan), frames=frames, bytes_raw=raw,
                        bytes_frames=stored, compression_measured=measured, bytes_scalars=scalars,
                        bytes_reduction=reduction, bytes_total=total, data_files=files,
                        reduction_peak_bytes=peak, disk_free_bytes=free, disk_holds=total <= free or not scan.save,
                        details={"per_frame_bytes": per_frame, "hooks": hooks, "directory": str(directory)})


def _free_bytes(directory):
    """Free bytes of the disk the data directory is (or will be) on."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def run_or_plan(scan, run=True):
    """`scan.run()`; with run=False the scan unrun (nothing moved, nothing written), its
    `estimate` set: `scan.run()` later runs it as planned."""
    if run:
        return scan.run()
    scan.estimate = estimate(scan)
    return scan
