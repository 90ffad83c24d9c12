"""A set of frame indices kept as sorted, disjoint runs [start, stop): what the integration hook
has received. A flag per frame grows with the scan (1 GB for the 10^9 frames of a 1000^3
scan); patterns come back nearly in order, so the runs stay few and the memory is that of the
gaps (frames still out, or never delivered), not of the scan."""
from __future__ import annotations

import numpy as np


class IndexRanges:
    def __init__(self):
        self.starts = np.zeros(0, np.int64)
        self.stops = np.zeros(0, np.int64)  # exclusive

    def __len__(self):
        """The number of indices held."""
        return int((self.stops - self.starts).sum())

    @property
    def runs(self):
        return len(self.starts)

    def contains(self, indices):
        """A bool per index: held or not."""
        indices = np.asarray(indices, np.int64)
        run = np.searchsorted(self.starts, indices, side="right") - 1
        inside = run >= 0
        held = np.zeros(indices.shape, bool)
        held[inside] = indices[inside] < self.stops[run[inside]]
        return held

    def add(self, indices):
        """Hold these indices too (any order, repeats allowed)."""
        indices = np.unique(np.asarray(indices, np.int64))
        if not len(indices):
            return
        if indices[0] < 0:
            raise ValueError(f"IndexRanges.add: negative index {indices[0]}")
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        starts = np.concatenate([self.starts, indices[np.r_[0, breaks]]])
        stops = np.concatenate([self.stops, indices[np.r_[breaks - 1, len(indices) - 1]] + 1])
        order = np.argsort(starts, kind="stable")
        starts, stops = starts[order], stops[order]
        reach = np.maximum.accumulate(stops)
        first = np.r_[True, starts[1:] > reach[:-1]]  # a run that neither overlaps nor touches the last
        heads = np.flatnonzero(first)
        self.starts, self.stops = starts[heads], np.maximum.reduceat(stops, heads)

    def count_below(self, total):
        """How many of 0 .. total-1 are held."""
        return int(np.clip(np.minimum(self.stops, total) - self.starts, 0, None).sum())

    def gaps_below(self, total):
        """The runs of 0 .. total-1 not held: (starts, stops) arrays."""
        gap_starts = np.r_[0, self.stops]
        gap_stops = np.minimum(np.r_[self.starts, total], total)
        keep = gap_starts < gap_stops
        return gap_starts[keep], gap_stops[keep]

    def missing_below(self, total, chunk=None):
        """The indices of 0 .. total-1 not held, ascending: one array, or arrays of at most
        `chunk` indices one after the other (a scan none of whose frames came back is not
        listed at once)."""
        pieces = self._missing_pieces(total, chunk or max(int(total), 1))
        if chunk is not None:
            return pieces
        return np.concatenate([np.zeros(0, np.int64), *pieces])

    def _missing_pieces(self, total, chunk):
        pending, count = [], 0
        for start, stop in zip(*self.gaps_below(total)):
            while start < stop:
                take = min(stop - start, chunk - count)
                pending.append(np.arange(start, start + take, dtype=np.int64))
                start, count = start + take, count + take
                if count == chunk:
                    yield np.concatenate(pending)
                    pending, count = [], 0
        if pending:
            yield np.concatenate(pending)
