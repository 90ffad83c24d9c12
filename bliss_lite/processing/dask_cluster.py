"""The Dask cluster a reprocessing runs on: a LocalCluster started here, or one already running.

Why a bounded connect: `Client(address)` to a scheduler that is not there retries quietly; a
mistyped address must instead end `bliss-lite reprocess` within seconds with one line, before
anything is written. `cluster(None)` starts a LocalCluster in this process, one worker process
per core (per GPU with backend "gpu"), one thread each: integration is CPU bound and holds the
GIL between its numpy calls, so processes, not threads, use the cores.
"""
from __future__ import annotations

import contextlib
import os

CONNECT_S = 5.0  # how long to try an address before saying the scheduler is not there
LOCAL = ""  # the address meaning "start a LocalCluster here"


class DaskUnavailable(RuntimeError):
    """No Dask cluster to run on; the message is one line naming the address and the reason."""


def gpu_count():
    """GPUs CuPy sees here (0 without CuPy or a GPU)."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: no GPU worker
        return 0


def usable_cores():
    """The cores this process may run on (its affinity where the OS tells, else all)."""
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 1)


def local_workers(backend="cpu"):
    """One worker per core, or per GPU for backend "gpu" (at least one)."""
    if backend == "gpu":
        return max(gpu_count(), 1)
    return usable_cores()


@contextlib.contextmanager
def cluster(address=LOCAL, backend="cpu", workers=None, timeout=CONNECT_S):
    """A dask.distributed Client: of a new LocalCluster (`address` empty or None; `workers`
    processes, default `local_workers(backend)`), else of the scheduler at `address`,
    DaskUnavailable if it does not answer within `timeout` seconds. Both closed on exit."""
    from distributed import Client, LocalCluster

    if not address:
        local = LocalCluster(n_workers=workers or local_workers(backend), threads_per_worker=1, processes=True,
                             dashboard_address=None, silence_logs=40)
        try:
            with Client(local) as client:
                yield client
        finally:
            local.close()
        return
    try:
        client = Client(address, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError: all mean "not there"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DaskUnavailable(f"no Dask scheduler at {address} (tried {timeout:g} s): {reason}") from None
    try:
        yield client
    finally:
        client.close()
