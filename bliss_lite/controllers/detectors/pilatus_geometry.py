"""The Pilatus 2M's pixel layout: 3 x 8 modules of 487 x 195 pixels, 172 um, with gaps.

Module columns are 7 pixels apart and module rows 17 pixels apart, which gives the full
frame 1475 x 1679 pixels (numpy shape (1679, 1475)). Gap pixels read -1 on the real detector
and are masked. A ROI is a (row, column, rows, columns) window of the full frame, as the
simulator's tests use small frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIXEL_SIZE = 172e-6  # m
MODULE = (195, 487)  # rows, columns of one module
MODULES = (8, 3)  # module rows, module columns
GAP = (17, 7)  # pixels between module rows, module columns
FULL_SHAPE = (MODULES[0] * MODULE[0] + (MODULES[0] - 1) * GAP[0],
              MODULES[1] * MODULE[1] + (MODULES[1] - 1) * GAP[1])  # (1679, 1475)
GAP_VALUE = -1
MAX_RATE_HZ = 250.0  # full frame


@dataclass(frozen=True)
class Roi:
    row: int = 0
    column: int = 0
    rows: int = FULL_SHAPE[0]
    columns: int = FULL_SHAPE[1]

    def __post_init__(self):
        for name in ("row", "column", "rows", "columns"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name in ("row", "column") else 1):
                raise ValueError(f"ROI {name} must be a whole number >= {0 if name in ('row', 'column') else 1}, got {value!r}")
        if self.row + self.rows > FULL_SHAPE[0] or self.column + self.columns > FULL_SHAPE[1]:
            raise ValueError(f"ROI {self.row}+{self.rows} x {self.column}+{self.columns} is outside the "
                             f"{FULL_SHAPE[0]} x {FULL_SHAPE[1]} frame")

    @classmethod
    def of(cls, value):
        """A Roi from a Roi, (row, column, rows, columns), or None (the full frame)."""
        if value is None:
            return cls()
        return value if isinstance(value, Roi) else cls(*value)

    @property
    def shape(self):
        return (self.rows, self.columns)

    @property
    def slices(self):
        return (slice(self.row, self.row + self.rows), slice(self.column, self.column + self.columns))

    @property
    def is_full(self):
        return self.shape == FULL_SHAPE


def gap_mask(roi: Roi = Roi()) -> np.ndarray:
    """True where a pixel is in a gap between modules (no sensor)."""
    mask = np.ones(FULL_SHAPE, dtype=bool)
    for i in range(MODULES[0]):
        r0 = i * (MODULE[0] + GAP[0])
        for j in range(MODULES[1]):
            c0 = j * (MODULE[1] + GAP[1])
            mask[r0:r0 + MODULE[0], c0:c0 + MODULE[1]] = False
    return mask[roi.slices]
