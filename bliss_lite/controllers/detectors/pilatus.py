"""A simulated Pilatus 2M: geometry, timing, trigger modes, frame counter, compressed frames.

Like the real detector it is armed for N frames with an exposure and a latency time
(exposure + latency >= 1 / max rate: 250 Hz at full frame, 500 Hz with a ROI of at most half
the frame, as the Pilatus3 ROI modes), then takes frames:
- INTERNAL: by itself, one every exposure + latency after `start()`;
- EXTERNAL_TRIGGER: one per `trigger(t)` (t: the trigger's time, e.g. from a position-based
  master), exposing [t, t + exposure];
- EXTERNAL_GATE: one per `gate(t_open, t_close)`, exposing while the gate is open.
Each frame is the sample's diffraction (via `sample.frame`) at the middle of its exposure,
int32, gaps at -1, compressed once to Bitshuffle-LZ4 (the HDF5 chunk bytes) and handed to the
`on_frame(frame_number, chunk, time)` callback with the detector's own frame counter, so the
scan can tell a dropped or doubled frame. `cbf_directory` also writes one CBF per frame
(byte-offset, fabio), as a Pilatus does.
"""
from __future__ import annotations

import time
from pathlib import Path

import gevent

from bliss_lite.controllers.detectors.pilatus_base import MIN_LATENCY, TRIGGER_MODES, DetectorError, PilatusBase
from bliss_lite.data import bslz4

now = time.monotonic


class Pilatus2M(PilatusBase):
    """The simulator: renders each frame of its sample and compresses it, in this process."""

    def __init__(self, name, sample=None, roi=None, cbf_directory=None):
        super().__init__(name, sample, roi)
        self.cbf_directory = Path(cbf_directory) if cbf_directory else None
        self.frame_bank = None  # pre-rendered compressed frames replayed in turn (throughput runs)
        self.faults = {}  # frame numbers dropped or delivered twice (inject)
        self._armed = False
        self._internal = None

    # -- acquisition -------------------------------------------------------------------------
    def prepare(self, nb_frames, expo_time, latency_time=MIN_LATENCY, trigger_mode="INTERNAL"):
        """Check and arm; refuses settings the detector cannot do, naming them."""
        if trigger_mode not in TRIGGER_MODES:
            raise DetectorError(f"{self.name}: trigger mode must be one of {', '.join(TRIGGER_MODES)}, got {trigger_mode!r}")
        if not isinstance(nb_frames, int) or nb_frames < 1:
            raise DetectorError(f"{self.name}: number of frames must be a whole number >= 1, got {nb_frames!r}")
        if not expo_time > 0:
            raise DetectorError(f"{self.name}: exposure time must be > 0, got {expo_time!r}")
        latency_time = max(float(latency_time), MIN_LATENCY)
        period = expo_time + latency_time
        if period < 1.0 / self.max_rate - 1e-9:
            raise DetectorError(f"{self.name}: exposure {expo_time * 1e3:g} ms + latency {latency_time * 1e3:g} ms "
                                f"is faster than the maximum {self.max_rate:g} frames/s of this ROI")
        if self.sample is None and self.frame_bank is None:
            raise DetectorError(f"{self.name}: no sample to diffract (configure `sample:`)")
        self.nb_frames, self.expo_time, self.latency_time = nb_frames, float(expo_time), latency_time
        self.trigger_mode = trigger_mode
        self.frame_counter = 0
        if self.cbf_directory is not None:
            self.cbf_directory.mkdir(parents=True, exist_ok=True)
        self._armed = True

    def start(self):
        if not self._armed:
            raise DetectorError(f"{self.name}: start before prepare")
        if self.trigger_mode == "INTERNAL":
            self._internal = gevent.spawn(self._run_internal, now())

    def _run_internal(self, t0):
        period = self.expo_time + self.latency_time
        for i in range(self.nb_frames):
            t = t0 + i * period
            remaining = t + self.expo_time - now()
            if remaining > 0:
                gevent.sleep(remaining)
            self._take(t, self.expo_time)

    def trigger(self, t):
        """A trigger pulse at monotonic time t (EXTERNAL_TRIGGER): one frame."""
        if self.trigger_mode != "EXTERNAL_TRIGGER":
            raise DetectorError(f"{self.name}: trigger in {self.trigger_mode} mode")
        self._take(t, self.expo_time)

    def gate(self, t_open, t_close):
        """A gate pulse (EXTERNAL_GATE): one frame exposed while it is open."""
        if self.trigger_mode != "EXTERNAL_GATE":
            raise DetectorError(f"{self.name}: gate in {self.trigger_mode} mode")
        self._take(t_open, t_close - t_open)

    def _take(self, t, exposure):
        if not self._armed or self.frame_counter >= self.nb_frames:
            return  # a real detector ignores triggers once its frames are taken
        index = self.frame_counter
        self.frame_counter += 1
        if self.frame_bank is not None:
            chunk = self.frame_bank[index % len(self.frame_bank)]
        else:
            frame = self.render(t + exposure / 2, exposure)
            chunk = bslz4.compress(frame)
            if self.cbf_directory is not None:
                self._write_cbf(index, frame, exposure)
        if self.on_frame is None:
            return
        if index in self.faults.get("drop", ()):
            return
        self.on_frame(index, chunk, t)
        if index in self.faults.get("twice", set()):
            self.on_frame(index, chunk, t)

    def inject(self, drop=(), twice=()):
        """Test faults: frames (by number) never delivered, or delivered twice."""
        self.faults = {"drop": set(drop), "twice": set(twice)}

    def render(self, t, exposure):
        """The int32 frame of the sample at time t (stage positions then)."""
        frame, _ = self.sample.frame_at(t, exposure, self.roi)
        return frame

    def _write_cbf(self, index, frame, exposure):
        import fabio.cbfimage

        header = {"Exposure_time": f"{exposure:.6f} s", "Pixel_size": "172e-6 m x 172e-6 m"}
        fabio.cbfimage.CbfImage(data=frame, header=header).write(
            str(self.cbf_directory / f"{self.name}_{index:05d}.cbf"))

    def wait(self, timeout):
        """Until every frame is taken (INTERNAL) or `timeout` s passed."""
        if self._internal is not None:
            self._internal.join(timeout)

    def stop(self):
        self._armed = False
        if self._internal is not None:
            self._internal.kill()
            self._internal = None

    def __repr__(self):
        return f"<Pilatus2M {self.name} {self.shape}>"
