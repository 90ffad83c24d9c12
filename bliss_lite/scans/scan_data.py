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

    def peek_new(self):
        """(array of the points not sent yet, their number); None when there are none."""
        if self.sent == len(self.points):
            return None
        new = self.points[self.sent:]
        return self.as_array(new), len(new)

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

    def get_data(self):
        return {name: b.as_array(b.points) for name, b in self.buffers.items()}

    def last_point(self, index=None):
        """{channel: value} of one complete point (the last one by default)."""
        index = self.npoints - 1 if index is None else index
        return {name: b.points[index] for name, b in self.buffers.items()}
