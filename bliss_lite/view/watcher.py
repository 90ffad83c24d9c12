"""The one reader of Redis behind every page of a `bliss-lite view` server.

Viewers never talk to Redis: one thread polls it (every POLL_S while a page is open, not at
all while none is) and hands each change to every page as the same pre-encoded message, so
five pages cost the scan what one does. What it follows: the scan history (the newest scan
is the current one), the scans a page asked for in the last WANTED_S, and the session's
plotselect choice.

A record it cannot read (not JSON, of another Redis type, missing fields) is a poison
message: it is left out, said once in the log and listed in `poisoned` (`/api/health`), and
every other scan goes on; asked for by a page, it is a 400 naming the key and the reason.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict

import numpy as np
import redis

from bliss_lite.data.client import ScanReader
from bliss_lite.data.model import HISTORY_KEY, plotselect_key
from bliss_lite.scans.peaks import fwhm_and_center, peak_index
from bliss_lite.view.live_scan import LiveScan, summary

logger = logging.getLogger(__name__)

POLL_S = 0.1
RECENT = 20  # scans in the list
KEEP = 8  # scans held in memory (the current one and those pages looked at last)
WANTED_S = 30.0
MESSAGE_S = 0.5  # shortest interval between two messages of one scan that only bring points
MAX_CURVE_POINTS = 20000  # more points go to pages decimated, on request, not as deltas


class Watcher:
    def __init__(self, client, poll_s=POLL_S):
        self.client, self.poll_s = client, poll_s
        self.lock = threading.RLock()
        self.scans = OrderedDict()  # key -> LiveScan
        self.recent = []  # summaries, newest first
        self.current = None
        self.plotselect = {}  # session -> [counter names]
        self.listeners = set()
        self._listeners_lock = threading.Lock()
        self.polls = 0
        self._history_id = None
        self._wanted = {}  # key -> time a page last asked for it
        self._sent = {}  # key -> {channel: points already sent as deltas}
        self._pending = {}  # key -> (time of the last message, (state, frame, maps) it carried, unsent changes?)
        self._recent_json = None
        self._stop = threading.Event()
        self.error = None
        self.poisoned = {}  # key -> why its record cannot be read (left out, said once)

    # -- the thread --------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="view-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.is_set():
            begin = time.monotonic()
            if self.listeners:
                try:
                    self.tick()
                    if self.error is not None:
                        self.error = None
                        logger.info("live view: Redis is back")
                        self._emit("status", {"redis": "ok"})
                except Exception as exc:  # noqa: BLE001 - Redis away: say so, try again next period
                    if self.error is None:
                        logger.warning("live view: Redis lost (%s); trying again every second", exc)
                    self.error = str(exc)
                    self._emit("status", {"redis": "lost", "error": self.error})
                    self._stop.wait(1.0)
            self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - begin)))

    def tick(self):
        """One poll of everything followed; changes go to the listeners."""
        with self.lock:
            self.polls += 1
            self._poll_history()
            now = time.monotonic()
            followed = [self.current] + [k for k, t in self._wanted.items() if now - t < WANTED_S]
            for key in dict.fromkeys(k for k in followed if k and k not in self.poisoned):
                try:
                    scan = self.scan(key, fresh=False)
                    if scan is not None:
                        self._maybe_emit(scan, scan.poll(), now)
                except (redis.ConnectionError, redis.TimeoutError):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad scan stalls no other
                    self._poison(key, exc)
                    self.scans.pop(key, None)
            self._poll_plotselect()
            summaries = [{**self.scans[k].summary(), "points": None} if k in self.scans else s
                         for k, s in ((s["key"], s) for s in self.recent)]  # progress goes in `scan` messages
            text = json.dumps(summaries)
            if text != self._recent_json:
                self.recent, self._recent_json = summaries, text
                self._emit("scans", {"scans": summaries, "current": self.current})

    def _poll_history(self):
        newer = f"({self._history_id}" if self._history_id else "-"
        entries = self.client.xrevrange(HISTORY_KEY, "+", newer, count=RECENT)
        if not entries:
            return
        self._history_id = entries[0][0].decode()
        fresh, summaries = [], []
        for entry_id, fields in entries:
            key = fields.get(b"key", b"").decode(errors="replace") or f"{HISTORY_KEY} entry {entry_id.decode()}"
            try:
                reader = ScanReader(self.client, key)
                summaries.append(summary(reader, reader.record.get("state"), reader.record.get("end_reason")))
                fresh.append(reader)
            except KeyError:  # evicted
                continue
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed record is left out, the others shown
                self._poison(key, exc)
        known = {s["key"] for s in summaries}
        self.recent = (summaries + [s for s in self.recent if s["key"] not in known])[:RECENT]
        if fresh:
            self.current = fresh[0].key

    def _poll_plotselect(self):
        sessions = {s["session"] for s in self.recent[:1]} | set(self.plotselect)
        for session in sessions:
            try:
                raw = self.client.get(plotselect_key(session))
                names = json.loads(raw) if raw else []
                if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                    raise ValueError(f"not a JSON list of names: {raw[:80]!r}")
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - a bad choice is no choice
                self._poison(plotselect_key(session), exc)
                names = []
            if names != self.plotselect.get(session):
                self.plotselect[session] = names
                self._emit("plotselect", {"session": session, "counters": names})

    def _poison(self, key, exc):
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        if self.poisoned.get(key) != reason:
            logger.warning("live view: %s cannot be read (%s); left out", key, reason)
        self.poisoned[key] = reason

    # -- what pages ask for ------------------------------------------------------------------
    def want(self, key):
        """A page shows this scan: follow it for the next WANTED_S."""
        with self.lock:
            self._wanted[key] = time.monotonic()

    def scan(self, key, fresh=True):
        """The LiveScan of a key (read from Redis on first use), or None if Redis lacks it.
        `fresh`: read on now if no page keeps the watcher polling."""
        with self.lock:
            if key in self.scans:
                self.scans.move_to_end(key)
                if fresh and not self.listeners:
                    self.scans[key].poll()
                return self.scans[key]
            try:
                scan = LiveScan(self.client, key)
                scan.poll()
            except KeyError:
                return None
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - named to the page that asked, as a 400
                self._poison(key, exc)
                raise ValueError(f"{key}: cannot be read as a scan ({self.poisoned[key]})") from None
            self.scans[key] = scan
            while len(self.scans) > KEEP:
                old = next(k for k in self.scans if k != self.current)
                del self.scans[old]
                self._sent.pop(old, None)
                self._pending.pop(old, None)
            return scan

    def snapshot(self, key):
        """Everything a page needs to draw a scan from scratch: the description, markers and
        the points (decimated beyond MAX_CURVE_POINTS)."""
        with self.lock:
            scan = self.scan(key)
            if scan is None:
                return None
            self.want(key)
            stride = max(1, -(-scan.npoints // MAX_CURVE_POINTS))
            return {**scan.describe(), "markers": markers(scan), "stride": stride,
                    "columns": scan.columns(stride=stride), "plotselect": self.plotselect.get(scan.reader.session, [])}

    # -- messages ----------------------------------------------------------------------------
    def _maybe_emit(self, scan, changed, now):
        """New points go out at most every MESSAGE_S (pages redraw no faster than that); a new
        state, frame, map or PDF-CT result goes out at once."""
        sent_at, sent_mark, unsent = self._pending.get(scan.key, (None, None, False))
        mark = (scan.state, scan.versions["frame"], scan.versions["maps"], scan.versions["pdf"])
        unsent = unsent or changed
        if unsent and (mark != sent_mark or now - sent_at >= MESSAGE_S):
            self._emit("scan", self._scan_message(scan))
            self._pending[scan.key] = (now, mark, False)
        else:
            self._pending[scan.key] = (sent_at, sent_mark, unsent)


    def _scan_message(self, scan):
        """The scan's description and, of the channels a page can draw, the points new since the
        last message (deltas: {"start": index of the first, "type" and "b64": the values, see
        LiveScan.packed}), or `refetch` when the scan is too long for deltas."""
        message = {**scan.describe(), "markers": markers(scan)}
        if scan.npoints > MAX_CURVE_POINTS:
            message["refetch"] = True
            return message
        sent = self._sent.setdefault(scan.key, {})
        deltas = {}
        for name in scan.plotted():
            start = sent.get(name, 0)
            column = scan.points[name]
            if column.size > start:
                deltas[name] = {"start": start, **scan.packed(name, start)}
                sent[name] = column.size
        message["deltas"] = deltas
        return message

    def subscribe(self, listener):
        """listener(bytes) gets every message (one server-sent event each) from now on."""
        with self._listeners_lock:
            self.listeners.add(listener)

    def unsubscribe(self, listener):
        with self._listeners_lock:
            self.listeners.discard(listener)

    def _emit(self, event, payload):
        data = encode_event(event, payload)
        with self._listeners_lock:
            listeners = list(self.listeners)
        for listener in listeners:
            listener(data)


def encode_event(event, payload):
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


def markers(scan):
    """{counter: {peak, cen, fwhm}} against the plot axis, for one-dimensional scans."""
    info = scan.info
    axis = (info.get("plot") or {}).get("axis")
    if "shape" in info or scan.detector is not None or axis not in scan.points:
        return {}
    x = scan.points[axis].values
    found = {}
    for name in scan.counters():
        y = scan.points[name].values
        n = min(x.size, y.size)
        if n < 3 or n > MAX_CURVE_POINTS or not np.isfinite(y[:n]).any():
            continue
        xs, ys = x[:n], y[:n]
        try:
            width, centre = fwhm_and_center(xs, ys)
        except ValueError:  # flat
            continue
        found[name] = {"peak": float(xs[peak_index(ys)]), "cen": float(centre), "fwhm": float(width)}
    return found
