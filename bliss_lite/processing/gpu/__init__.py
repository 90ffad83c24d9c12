"""GPU backends (NVIDIA, through CuPy) for integration and reconstruction.

Nothing here imports CuPy at import time: CI and most beamline hosts have no GPU, and
importing bliss_lite must stay cheap. `resolve_backend` says which backend a call gets:
"cpu" always works, "gpu" needs CuPy and a CUDA device (else GpuUnavailableError saying
why), "auto" takes the GPU when there is one. `checked_option` is the same for a user's option
(a hook's, a job's): every refusal a ValueError naming the choices. The array helpers let code
that takes NumPy or CuPy arrays tell them apart without importing CuPy.
"""
from __future__ import annotations

import functools

from bliss_lite.protocols import BACKENDS, Backend


class GpuUnavailableError(RuntimeError):
    """backend="gpu" was asked for where CuPy or a CUDA device is missing."""


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why the GPU backend cannot run here, or None when it can (looked up once)."""
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA library that fails to load
        return f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device
        return f"CuPy finds no CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "CuPy finds no CUDA device"


def available() -> bool:
    return unavailable_reason() is None


def resolve_backend(backend: str, what: str = "processing") -> str:
    """"cpu" or "gpu" for a requested backend ("cpu", "gpu" or "auto")."""
    if backend not in BACKENDS:
        raise ValueError(f"{what}: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == Backend.CPU:
        return Backend.CPU
    reason = unavailable_reason()
    if reason is None:
        return Backend.GPU
    if backend == Backend.AUTO:
        return Backend.CPU
    raise GpuUnavailableError(f"{what}: backend 'gpu' needs CuPy and an NVIDIA GPU, but {reason}; "
                              "use backend='cpu' or 'auto'")


def checked_option(backend, what: str = "processing") -> str:
    """A backend option as given (for later resolution), refused as a ValueError where it
    cannot run here: unknown, or "gpu" without CuPy and a GPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        resolve_backend(backend, what)
    except GpuUnavailableError as exc:
        raise ValueError(str(exc)) from None
    return backend


def on_device(array) -> bool:
    """Whether an array is a CuPy array (on the GPU); CuPy is not imported to find out."""
    return type(array).__module__.startswith("cupy")


def to_host(array):
    """A NumPy array of a NumPy or CuPy one (a CuPy array is copied off the GPU)."""
    import numpy as np

    return array.get() if on_device(array) else np.asarray(array)


def take_rows(array, rows):
    """array[rows] for a NumPy or CuPy array, `rows` a NumPy mask or index array (CuPy
    indexes with its own arrays)."""
    if not on_device(array):
        return array[rows]
    import cupy
    import numpy as np

    rows = np.asarray(rows)
    return array[cupy.asarray(np.flatnonzero(rows) if rows.dtype == bool else rows)]
