"""The text protocol between the socket motor driver and its controller (simulators/motor_server.py).

Lines of ASCII, one command each, answered by one line `OK [...]` or `ERR message`; positions,
velocities and accelerations in steps, steps/s, steps/s^2, as controllers speak:

    INIT axis steps velocity acceleration    POS axis        STATE axis (READY MOVING LIMPOS LIMNEG FAULT)
    MOVE axis target [axis target ...]       STOP axis ...   SETPOS axis steps
    VEL axis [v]    ACC axis [a]             AXES            PING
    CROSS axis steps (monotonic time the motion passes there, or `none`: position compare)
    POSAT axis t     (the position at monotonic time t: the encoder latched by a trigger)

CROSS and POSAT let continuous scans fire and record triggers as a controller's position-
compare output and encoder latch do; simulator and driver share the host's monotonic clock.

Faults for tests: `INJECT drop` (the connection closes instead of the next reply), `INJECT
delay S`, `INJECT garble N` (N replies garbled), `INJECT silent` (no more replies), `INJECT
stall AXIS` (frozen mid-move, still MOVING), `INJECT limit AXIS LOW HIGH` (switches, in steps,
`none` for no switch), `INJECT fault AXIS`, `INJECT clear`.
"""
from __future__ import annotations

DEFAULT_TIMEOUT = 1.0  # s to wait for a reply before the driver reports the controller silent
STALL_TIMEOUT = 1.0  # s a moving axis may stay still before the driver calls it stalled
