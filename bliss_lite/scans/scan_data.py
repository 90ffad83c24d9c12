"""A scan's data in memory: one buffer per channel, filled by the chain, drained in batches.

The scan loop only appends (a list append per value); the I/O pump takes what is new in one
batch per channel, so the writer and the publisher see each point exactly once and in order.
"""
from __future__ import annotations

import numpy as np


class ChannelBuffer:
    def __init__(self, spec):
        self.spec = spec
        self.points = []
        self.sent = 0  # points already handed to the I/O pump

    def take_new(self):
        if self.sent == len(self.points):
            return None
        new = self.points[self.sent:]
        self.sent += len(new)
        return self.as_array(new)

    def as_array(self, points):
        dtype = np.dtype(self.spec.dtype)
        if not points:
            return np.empty((0, *self.spec.shape), dtype=dtype)
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
        batch = {}
        for name, buffer in self.buffers.items():
            new = buffer.take_new()
            if new is not None:
                batch[name] = new
        return batch

    def count(self, name):
        return len(self.buffers[name].points)

    @property
    def npoints(self):
        """Points complete in every channel."""
        return min((len(b.points) for b in self.buffers.values()), default=0)

    def get_data(self):
        return {name: b.as_array(b.points) for name, b in self.buffers.items()}

    def last_point(self, index=None):
        """{channel: value} of one complete point (the last one by default)."""
        index = self.npoints - 1 if index is None else index
        return {name: b.points[index] for name, b in self.buffers.items()}
