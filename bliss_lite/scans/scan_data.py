"""A scan's data in memory: one buffer per channel, filled by the chain, drained in batches.

The scan loop only appends (a list append per value); the I/O pump takes what is new in one
batch per channel, so the writer and the publisher see each point exactly once and in order.
Frames (encoding "bslz4") stay compressed, as the detector made them.

Nothing grows with the length of a saved scan: once written (and flushed) to the file, points
are let go, the oldest first, so that a buffer keeps a window of its newest points (for the
display and hooks a little behind) of at most KEEP_FRAME_BYTES of frames, or KEEP_POINTS
scalar points. The window slides (a few points at a time, RELEASE_STEP for scalars) rather
than emptying: the scan process's memory is flat once the window is full, not a sawtooth.
Indexes are the scan's point numbers: a buffer holds its points from `base` on; the scan
reads what it let go back from its file (Scan.points, Scan.get_data). An unsaved scan keeps
everything: it has no file to read back from.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.data import bslz4

KEEP_FRAME_BYTES = 64 * 2**20  # compressed frames in memory: ~40 full Pilatus 2M frames
KEEP_POINTS = 20_000  # per scalar channel: ~0.6 MB of Python floats (80 s at 250 Hz)
RELEASE_STEP = 2_000  # scalar points let go at a time once the window is full


class ChannelBuffer:
    def __init__(self, spec):
        self.spec = spec
        self.points = []  # the points from `base` on
        self.base = 0  # the scan's index of points[0]: points before it were let go
        self.sent = 0  # points handed to the I/O pump (an index of the scan)
        self.encoded = spec.encoding != "raw"
        self.kept_bytes = 0  # bytes of the frames sent and still in memory (encoded channels)

    def __len__(self):
        """Points taken so far (in memory or let go)."""
        return self.base + len(self.points)

    def peek_new(self):
        """(array of the points not sent yet, their number); None when there are none."""
        if self.sent == len(self):
            return None
        new = self.points[self.sent - self.base:]
        if self.encoded:
            self.kept_bytes += sum(len(chunk) for chunk in new)
            return list(new), len(new)
        return self.as_array(new), len(new)

    def release_sent(self):
        """Let the oldest written points go: frames beyond KEEP_FRAME_BYTES, scalar points
        beyond KEEP_POINTS (RELEASE_STEP at a time). Points not yet sent always stay."""
        if self.encoded:
            index, excess = self.base, self.kept_bytes - KEEP_FRAME_BYTES
            while excess > 0 and index < self.sent:
                size = len(self.points[index - self.base])
                excess, self.kept_bytes, index = excess - size, self.kept_bytes - size, index + 1
            self._drop_to(index)
        elif len(self.points) > KEEP_POINTS:
            self._drop_to(max(self.base, min(self.sent, len(self) - KEEP_POINTS + RELEASE_STEP)))

    def _drop_to(self, index):
        del self.points[:index - self.base]
        self.base = index

    @property
    def released(self):
        """Points (from the first) no longer in memory."""
        return self.base

    @property
    def complete_in_memory(self):
        return self.base == 0

    def in_memory(self, start, stop):
        """Points start..stop (scan indexes) if they are all in memory, else None."""
        if start < self.base:
            return None
        return self.points[start - self.base:stop - self.base]

    def as_array(self, points):
        dtype = np.dtype(self.spec.dtype)
        if not points:
            return np.empty((0, *self.spec.shape), dtype=dtype)
        if self.encoded:
            return np.stack([bslz4.decompress(chunk, self.spec.shape, dtype) for chunk in points])
        return np.asarray(points, dtype=dtype).reshape((len(points), *self.spec.shape))


class ScanData:
    """Channel name -> buffer; `add_point` for step scans, `add_points` for batches."""

    def __init__(self, specs):
        self.specs = {spec.name: spec for spec in specs}
        self.buffers = {spec.name: ChannelBuffer(spec) for spec in specs}

    def add_point(self, values):
        buffers = self.buffers
        for name, value in values.items():
            buffers[name].points.append(value)

    def add_points(self, values):
        for name, points in values.items():
            self.buffers[name].points.extend(list(points))

    def take_new(self):
        """{channel: array of the points not taken yet} (channels with nothing new left out)."""
        new = {name: b.peek_new() for name, b in self.buffers.items()}  # a bad value raises here
        batch = {}
        for name, item in new.items():  # ...before any point counts as sent
            if item is not None:
                batch[name] = item[0]
                self.buffers[name].sent += item[1]
        return batch

    def count(self, name):
        return len(self.buffers[name])

    @property
    def npoints(self):
        """Points complete in every channel."""
        return min((len(b) for b in self.buffers.values()), default=0)

    def get_data(self, names=None):
        """{channel: array} of the points in memory (all of them while nothing was let go)."""
        return {name: b.as_array(b.points) for name, b in self.buffers.items() if names is None or name in names}

    def release_sent(self):
        for buffer in self.buffers.values():
            buffer.release_sent()

    def last_point(self, index=None):
        """{channel: value} of one complete point (the last one by default; a recent one)."""
        index = self.npoints - 1 if index is None else index
        return {name: b.points[index - b.base] for name, b in self.buffers.items()}
