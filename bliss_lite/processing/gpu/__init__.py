"""GPU backends (NVIDIA, through CuPy) for integration and reconstruction.

Nothing here imports CuPy at import time: CI and most beamline hosts have no GPU, and
importing bliss_lite must stay cheap. `resolve_backend` says which backend a call gets:
"cpu" always works, "gpu" needs CuPy and a CUDA device (else GpuUnavailableError saying
why), "auto" takes the GPU when there is one.
"""
from __future__ import annotations

import functools

BACKENDS = ("cpu", "gpu", "auto")


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
    if backend == "cpu":
        return "cpu"
    reason = unavailable_reason()
    if reason is None:
        return "gpu"
    if backend == "auto":
        return "cpu"
    raise GpuUnavailableError(f"{what}: backend 'gpu' needs CuPy and an NVIDIA GPU, but {reason}; "
                              "use backend='cpu' or 'auto'")
