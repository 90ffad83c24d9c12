"""SCANS: the session's last scans, newest last, found by position or by scan number.

`SCANS[-1]` is the last scan (a list's indexing); `SCANS.find(12)` the newest scan numbered
12 (numbers name one scan per file: scans/saving.py); typing `SCANS` lists them with their
file and entry.
"""
from __future__ import annotations

import collections
import os


class ScanHistory(collections.deque):
    def find(self, number):
        """The newest scan numbered `number`, or a KeyError saying which numbers are held."""
        for scan in reversed(self):
            if scan.number == number:
                return scan
        held = ", ".join(str(s.number) for s in self) or "none yet"
        raise KeyError(f"SCANS: no scan number {number!r} among the last {self.maxlen} (held: {held})")

    def __info__(self):
        if not self:
            return "SCANS: no scan yet"
        rows = [f"{'#':>5}  {'state':<18}  {'where':<28}  title"]
        for scan in self:
            where = f"{os.path.basename(scan.filename)} {scan.entry}" if scan.filename else "not saved"
            state = f"{scan.state}{f' ({scan.end_reason})' if scan.end_reason else ''}"
            rows.append(f"{scan.number!s:>5}  {state:<18}  {where:<28}  {scan.title}")
        return "\n".join(rows)
