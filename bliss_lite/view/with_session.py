"""`bliss-lite -s SESSION --view [PORT]`: the live view as a child process of the session.

A separate process (not a thread of the session): the view reads Redis like any other
viewer and its rendering never competes with the session's greenlets for the GIL. It is
stopped when the session exits, however it exits.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading

logger = logging.getLogger(__name__)  # its warning reaches stderr as a plain line, configured or not


def start_view(port):
    """Start `bliss-lite view --port PORT` and print its URL line once it listens."""
    child = subprocess.Popen([sys.executable, "-m", "bliss_lite", "view", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    atexit.register(_stop, child)
    first = []
    reader = threading.Thread(target=lambda: first.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(20.0)
    line = first[0].strip() if first else ""
    if child.poll() is not None or not line.startswith("Live view"):
        logger.warning("WARNING: the live view did not start: %s", line or "no answer in 20 s")
        return None
    print(line, flush=True)
    os.environ["BLISS_LITE_VIEW_URL"] = line.split(" on ", 1)[1]  # for scripts of the session
    threading.Thread(target=child.stdout.read, daemon=True).start()  # its later lines must not block it
    return child


def _stop(child):
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
