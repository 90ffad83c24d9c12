"""`bliss-lite follow`: print the points of the next scans as they arrive, from any process."""
from __future__ import annotations

import sys

import numpy as np

from bliss_lite.data.client import ScanClient


def _row(values):
    return "  ".join(f"{v:>12.6g}" for v in values)


def print_scan(scan, out, timeout_ms=None):
    """Print a scan's scalar channels as a table, one row per point as soon as it is complete.
    Only rows not printed yet are held; a stream trimmed by its memory budget (a late reader
    of a long scan) starts at the first row every channel still has."""
    scalars = [name for name, spec in scan.channels.items() if spec.shape == ()]
    print(f"Scan {scan.number} {scan.name} (session {scan.session}) {scan.key}", file=out)
    print(f"{'#':>6}  " + "  ".join(f"{n:>12}" for n in scalars), file=out, flush=True)
    pending = {name: {} for name in scalars}  # index -> value, rows not printed yet
    first = {}  # channel -> the first index its stream gave
    row, printed = None, 0
    for name, index, points in scan.follow(scalars, timeout_ms=timeout_ms):
        first.setdefault(name, index)
        pending[name].update(zip(range(index, index + len(points)), np.asarray(points).tolist(), strict=True))
        if row is None:
            if len(first) < len(scalars):
                continue
            row = max(first.values())
            for values in pending.values():  # rows some channel no longer has: never complete
                for stale in [i for i in values if i < row]:
                    del values[stale]
        while all(row in values for values in pending.values()):
            print(f"{row:>6}  " + _row(pending[n].pop(row) for n in scalars), file=out)
            row, printed = row + 1, printed + 1
        out.flush()
    print(f"End of scan {scan.number}: {scan.end_reason or scan.state}, {printed} points", file=out, flush=True)
    return printed


def follow(client, count=None, out=None, timeout_ms=None):
    """Follow the next `count` scans (forever when None); returns how many were followed.
    A server that goes away raises `client.RedisLost`, naming it (password masked)."""
    out = out or sys.stdout
    scans = ScanClient(client)
    scans.start_from_now()
    followed = 0
    while count is None or followed < count:
        scan = scans.wait_next_scan(timeout_ms)
        if scan is None:
            break
        print_scan(scan, out, timeout_ms)
        followed += 1
    return followed
