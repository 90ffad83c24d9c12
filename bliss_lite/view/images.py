"""Images for the live view: detector frames, maps and sinograms as small colour PNGs.

Rendered once per new data version on the server and shared by every viewer, so the cost does
not grow with the number of pages open. Frames are decimated by block maxima (a Bragg spot of
one pixel stays visible at any zoom-out), shown in log scale with a colormap, gap pixels grey.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from bliss_lite.controllers.detectors.pilatus_geometry import GAP_VALUE

GAP_RGB = (128, 128, 128)
EMPTY_RGB = (255, 255, 255)
MAX_FRAME_SIDE = 512  # pixels of the longer side of a decimated frame


@lru_cache(maxsize=8)
def colormap(name="viridis"):
    """(256, 3) uint8 lookup table of a matplotlib colormap (the same colours as the export)."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def decimation(shape, max_side=MAX_FRAME_SIDE):
    """The integer block size that brings the longer side of `shape` under max_side."""
    return max(1, -(-max(shape) // max_side))


def block_max(frame, block):
    """Maximum of each block x block tile (the edges padded with the frame's minimum)."""
    if block == 1:
        return frame
    rows, cols = frame.shape
    pad_r, pad_c = -rows % block, -cols % block
    if pad_r or pad_c:
        frame = np.pad(frame, ((0, pad_r), (0, pad_c)), constant_values=frame.min())
    r, c = frame.shape
    return frame.reshape(r // block, block, c // block, block).max(axis=(1, 3))


def frame_levels(frame):
    """(decimated log10(1 + counts) image, gap mask) of a detector frame: a block counts as gap
    only when every pixel in it is a gap."""
    frame = np.asarray(frame)
    block = decimation(frame.shape)
    small = block_max(frame, block)
    gaps = small == GAP_VALUE if np.issubdtype(frame.dtype, np.integer) else ~np.isfinite(small)
    levels = np.log10(1.0 + np.clip(small.astype(np.float32), 0, None))
    return levels, gaps


def to_rgb(values, masked=None, masked_rgb=GAP_RGB):
    """(rows, cols, 3) uint8: values through the colormap over their finite unmasked range;
    masked or non-finite pixels in masked_rgb."""
    values = np.asarray(values, np.float32)
    bad = ~np.isfinite(values)
    if masked is not None:
        bad |= masked
    good = values[~bad]
    lo = float(good.min()) if good.size else 0.0
    hi = float(good.max()) if good.size else 1.0
    span = hi - lo if hi > lo else 1.0
    index = np.clip((np.nan_to_num(values, nan=lo) - lo) / span * 255, 0, 255).astype(np.uint8)
    rgb = colormap()[index]
    rgb[bad] = masked_rgb
    return rgb


def png(rgb, scale=1):
    """PNG bytes of an RGB image, each pixel drawn scale x scale (maps of a few pixels stay
    readable); fast compression: these images live a fraction of a second."""
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def frame_png(frame):
    levels, gaps = frame_levels(frame)
    return png(to_rgb(levels, gaps))


def map_png(image, filled=None, min_side=256):
    """A map or sinogram (2-D float) as PNG; pixels not measured yet (filled False) white,
    enlarged by an integer factor to at least min_side pixels."""
    image = np.asarray(image, np.float32)
    masked = None if filled is None else ~np.asarray(filled, bool)
    rgb = to_rgb(image, masked, masked_rgb=EMPTY_RGB)
    scale = max(1, min_side // max(1, max(image.shape)))
    return png(rgb, scale)


def mesh_image(values, shape, backnforth):
    """(slow, fast) image of mesh points in measured order: every other line reversed for
    back-and-forth scans, points not measured yet NaN (the live page and the export)."""
    slow, fast = shape
    grid = np.full(slow * fast, np.nan)
    values = np.asarray(values, dtype=float)[:slow * fast]
    grid[:len(values)] = values
    grid = grid.reshape(slow, fast)
    if backnforth:
        grid[1::2] = grid[1::2, ::-1].copy()
    return grid
