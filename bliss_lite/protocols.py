"""What the engine relies on, written down: the interfaces between the layers and the words
(states, end reasons, backends) that cross them.

A new motor controller, counter, detector, sample or processing hook implements one of these
Protocols; nothing in the engine asks for a concrete class. The Enums are `StrEnum`s, so a
value equals its text ("SUCCESS", "gpu") wherever it is stored: the Redis record, the HDF5
file, a job file. This module imports nothing of bliss_lite: every layer may import it.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Callable, Protocol, runtime_checkable


class ScanState(StrEnum):
    """Where a scan is in its life; the Redis state stream carries the same words."""

    IDLE = "IDLE"  # built, not run yet (never published)
    CREATED = "CREATED"
    PREPARED = "PREPARED"
    STARTED = "STARTED"
    STOPPED = "STOPPED"
    CLOSED = "CLOSED"


class EndReason(StrEnum):
    """Why a scan ended: the entry's `end_reason` and the seal of its Redis scan."""

    SUCCESS = "SUCCESS"
    USER_ABORT = "USER_ABORT"  # Ctrl-C, or the greenlet killed
    FAILURE = "FAILURE"  # an error: of a device, the writer, the code


class Backend(StrEnum):
    """Where the reduction runs: `auto` takes the GPU when CuPy finds one."""

    CPU = "cpu"
    GPU = "gpu"
    AUTO = "auto"


PUBLISHED_STATES = tuple(s.value for s in ScanState if s is not ScanState.IDLE)
END_REASONS = tuple(r.value for r in EndReason)
BACKENDS = tuple(b.value for b in Backend)


@runtime_checkable
class MotorController(Protocol):
    """Motor hardware as axes see it; positions in steps (bliss_lite.controllers.motor_controller
    is the base class that reads the YAML and makes the axes)."""

    name: str

    def read_position(self, axis) -> float: ...
    def set_position(self, axis, steps) -> None: ...
    def state(self, axis) -> Any: ...
    def start_all(self, *moves) -> None: ...
    def stop_all(self, *axes) -> None: ...
    def wait_move(self, axis) -> None: ...
    def motion_done(self, axis) -> None: ...


@runtime_checkable
class Axis(Protocol):
    """A motor axis as scans and the shell use it, in user units (user = sign * dial + offset);
    bliss_lite.controllers.axis.Axis is the one implementation, over any MotorController.
    Its `position`, `dial`, `state` and `is_moving` ask the hardware, so they are left out of
    the members an isinstance() check reads (on Python 3.11 it would call them)."""

    name: str
    steps_per_unit: float

    def user2dial(self, position: float) -> float: ...
    def dial2user(self, dial: float) -> float: ...
    def move(self, target, wait: bool = True) -> None: ...
    def stop(self) -> None: ...
    def wait_move(self) -> None: ...


@runtime_checkable
class Counter(Protocol):
    """Something `ct` and step scans read once per point (`unit`, `dtype` and `shape` are
    optional: "", float64 and a scalar when absent)."""

    name: str
    fullname: str  # "controller:name"

    def read(self, count_time: float = 1.0) -> Any: ...


@runtime_checkable
class MeasurementGroup(Protocol):
    """A named set of counters, one group active: what `ct` and scans count when given none."""

    name: str
    counters: list

    def set_active(self) -> None: ...


@runtime_checkable
class Detector(Protocol):
    """A 2-D detector armed for N frames, triggered by the scan (or by itself in INTERNAL mode).

    Frames leave it through `on_frame(frame_number, chunk, t)`, one call per frame, with the
    detector's own frame counter (so a dropped or doubled frame shows) and the frame already
    compressed (Bitshuffle-LZ4, the bytes of the HDF5 chunk). Optional: `check()` raises
    when the detector can no longer deliver (a lost connection), so a scan waiting for frames
    names that at once rather than after its silence timeout."""

    name: str
    fullname: str
    dtype: str
    unit: str
    shape: tuple  # (rows, columns) of a frame, the ROI's
    max_rate: float  # frames/s it can take with the current ROI
    min_latency: float  # s of readout between two frames: the exposure is the period less this
    frame_counter: int
    on_frame: Callable | None

    def prepare(self, nb_frames: int, expo_time: float, latency_time: float = ..., trigger_mode: str = ...) -> None: ...
    def start(self) -> None: ...
    def trigger(self, t: float) -> None: ...
    def gate(self, t_open: float, t_close: float) -> None: ...
    def wait(self, timeout: float) -> None: ...
    def stop(self) -> None: ...


@runtime_checkable
class Sample(Protocol):
    """What a simulated detector looks at, and what it tells the scan about itself.

    `description()` is recorded in the scan (scan_info["sample"]) so that reduction takes the
    phases to map from the data, never from the simulator: {"name", "phases": {phase: pyFAI
    calibrant or None}, optional "peak_fwhm" with its "peak_fwhm_unit" ("nm^-1"), "poni" (the
    geometry file), "stages" ([{"axis", "type": rotation|translation, "vector"}], sample side
    first: the file's NXsample transformations)}."""

    name: str

    def beam_at(self, t: float) -> tuple: ...
    def frame_at(self, t: float, exposure: float, roi) -> tuple: ...
    def monitors_at(self, t: float, exposure: float) -> tuple: ...
    def description(self) -> dict: ...


@runtime_checkable
class ScanHook(Protocol):
    """Processing that follows a scan: `scan_started` once its outputs are open (before the
    first trigger), `scan_finished` once its entry is closed and its Redis scan sealed. A
    failing hook is dropped with a warning: acquisition never stops for processing. An
    optional `name` is how other hooks find it (`scan.hook(name)`)."""

    def scan_started(self, scan) -> None: ...
    def scan_finished(self, scan) -> None: ...


@runtime_checkable
class EstimatingHook(Protocol):
    """A hook that can say, before the scan runs (`run=False`), what it will write and hold:
    {"bytes": on disk, "peak_memory_bytes": at once, ...} for a scan of `frames` frames;
    `earlier` holds the figures of the hooks before it, by name (the reconstruction reads the
    integration's npt there)."""

    def estimate(self, frames: int, scan_info: dict, earlier: dict | None = None) -> dict: ...


HookFactory = Callable[[str, Any, Any, dict], list]  # (command, spec, session, context) -> hooks
