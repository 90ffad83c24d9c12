"""The sampling grid of a tomography slice and the ramp filter on it, shared by the CPU
reconstructions (`fbp.py`, `sirt.py`) and the GPU ones (`gpu/fbp.py`, `gpu/sirt.py`): both
must see the same grid, index lines, pixel area and filter for their images to agree, and
neither side imports the other to get them.

Conventions (parallel-beam Radon; any sample, simulated or real): the beam at motor position x through
the sample turned by omega sees the line u cos(omega) + v sin(omega) = x - centre, where
`centre` is the motor x of the rotation axis (mm). The image has n x n pixels spanning the
scanned x range (minus the centre) in both u (columns) and v (rows), pixel centres in the
middle of n equal intervals (`image_axis`).

The ramp filter is built in frequency space (zero padding to >= 2 n_x, Kak & Slaney's
band-limited ramp, optional window); `filter_matrix` is the equivalent n_x x n_x Toeplitz
matrix, used up to MATRIX_FILTER_MAX_NX positions (above, an FFT of `filter_response`).
No CuPy here: a CuPy sinogram is only told apart (`as_stack`), never made.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from bliss_lite.processing.gpu import on_device

MATRIX_FILTER_MAX_NX = 1024  # above this, the FFT filter beats the Toeplitz sgemm
WINDOWS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


# --- grid --------------------------------------------------------------------------------------

def check_grid(x_mm, omega_deg):
    """(x_mm, omega_deg, dx) as float arrays and the x step, or ValueError: x equally spaced
    (at least 2 positions), omega not empty."""
    x_mm = np.asarray(x_mm, float)
    omega_deg = np.asarray(omega_deg, float)
    if x_mm.ndim != 1 or x_mm.size < 2:
        raise ValueError(f"x_mm must be 1-D with at least 2 positions, got shape {x_mm.shape}")
    dx = np.diff(x_mm)
    if not np.allclose(dx, dx[0], rtol=1e-6, atol=0) or dx[0] == 0:
        raise ValueError("x_mm must be equally spaced")
    if omega_deg.ndim != 1 or omega_deg.size < 1:
        raise ValueError(f"omega_deg must be 1-D and not empty, got shape {omega_deg.shape}")
    return x_mm, omega_deg, float(dx[0])


def as_stack(sino):
    """(n_omega, n_x, nq) view of a sinogram and whether it was one q bin; a CuPy sinogram
    stays a CuPy array (the GPU path reads it where it is)."""
    if not on_device(sino):
        sino = np.asarray(sino)
    if sino.ndim == 2:
        return sino[..., None], True
    if sino.ndim != 3:
        raise ValueError(f"sinogram must be (n_omega, n_x) or (n_omega, n_x, nq), got shape {sino.shape}")
    return sino, False


def image_axis(x_mm, centre, n=None):
    """Pixel centres (mm, sample frame) of the reconstruction grid, for u and v alike: n pixels
    over the scanned x range, shifted by the centre of rotation."""
    x_mm = np.asarray(x_mm, float)
    n = x_mm.size if n is None else int(n)
    step = abs(x_mm[1] - x_mm[0])
    lo, width = x_mm.min() - step / 2, step * x_mm.size
    return lo + (np.arange(n) + 0.5) * width / n - centre


def pixel_area(x_mm, n):
    """The area (mm^2) of one of the n x n image pixels: the forward projector's scale."""
    axis = image_axis(x_mm, 0.0, n)
    return (axis[1] - axis[0]) ** 2 if n > 1 else 1.0


def index_lines(x_mm, omega_deg, centre, n=None):
    """(f0, dfc, dfr): pixel (row, col) projects at angle a onto the fractional detector index
    f0[a] + col * dfc[a] + row * dfr[a] (index k at x_mm[k])."""
    x_mm, omega_deg, dx = check_grid(x_mm, omega_deg)
    axis = image_axis(x_mm, centre, n)
    g0, dg = axis[0], (axis[1] - axis[0]) if axis.size > 1 else 1.0
    om = np.radians(omega_deg)
    c, s = np.cos(om), np.sin(om)
    f0 = (g0 * c + g0 * s + centre - x_mm[0]) / dx
    return f0, dg * c / dx, dg * s / dx


# --- filter ------------------------------------------------------------------------------------

def filter_response(n_x, window="ramp"):
    """(P, H): the padded length and the real frequency response (rfft bins) of the windowed
    band-limited ramp, for samples one unit apart (divide by dx for mm)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown filter window {window!r}; choose from {', '.join(WINDOWS)}")
    size = scipy.fft.next_fast_len(2 * n_x, real=True)  # >= 2 n_x - 1: linear, not circular
    k = np.arange(size)
    m = np.minimum(k, size - k)
    h = np.where(m % 2 == 1, -1.0 / (np.pi * np.maximum(m, 1)) ** 2, 0.0)
    h[0] = 0.25  # Kak & Slaney (3.61): the sampled band-limited ramp, no DC offset
    response = scipy.fft.rfft(h).real
    nu = scipy.fft.rfftfreq(size)  # cycles per sample, 0 .. 0.5
    response *= {"ramp": np.ones_like(nu), "shepp-logan": np.sinc(nu), "cosine": np.cos(np.pi * nu),
                 "hamming": 0.54 + 0.46 * np.cos(2 * np.pi * nu),
                 "hann": 0.5 * (1 + np.cos(2 * np.pi * nu))}[window]
    return size, response


@functools.lru_cache(maxsize=8)
def filter_matrix(n_x, dx, window="ramp"):
    """The filter as an n_x x n_x Toeplitz matrix (float32, 1/mm): filtered = M @ projection."""
    size, response = filter_response(n_x, window)
    kernel = scipy.fft.irfft(response, n=size)
    lag = (np.arange(n_x)[:, None] - np.arange(n_x)[None, :]) % size
    matrix = (kernel[lag] / dx).astype(np.float32)
    matrix.flags.writeable = False
    return matrix
