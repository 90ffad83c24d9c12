"""A scan's data in memory: one buffer per channel, filled by the chain, drained in batches.

The scan loop only appends (a list append per value); the I/O pump takes what is new in one
batch per channel, so the writer and the publisher see each point exactly once and in order.
Frames (encoding "bslz4") stay compressed, as the detector made them; once written, they are
let go when they pass KEEP_FRAME_BYTES, and `get_data` then reads them from the file.
"""
from __future__ import annotations

import numpy as np

from bliss_lite.data import bslz4

KEEP_FRAME_BYTES = 256 * 2**20


class ChannelBuffer:
    def __init__(self, spec):
        self.spec = spec
        self.points = []
        self.sent = 0  # points already handed to the I/O pump
        self.encoded = spec.encoding != "raw"
        self.kept_bytes = 0
        self.released = 0  # frames (from the first) no longer in memory

    def peek_new(self):
        """(array of the points not sent yet, their number); None when there are none."""
        if self.sent == len(self.points):
            return None
        new = self.points[self.sent:]
        if self.encoded:
            self.kept_bytes += sum(len(chunk) for chunk in new)
            return list(new), len(new)
        return self.as_array(new), len(new)

    def release_sent(self):
        """Let written frames go once they hold more than KEEP_FRAME_BYTES."""
        if not self.encoded or self.kept_bytes <= KEEP_FRAME_BYTES:
            return
        for i in range(self.released, self.sent):
            self.points[i] = None
        self.released = self.sent
        self.kept_bytes = 0

    @property
    def complete_in_memory(self):
        return self.released == 0

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
        return len(self.buffers[name].points)

    @property
    def npoints(self):
        """Points complete in every channel."""
        return min((len(b.points) for b in self.buffers.values()), default=0)

    def get_data(self, names=None):
        return {name: b.as_array(b.points) for name, b in self.buffers.items() if names is None or name in names}

    def release_sent(self):
        for buffer in self.buffers.values():
            buffer.release_sent()

    def last_point(self, index=None):
        """{channel: value} of one complete point (the last one by default)."""
        index = self.npoints - 1 if index is None else index
        return {name: b.points[index] for name, b in self.buffers.items()}
