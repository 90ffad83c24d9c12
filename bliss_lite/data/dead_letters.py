"""Dead letters: stream entries and records a reader could not decode, kept with the reason.

Why: one malformed entry in a frame stream made every worker that claimed it exit with a
traceback, one after the other, so that no frame of a later scan was integrated. A reader that
meets an entry it cannot decode writes it down here (which stream, which entry, the frame
index when it has one, why, who), acknowledges it and goes on. The scan's integration hook
counts the dead letters of its scan and integrates those frames from the file; the job server
and the live view do the same with the queue entries and scan records they cannot read.

Keys (data/model.py): `<scan key>:dead_letters` for entries of a scan's streams,
`bliss_lite:dead_letters` for the rest. Each entry: `source` (the stream or key), `id` (the
entry id, or the key), `index` (frame index, "" if unknown), `reason`, `reader`, `time`.
"""
from __future__ import annotations

import time

from bliss_lite.data.model import DEAD_LETTERS_KEY, DEAD_LETTERS_MAXLEN, dead_letters_key

REASON_CHARS = 500  # a reason is one line of at most this many characters


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def record(client, *, source, entry_id, reason, reader, scan=None, index=None):
    """Add a dead letter (`client` may be a pipeline); under the scan's key when `scan` is given."""
    reason = " ".join(_text(reason).split())[:REASON_CHARS]
    fields = {"source": _text(source), "id": _text(entry_id), "index": "" if index is None else int(index),
              "reason": reason, "reader": _text(reader), "time": time.time()}
    key = DEAD_LETTERS_KEY if scan is None else dead_letters_key(scan)
    return client.xadd(key, fields, maxlen=DEAD_LETTERS_MAXLEN, approximate=True)


def read(client, scan=None, count=DEAD_LETTERS_MAXLEN):
    """[{source, id, index (int or None), reason, reader, time}] oldest first."""
    key = DEAD_LETTERS_KEY if scan is None else dead_letters_key(scan)
    letters = []
    for _, fields in client.xrange(key, count=count):
        letter = {_text(k): _text(v) for k, v in fields.items()}
        letter["index"] = int(letter["index"]) if letter.get("index", "").lstrip("-").isdigit() else None
        letters.append(letter)
    return letters
