"""Continuous scans: an axis sweeps at constant velocity and position triggers fire the detector.

`SweepMaster` runs a list of lines; each line first steps some axes (a group move), then
sweeps one axis from `start` through `npoints` intervals: it moves back by a run-up (the
distance needed to reach the sweep velocity), sets the velocity to step / period, starts the
move past the end by a run-down, and fires one trigger at the exact time the axis crosses the
start of each interval (the encoder-compare output of a motion controller; here the mockup's
analytic profile tells the time). For each frame it records the positions of the scan's axes
at the middle of the exposure (the read-back, not the target) and the beam monitors.

With a guard (scans/suspension.py) the master waits before each line while the scan is
suspended or paused, watches the guard at every trigger, and when a suspender trips during a
line it brakes the sweep and measures that whole line again once the scan may go on. The
frames of the discarded line stay (the detector is armed again for the frames to come) and
are marked invalid: each detector's `<det>_valid` channel (`instrument/<det>/valid` in the
file) gets one flag per frame once its line is settled, True for a line that stands.

`FrameSlave` is a hardware-triggered detector: armed once for every frame of the scan, it
checks the detector's frame counter on each frame (a frame dropped or delivered twice is
counted and reported) and emits the compressed frame untouched. Its frame channel carries the
detector's `frames_per_file` (`ChannelSpec.extra`), so the writer splits the frames into data
files as the detector asks without knowing the detector.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gevent
import gevent.event

from bliss_lite.controllers.errors import AxisError, AxisFault
from bliss_lite.controllers.group import Group
from bliss_lite.data.model import ChannelSpec
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE
from bliss_lite.scans.chain import HARDWARE, AcquisitionMaster, AcquisitionObject

now = time.monotonic
RUNUP_MARGIN = 1.2  # run-up and run-down: 20 % more than the acceleration distance


@dataclass(frozen=True)
class Line:
    steps: dict  # {axis: target} moved (together) before the sweep
    axis: object  # the sweeping axis
    start: float
    step: float  # signed: the sweep goes from start to start + npoints * step
    npoints: int
    index: int | None = None  # its place in the scan's plan, when only some lines are measured (a resume)


def runup(axis, velocity):
    return RUNUP_MARGIN * velocity * velocity / (2 * axis.acceleration) + 2 / abs(axis.steps_per_unit)


class SweepMaster(AcquisitionMaster):
    def __init__(self, lines, period, exposure, recorded_axes, sample=None, children=()):
        super().__init__("sweep", children)
        self.lines = list(lines)
        self.period = float(period)
        self.exposure = float(exposure)
        self.recorded = list(recorded_axes)
        self.sample = sample
        self._sweeping = None
        self._t0 = None
        self.max_lateness = 0.0  # s: how far behind its trigger time a frame was handled, at worst
        self.last_done = None  # monotonic time the last frame was handled
        self.guard = None  # scans/suspension.ScanGuard, set by the scan
        self.done_lines = []  # index in `lines` of each line measured and kept, in order

    def channels(self):
        specs = [ChannelSpec(a.name, "float64", (), a.unit) for a in self.recorded]
        specs.append(ChannelSpec("elapsed_time", "float64", (), "s"))
        if self.sample is not None:
            monitor = {"nexus_class": "NXmonitor"}
            specs += [ChannelSpec("i0", "float64", (), "counts", extra=monitor),
                      ChannelSpec("it", "float64", (), "counts", extra=monitor)]
        return specs

    def iterate(self):
        guard = self.guard
        k = 0
        while k < len(self.lines):
            line = self.lines[k]
            if guard is not None:
                guard.before_point()
            if line.steps:
                Group(*line.steps).move(dict(line.steps))
            triggered = self._sweep(line)
            kept = (guard is None or guard.after_point()) and triggered == line.npoints
            for child in self.children:
                if hasattr(child, "settle_line"):
                    child.settle_line(triggered, kept)
            if kept:
                self.done_lines.append(k if line.index is None else line.index)
                k += 1
            yield

    def _sweep(self, line):
        axis, velocity = line.axis, abs(line.step) / self.period
        direction = 1.0 if line.step > 0 else -1.0
        end = line.start + line.npoints * line.step
        distance = runup(axis, velocity)
        axis.move(line.start - direction * distance)
        saved = axis.velocity
        triggers = [child for child in self.children if child.trigger_mode == HARDWARE]
        try:
            axis.velocity = velocity
            self._sweeping = axis
            requested = now()
            axis.move(end + direction * distance, wait=False)
            deadline = requested + 1.0
            while (axis.time_at(line.start) or 0.0) < requested and now() < deadline:
                gevent.sleep(0)  # until the controller runs the new motion (earlier ones crossed too)
            guard = self.guard
            for i in range(line.npoints):
                if guard is not None and guard.tripped is not None:
                    axis.stop()  # the line is lost: brake, then measure it again
                    axis.wait_move()
                    self._sweeping = None
                    return i
                t = axis.time_at(line.start + i * line.step)
                if t is None:
                    raise _stopped_short(axis, line.start + i * line.step)
                if t > now():  # a timer, no busy wait: the I/O greenlet must run between frames,
                    gevent.sleep(t - now())  # and the frame's time is t whenever it is handled
                else:
                    gevent.sleep(0)  # behind: still let the pump write and publish
                if self._t0 is None:
                    self._t0 = t
                for child in triggers:
                    child.hardware_trigger(t)
                self._record(t)
                self.last_done = now()
                self.max_lateness = max(self.max_lateness, self.last_done - t)
            axis.wait_move()
            self._sweeping = None  # on an error it stays set: stop() brakes it
        finally:
            axis.velocity = saved
        return line.npoints

    @property
    def handled_rate(self):
        """Frames per second actually handled, first trigger to last frame handled."""
        if self._t0 is None or self.last_done is None or self.last_done <= self._t0:
            return None
        total = sum(line.npoints for line in self.lines)
        return (total - 1) / (self.last_done - self._t0)

    def _record(self, t):
        mid = t + self.exposure / 2
        values = {a.name: a.position_at(mid) for a in self.recorded}
        values["elapsed_time"] = t - self._t0
        if self.sample is not None:
            values["i0"], values["it"] = self.sample.monitors_at(mid, self.exposure)
        self.emit(values)

    def stop(self):
        axis, self._sweeping = self._sweeping, None
        if axis is not None and axis.is_moving:
            axis.stop()


def _stopped_short(axis, target):
    """The error for a sweep that will not reach `target`: what the controller says it is."""
    try:
        state, where = str(axis.state), f"at {axis.position:g} {axis.unit or ''}".rstrip()
    except AxisError as exc:  # the controller itself is gone: that is the news
        return exc
    return AxisFault(f"{axis.name}: the sweep stopped short of {target:g} ({state} {where})")


class FrameSlave(AcquisitionObject):
    """A detector taking one frame per trigger, EXTERNAL_TRIGGER mode, for the whole scan.

    A detector that stops delivering is found while the scan runs, not at its end: once
    frames are owed and none has come for SILENCE_S, the next trigger fails the scan, naming
    the detector (the scan then stops the motion and closes the file)."""

    trigger_mode = HARDWARE
    SILENCE_S = 2.0
    CHECK_S = 0.1  # s between two looks at the detector's health while frames are owed

    def __init__(self, detector, nb_frames, expo_time, latency_time):
        super().__init__(detector.name)
        self.detector = detector
        self.nb_frames = nb_frames
        self.expo_time, self.latency_time = expo_time, latency_time
        self.received = 0
        self.dropped = 0
        self.duplicated = 0
        self.triggered = 0
        self._progress_at = None  # monotonic time of the last frame (or of the first trigger)
        self._all = gevent.event.Event()
        self._arrived = gevent.event.Event()  # set at every frame
        self._offset = 0

    def channels(self):
        name = self.detector.name
        roi = getattr(self.detector, "roi", None)  # where the frames sit on the detector: the file's geometry
        extra = {"frames_per_file": self.frames_per_file}
        if roi is not None:
            extra["roi"] = [int(roi.row), int(roi.column), int(roi.rows), int(roi.columns)]
        return [ChannelSpec(name, self.detector.dtype, self.detector.shape, self.detector.unit,
                            encoding="bslz4", extra=extra),
                ChannelSpec(f"{name}_frame_number", "int64"),
                ChannelSpec(f"{name}_valid", "bool", extra={"part_of": name, "field": "valid"})]

    @property
    def frames_per_file(self):
        """The detector's frames per data file (optional in the Detector protocol: the default)."""
        return getattr(self.detector, "frames_per_file", DEFAULT_FRAMES_PER_FILE)

    def prepare(self):
        self.detector.prepare(self.nb_frames, self.expo_time, self.latency_time, "EXTERNAL_TRIGGER")
        self.detector.on_frame = self._on_frame
        self._offset = 0  # frames taken before the detector was last armed

    def settle_line(self, triggered, kept):
        """The line's `triggered` frames are in (waited for, as `wait` does): flag them valid
        or not. A discarded line's frames are owed again: the detector is armed once more for
        every frame still to come, its frame counter continuing where it was."""
        self._wait_for(self.triggered)
        flag = {f"{self.detector.name}_valid": bool(kept)}
        for _ in range(triggered):
            self.emit(flag)
        if kept:
            return
        self.nb_frames += triggered
        self._all.clear()
        self.detector.stop()
        self._offset = self.received
        self.detector.prepare(self.nb_frames - self.received, self.expo_time, self.latency_time, "EXTERNAL_TRIGGER")
        self.detector.on_frame = self._on_frame
        self.detector.start()

    def hardware_trigger(self, t):
        moment = now()
        if self.received >= self.triggered or self._progress_at is None:
            self._progress_at = moment  # nothing owed: the silence clock starts now
        elif moment - self._progress_at > self.SILENCE_S + self.expo_time:
            raise RuntimeError(f"{self.detector.name}: silent: no frame for {moment - self._progress_at:.1f} s, "
                               f"{self.triggered - self.received} of {self.triggered} triggered frames missing")
        self.triggered += 1
        self.detector.trigger(t)

    def _on_frame(self, number, chunk, t):
        """Every frame is kept (the file must hold what the detector sent); the counter tells
        a gap (dropped) or a repeat (delivered twice)."""
        number += self._offset
        if number < self.received:
            self.duplicated += 1
        elif number > self.received:
            self.dropped += number - self.received
        self.emit({self.detector.name: chunk, f"{self.detector.name}_frame_number": number})
        self.received = number + 1
        self._progress_at = now()
        self._arrived.set()
        if self.received >= self.nb_frames:
            self._all.set()

    def wait(self):
        """Until every frame is in, as long as frames keep coming (a long backlog is fine)."""
        self._wait_for(self.nb_frames)

    def _wait_for(self, count):
        """Until `count` frames are in, as long as frames keep coming; a detector that says it
        can no longer deliver (`check`: a lost connection) fails the wait at once, by name."""
        check = getattr(self.detector, "check", None)
        while self.received < count:
            before = self.received
            self._arrived.clear()
            deadline, arrived = now() + self.SILENCE_S + self.expo_time, False
            while not arrived and now() < deadline:
                arrived = self._arrived.wait(max(0.0, min(self.CHECK_S, deadline - now())))
                if not arrived and check is not None:
                    check()
            if not arrived and self.received == before:
                missing = count - self.received
                raise RuntimeError(f"{self.detector.name}: {missing} of {self.nb_frames} frames did not arrive "
                                   f"(none for {self.SILENCE_S + self.expo_time:g} s)")

    def stop(self):
        self.detector.stop()
        self.detector.on_frame = None

    @property
    def report(self):
        return {"frames": self.received, "dropped": self.dropped, "duplicated": self.duplicated}
