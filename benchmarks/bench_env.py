"""A private run directory and data root for one benchmark run, its Redis stopped at the end."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path


@contextlib.contextmanager
def private_environment(prefix):
    """Point BLISS_LITE_RUN_DIR and BLISS_LITE_DATA_ROOT at a fresh /tmp directory (short: a
    unix socket lives there), use the private Redis, stop it and remove everything after, also
    when the run is ended by SIGTERM (`timeout`): a killed benchmark left its Redis and workers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally below
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp:
        run_dir = Path(tmp) / "run"
        os.environ["BLISS_LITE_RUN_DIR"] = str(run_dir)
        os.environ["BLISS_LITE_DATA_ROOT"] = str(Path(tmp) / "data")
        os.environ.pop("BLISS_LITE_REDIS_URL", None)
        try:
            yield Path(tmp)
        finally:
            from bliss_lite.data.redis_server import stop_server

            stop_server(run_dir)


def timed(call, repeat):
    """Median seconds of `repeat` calls after one warm-up call (kernels compiled, caches
    filled), so that one slow call on a shared machine does not set the figure."""
    import time

    import numpy as np

    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
