"""The text protocol between the Pilatus driver and the simulator process (simulators/).

Lines of ASCII, one command each, answered by one line `OK [...]` or `ERR message`:

    ROI row column rows columns       PREPARE nb_frames expo latency mode
    START x omega z                   TRIGGER t x omega z        GATE t_open t_close x omega z
    STOP                              PING
    INJECT [drop=3,5] [twice=7] [stop_after=N] [close_after=N] [close] [delay=S] [garble=N]

Frames come back on the same connection, whenever they are ready, as a header line
`FRAME number t nbytes` followed by exactly nbytes of the compressed (Bitshuffle-LZ4) frame.
The beam position (x, omega, z) travels with each trigger: the simulated sample lives in the
simulator, the stages in the control process (a real detector needs no such side channel).
"""
from __future__ import annotations

DEFAULT_TIMEOUT = 2.0  # s to wait for a reply before the driver reports the detector silent


def frame_header(number, t, nbytes):
    return f"FRAME {number} {t!r} {nbytes}\n".encode()


def parse_frame_header(line):
    _, number, t, nbytes = line.split()
    return int(number), float(t), int(nbytes)


def parse_ints(text):
    return {int(v) for v in text.split(",") if v}
