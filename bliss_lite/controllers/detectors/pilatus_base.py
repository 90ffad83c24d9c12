"""What both Pilatus 2M drivers share: the simulator in this process (`pilatus.Pilatus2M`) and
the driver of the simulator process over TCP (`pilatus_remote.RemotePilatus`) are siblings
built on it, each implementing bliss_lite.protocols.Detector.

It holds the detector as the scan sees it: name, ROI and frame shape, the rate the ROI
allows, the arming settings (frames, exposure, latency, trigger mode), the frame counter, the
`on_frame` callback and `frames_per_file`, how many frames each data file of a scan holds (as
LImA's saving does; the scan hands it to the writer). How frames are made and delivered is
each driver's own business.
"""
from __future__ import annotations

import numbers

import numpy as np

from bliss_lite.controllers.detectors.pilatus_geometry import FULL_SHAPE, MAX_RATE_HZ, PIXEL_SIZE, Roi
from bliss_lite.data import bslz4
from bliss_lite.data.scan_files import DEFAULT_FRAMES_PER_FILE

TRIGGER_MODES = ("INTERNAL", "EXTERNAL_TRIGGER", "EXTERNAL_GATE")
MIN_LATENCY = 0.00095  # s: the Pilatus 2M's readout time between frames


class DetectorError(RuntimeError):
    pass


class PilatusBase:
    controller_name = "pilatus"
    dtype = "int32"
    unit = "counts"
    pixel_size = PIXEL_SIZE
    min_latency = MIN_LATENCY

    def __init__(self, name, sample=None, roi=None):
        self.name = name
        self.sample = sample
        self._roi = Roi.of(roi)
        self.trigger_mode = "INTERNAL"
        self.nb_frames = 1
        self.expo_time = 0.001
        self.latency_time = MIN_LATENCY
        self.frame_counter = 0  # frames taken since the last arm
        self.on_frame = None
        self.rate_cap = None  # frames/s: replaces the detector's own limit (benchmarks of the pipeline)
        self._frames_per_file = DEFAULT_FRAMES_PER_FILE

    # -- saving ------------------------------------------------------------------------------
    @property
    def frames_per_file(self):
        """Frames in each data file of a scan (the last one holds the rest)."""
        return self._frames_per_file

    @frames_per_file.setter
    def frames_per_file(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{self.name}: frames_per_file must be a whole number >= 1, got {value!r}")
        self._frames_per_file = int(value)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def roi(self):
        return self._roi

    @roi.setter
    def roi(self, value):
        """A Roi, or (row, column, rows, columns); None for the full frame."""
        self._roi = Roi.of(value)
        self._roi_changed()

    def _roi_changed(self):
        """What a driver does when the ROI changes (the remote one tells its detector)."""

    @property
    def shape(self):
        return self.roi.shape

    @property
    def fullname(self):
        return f"{self.controller_name}:{self.name}"

    @property
    def max_rate(self):
        if self.rate_cap is not None:
            return self.rate_cap
        half = FULL_SHAPE[0] * FULL_SHAPE[1] / 2
        return 2 * MAX_RATE_HZ if self.roi.rows * self.roi.columns <= half else MAX_RATE_HZ

    def __info__(self):
        return (f"Pilatus 2M simulator {self.name}: {self.shape[1]} x {self.shape[0]} pixels "
                f"(ROI {self.roi.row},{self.roi.column}), 172 um, int32, up to {self.max_rate:g} frames/s\n"
                f"  trigger mode {self.trigger_mode}, exposure {self.expo_time:g} s, latency {self.latency_time:g} s, "
                f"frame counter {self.frame_counter}\n"
                f"  saving: {self.frames_per_file} frames per data file")


def decode(chunk, shape):
    """A compressed frame (the bytes `on_frame` delivers) as an int32 array of `shape`."""
    return bslz4.decompress(chunk, shape, np.int32)
