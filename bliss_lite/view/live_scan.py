"""One scan as the live view knows it: everything read from Redis so far, read on incrementally.

Each `poll` asks Redis only for what is new (stream ids remembered per channel) and never for
every frame: of a frame channel only the newest frame is fetched (and decoded), so a 250 Hz scan
costs the view one frame per poll. Integrated patterns are summed as they arrive; for XRD-CT they also
fill sinograms by the frames' read-backs (omega, x, z), as the reconstruction hook does.
Version counters tell the server which images changed, so each is rendered once per change.
PDF-CT results are not in Redis: once an XRD-CT scan has closed, its file is looked at (at most
once per PDF_LOOK_S) until they appear there (view/pdf_results.py).

An entry of any stream read here that cannot be decoded (garbage bytes, a wrong shape or size,
missing fields, not JSON, an index beyond the scan) is a bad entry: left out, counted
(`bad_entries` in `describe`, the last reason per stream), said once per stream in the log, and
read past; the scan is still followed. Only a record that is no scan stops a scan's view.
"""
from __future__ import annotations

import base64
import json
import logging
import time

import numpy as np

from bliss_lite.data.client import ScanReader
from bliss_lite.data.model import END_REASONS, STATES, TIMERS, channel_key, state_key
from bliss_lite.data.model import reconstruction_live_key as live_key
from bliss_lite.data.safe_open import DamagedFile
from bliss_lite.processing.integration_queue import PatternReader, info_key
from bliss_lite.view.images import mesh_image
from bliss_lite.view.pdf_results import PdfResults

PAGE = 2000  # stream entries asked for at once
MAX_PAGES = 20  # per poll and stream: a view that fell behind catches up over several polls
SINOGRAM_BYTES = 512 * 2**20  # larger XRD-CT scans get no live sinogram in the view
PDF_LOOK_S = 1.0  # a closed XRD-CT scan's file is looked at this often for PDF-CT results
# Phase maps a view holds per scan: the newest ones. The 400 heights of 400 x 400 of the seed
# scan (7 maps a height) would be 1.8 GB; an older height's final map is read from the scan's
# reconstructed.h5 when asked for (`map_image`).
VIEW_MAPS_BYTES = 256 * 2**20
STATE_PAGE = 16  # state entries read at once (a scan writes a handful)
# Highest point or frame index a stream entry may carry: a few times the scan's own count (lines
# redone), else this; an entry beyond it is bad (it would make the view fill memory with NaN).
POINTS_LIMIT = 10**8
MAX_NPT = 10**6  # radial points of an integrated pattern

logger = logging.getLogger(__name__)


class Growing:
    """A 1-D float array that grows at the end without copying on every append."""

    def __init__(self):
        self._data = np.empty(256)
        self.size = 0

    def extend(self, values):
        values = np.asarray(values, float).reshape(-1)
        if self.size + values.size > self._data.size:
            bigger = np.empty(max(2 * self._data.size, self.size + values.size))
            bigger[:self.size] = self._data[:self.size]
            self._data = bigger
        self._data[self.size:self.size + values.size] = values
        self.size += values.size

    @property
    def values(self):
        return self._data[:self.size]


class LiveScan:
    """A scan's record, state, scalar points, newest frame, patterns and maps, from Redis."""

    def __init__(self, client, key):
        self.client, self.key = client, key
        self.reader = ScanReader(client, key)
        self.info = self.reader.scan_info
        channels = self.reader.channels
        self.scalars = [n for n, s in channels.items() if s.shape == () and s.encoding == "raw"]
        self.detector = next((n for n, s in channels.items() if len(s.shape) == 2), None)
        self.points = {n: Growing() for n in self.scalars}
        self._last = {channel_key(key, n): "0-0" for n in self.scalars}
        self._channel_of = {channel_key(key, n): n for n in self.scalars}
        self.state, self.end_reason = self.reader.record.get("state"), self.reader.record.get("end_reason")
        self.frame = None  # (index, fields) of the newest frame
        self._frame_id = None
        self.frames_seen = 0
        self.versions = {"points": 0, "frame": 0, "patterns": 0, "maps": 0, "pdf": 0}
        self.patterns = self._radial = self._unit = None
        self.pattern_sum = self.pattern_last = None
        self.pattern_count = 0
        self.maps = {}  # (z index, phase) -> (image, complete): the newest, VIEW_MAPS_BYTES at most
        self.map_state = {}  # (z index, phase) -> complete: every map published so far
        self._maps_bytes = 0
        self._map_last = "0-0"
        self.sinograms = None
        self._waiting = []  # (indices, patterns) whose read-backs have not arrived yet
        # sinograms normalised like the reconstruction hook's default: by I0 and the
        # transmission it/I0 where the scan counts them (one I0 reference for the whole scan)
        self.monitors = tuple(n for n in ("i0", "it") if n in self.points) if "i0" in self.points else ()
        self.reference_i0 = None
        self.frames_left_out = 0  # frames whose monitor was not a positive number (beam lost)
        self.finished = False
        self._closed_at = None
        self.pdf = None  # PdfResults, once the scan's file has them
        self.pdf_error = None  # why they cannot be read: a damaged pdf.h5 or master file, named
        self._pdf_damage = None  # the damage the last look found (said once found twice unchanged)
        self._pdf_looked = None
        self._state_id = None
        expected = _expected(self.info)
        self.index_limit = max(4 * expected, PAGE) if expected else POINTS_LIMIT
        self.bad_entries = 0  # stream entries left out: they could not be decoded
        self.bad_reasons = {}  # stream key -> why its last bad entry was left out
        self._bad_info = None  # the pattern description last found unreadable

    # -- reading -----------------------------------------------------------------------------
    def poll(self):
        """Read what is new; True if anything changed. Once the scan is sealed and read
        through, further polls cost one round trip at most (finished)."""
        if self.finished:
            return self._poll_pdf()
        changed = self._poll_state()
        changed |= self._poll_points()
        if self.detector is not None:
            changed |= self._poll_frame()
            changed |= self._poll_patterns()
            changed |= self._poll_maps()
        changed |= self._poll_pdf()
        if self.state == "CLOSED" and not self._last and not self._waiting and not changed:
            self.finished = self._done_processing()
        return changed

    def _bad(self, stream, entry_id, exc):
        """An entry that cannot be decoded: left out, counted, said once per stream."""
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        reason = f"{stream} entry {entry_id}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if stream not in self.bad_reasons:
            logger.warning("live view: %s; left out, the scan is still followed", reason)
        self.bad_reasons[stream] = reason
        self.bad_entries += 1

    def _poll_state(self):
        """The newest readable state entry since the last poll; those that are not are bad."""
        key = state_key(self.key)
        newer = f"({self._state_id}" if self._state_id else "-"
        entries = self.client.xrevrange(key, "+", newer, count=STATE_PAGE)
        if not entries:
            return False
        self._state_id = entries[0][0].decode()
        newest = None
        for entry_id, fields in entries:  # newest first
            try:
                read = _state_of(fields)
            except Exception as exc:  # noqa: BLE001 - a bad entry: counted, the others read
                self._bad(key, entry_id, exc)
                continue
            newest = newest or read
        if newest is None:
            return True  # only the count changed
        changed = newest != (self.state, self.end_reason)
        self.state, self.end_reason = newest
        return changed

    def _poll_points(self):
        changed = counted = False
        for _ in range(MAX_PAGES):
            if not self._last:
                break
            answer = self.client.xread(self._last, count=PAGE)
            if not answer:
                break
            for stream, entries in answer:
                stream = stream.decode()
                name = self._channel_of[stream]
                for entry_id, fields in entries:
                    self._last[stream] = entry_id
                    if b"data" in fields:
                        try:
                            index, values = self._decode(name, fields)
                        except Exception as exc:  # noqa: BLE001 - a bad entry: counted, read past
                            self._bad(stream, entry_id, exc)
                            counted = True
                        else:
                            self._place(name, index, values)
                            changed = True
                    if b"sealed" in fields:
                        del self._last[stream]
                        break
        if changed:
            self.versions["points"] += 1
        return changed or counted

    def _decode(self, name, fields):
        """(index, values) of a channel's stream entry; ValueError if its index is beyond the scan."""
        index, values = self.reader.decode(name, fields)
        if not 0 <= index <= self.index_limit - len(values):
            raise ValueError(f"index {index} of {len(values)} points outside the scan's 0 to {self.index_limit}")
        return index, values

    def _place(self, name, index, values):
        """Points in order; a batch sent again after a Redis outage is skipped where known.
        Points Redis no longer holds (a stream trimmed by its budget, read late) are NaN, so
        every channel's values stay at their scan index."""
        column = self.points[name]
        if index > column.size:
            column.extend(np.full(index - column.size, np.nan))
        skip = column.size - index
        if skip < len(values):
            column.extend(values[max(0, skip):])

    def _poll_frame(self):
        """The newest frame, if one arrived since the last poll (asked by entry id: a scan that
        sends no new frame costs an empty reply, not a frame)."""
        stream = channel_key(self.key, self.detector)
        newer = f"({self._frame_id}" if self._frame_id else "-"
        entries = self.client.xrevrange(stream, "+", newer, count=2)
        if entries:
            self._frame_id = entries[0][0].decode()
        for entry_id, fields in entries:
            if b"data" in fields:
                try:  # decoded here, once: a frame that cannot be is left out, the last good one kept
                    index, frames = self._decode(self.detector, fields)
                except Exception as exc:  # noqa: BLE001 - a bad entry: counted, the older one tried
                    self._bad(stream, entry_id, exc)
                    continue
                self.frame = (index, frames[0])
                self.frames_seen = max(self.frames_seen, index + 1)
                self.versions["frame"] += 1
                return True
        return any(b"data" in fields for _, fields in entries)  # only bad ones: counted

    def _poll_patterns(self):
        if self.patterns is None:
            raw = self.client.get(info_key(self.key))
            if raw is None or raw == self._bad_info:
                return False
            try:
                radial, unit, npt = _pattern_info(raw)
            except Exception as exc:  # noqa: BLE001 - no patterns shown until it is readable
                self._bad_info = raw
                self._bad(info_key(self.key), "-", exc)
                return True
            self._radial, self._unit = radial, unit
            self.patterns = ViewPatterns(self.client, self.key, npt, self.index_limit, self._bad)
            self.pattern_sum = np.zeros(npt)
            self._start_sinograms(npt)
        bad = self.bad_entries
        indices, patterns = self.patterns.poll(count=PAGE)
        if not len(indices):
            return self._fill_sinograms() or self.bad_entries != bad
        self.pattern_sum += patterns.sum(axis=0, dtype=float)
        self.pattern_count += len(indices)
        self.pattern_last = (int(indices[-1]), patterns[-1].astype(float))
        if self.sinograms is not None:
            self._waiting.append((indices, patterns))
            self._fill_sinograms()
        self.versions["patterns"] += 1
        return True

    def _start_sinograms(self, nq):
        xrdct = self.info.get("xrdct")
        if not xrdct:
            return
        from bliss_lite.processing.sinogram import SinogramBuilder

        if all(n in self.points for n in ("omega", "x", "z")) and SinogramBuilder.nbytes(self.info, nq) <= SINOGRAM_BYTES:
            self.sinograms = SinogramBuilder(self.info, nq)

    def _fill_sinograms(self):
        """Patterns whose frames' read-backs (and monitors) are known go into the sinograms."""
        if not self._waiting:
            return False
        valid = next((n for n in self.points if n.endswith("_valid")), None)  # frames of a redone line: False
        needed = ("omega", "x", "z") + self.monitors + ((valid,) if valid else ())
        known = min(self.points[n].size for n in needed)
        waiting, placed = [], False
        for indices, patterns in self._waiting:
            ready = indices < known
            if valid and ready.any():  # invalid frames: never placed, never waited for
                drop = np.zeros_like(ready)
                drop[ready] = ~self.points[valid].values[indices[ready]].astype(bool)
                indices, patterns, ready = indices[~drop], patterns[~drop], ready[~drop]
            if ready.any():
                i = indices[ready]
                placed |= self._add_to_sinograms(i, patterns[ready])
            if not ready.all():
                waiting.append((indices[~ready], patterns[~ready]))
        self._waiting = waiting
        if placed:
            self.versions["patterns"] += 1
        return placed

    def _poll_maps(self):
        answer = self.client.xread({live_key(self.key): self._map_last}, count=PAGE)
        if not answer:
            return False
        held = False
        for entry_id, fields in answer[0][1]:
            self._map_last = entry_id
            try:
                where, image, complete = self._map_entry(fields)
            except Exception as exc:  # noqa: BLE001 - a bad entry: counted, read past
                self._bad(live_key(self.key), entry_id, exc)
                continue
            self._hold_map(where, image, complete)
            held = True
        if held:
            self.versions["maps"] += 1
        return True

    def _map_entry(self, fields):
        """((z index, phase), image, complete) of a live map entry; ValueError or KeyError if
        it is not one of this scan."""
        nz = len((self.info.get("xrdct") or {}).get("z_positions", [0]))
        z = int(fields[b"z_index"])
        if not 0 <= z < nz:
            raise ValueError(f"z_index {z}: the scan has heights 0 to {nz - 1}")
        phase = fields[b"phase"].decode()
        if not phase:
            raise ValueError("empty phase name")
        shape = json.loads(fields[b"shape"])
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(n) is int and n > 0 for n in shape)):
            raise ValueError(f"shape {fields[b'shape'][:40]!r}: not two positive whole numbers")
        data = fields[b"data"]
        if len(data) != 4 * shape[0] * shape[1]:
            raise ValueError(f"{len(data)} bytes of data for a {shape[0]} x {shape[1]} float32 map")
        complete = fields[b"complete"]
        if complete not in (b"0", b"1"):
            raise ValueError(f"complete={complete[:20]!r}: not 0 or 1")
        return (z, phase), np.frombuffer(data, "<f4").reshape(shape), complete == b"1"

    def _hold_map(self, where, image, complete):
        """Hold the newest map of (z, phase); the oldest held go beyond VIEW_MAPS_BYTES."""
        old = self.maps.pop(where, None)
        self._maps_bytes += image.nbytes - (0 if old is None else old[0].nbytes)
        self.maps[where] = (image, complete)
        self.map_state[where] = self.map_state.get(where, False) or complete
        while self._maps_bytes > VIEW_MAPS_BYTES and len(self.maps) > 1:
            self._maps_bytes -= self.maps.pop(next(iter(self.maps)))[0].nbytes

    def map_image(self, z, phase):
        """The map of phase `phase` at z index `z`: held, or a final map no longer held read from
        the scan's reconstructed.h5. None when there is none (yet), or the file is not there (not
        reachable from here); DamagedFile, naming the file and what is wrong, when it is there but
        cannot be read (truncated, not HDF5)."""
        held = self.maps.get((z, phase))
        if held is not None:
            return held[0]
        info = self.info
        if not self.map_state.get((z, phase)) or not (info.get("filename") and info.get("entry")):
            return None
        from bliss_lite.data.safe_open import open_hdf5
        from bliss_lite.data.scan_files import reduction_file

        path = reduction_file(info["filename"], info["entry"], "reconstructed")
        try:
            with open_hdf5(path) as h5:  # the default wait: a file a SWMR writer extends is not damaged
                if not h5["reconstructed"][z]:
                    return None
                return np.asarray(h5[f"maps/{phase}"][z], np.float32)
        except (FileNotFoundError, KeyError, IndexError, ValueError):
            return None
        except DamagedFile:
            raise
        except OSError as exc:  # there, opened, but its data cannot be read
            raise DamagedFile(f"{path}: cannot read maps/{phase} at z index {z}: "
                              f"{' '.join(str(exc).split())[:200]}") from None

    def _poll_pdf(self):
        """True when PDF-CT results appeared in the file of this closed XRD-CT scan (written by
        the pdf hook after the reconstruction, or by a `pdf_scan` job at any time later), or
        when a job wrote them again (perhaps on another r grid): they are read anew. A pdf.h5
        or master file that is there but damaged is `pdf_error` once two looks found the same
        damage (the master file may be one a SWMR writer extends: short for an instant)."""
        info = self.info
        if self.state != "CLOSED" or not (info.get("xrdct") and info.get("filename") and info.get("entry")):
            return False
        now = time.monotonic()
        if self._pdf_looked is not None and now - self._pdf_looked < PDF_LOOK_S:
            return False
        self._pdf_looked = now
        if self.pdf is not None and not self.pdf.stale():
            return False
        try:
            found, damage = PdfResults.find(info["filename"], info["entry"]), None
        except DamagedFile as exc:
            found, damage = None, str(exc)
        error = damage if damage is not None and damage == self._pdf_damage else None
        self._pdf_damage = damage
        if found is None and self.pdf is None and error == self.pdf_error:
            return False
        self.pdf, self.pdf_error = found, error  # None while a job writes them again: no panel for that moment
        self.versions["pdf"] += 1
        return True

    def _done_processing(self):
        """Closed and read through: finished once no worker integrates its frames any more and,
        for XRD-CT, the final maps came (or a minute passed: no reconstruction hook ran)."""
        if self.detector is None:
            return True
        from bliss_lite.processing.integration_queue import ACTIVE_KEY

        if self._closed_at is None:
            self._closed_at = time.monotonic()
        if self.client.hexists(ACTIVE_KEY, self.key):
            return False
        final_maps = any(self.map_state.values())
        return not self.info.get("xrdct") or final_maps or time.monotonic() - self._closed_at > 60

    # -- what the page gets ------------------------------------------------------------------
    @property
    def npoints(self):
        """Points taken so far (frames for a frame scan)."""
        sizes = [c.size for c in self.points.values()]
        return max(sizes + [self.frames_seen]) if sizes or self.frames_seen else 0

    def summary(self):
        return summary(self.reader, self.state, self.end_reason, self.npoints)

    def describe(self):
        """The summary and what the page needs to lay the scan out."""
        info, channels = self.info, self.reader.channels
        xrdct = info.get("xrdct")
        from bliss_lite.processing.decomposition import RESIDUAL

        named = {phase for _, phase in self.map_state}  # the phases, and the fit's residual: a map, not a phase
        return {**self.summary(), "type": info.get("type"), "motors": info.get("motors", []),
                "counters": self.counters(),
                "scalars": self.scalars, "units": {n: channels[n].unit for n in self.scalars},
                "plot": info.get("plot", {}), "mesh": _mesh(info), "detector": self.detector,
                "frame_index": None if self.frame is None else self.frame[0],
                "patterns": self.pattern_count, "radial_unit": self._unit,
                "nq": None if self._radial is None else int(self._radial.size),
                "strongest_bin": None if not self.pattern_count else int(np.argmax(self.pattern_sum)),
                "xrdct": None if not xrdct else {"nz": len(xrdct["z_positions"]), "n_omega": xrdct["n_omega"],
                                                 "n_x": xrdct["n_x"], "sinograms": self.sinograms is not None,
                                                 "normalised_by": self._normalisation(),
                                                 "frames_left_out": self.frames_left_out},
                "phases": sorted(named - {RESIDUAL}), "residual": RESIDUAL in named,
                "pdf": None if self.pdf is None else self.pdf.describe(), "pdf_error": self.pdf_error,
                "versions": dict(self.versions),
                "bad_entries": self.bad_entries, "bad_entry_reasons": dict(self.bad_reasons)}

    def _add_to_sinograms(self, indices, patterns):
        """Normalise by the monitors and place; frames whose monitor is not a positive number
        are left out (white in the sinogram), not allowed to stop the view."""
        from bliss_lite.processing.sinogram import normalise

        if self.monitors:
            i0, it = (self.points[n].values[indices] if n in self.monitors else None for n in ("i0", "it"))
            good = np.isfinite(i0) & (i0 > 0) & (True if it is None else np.isfinite(it) & (it > 0))
            self.frames_left_out += int((~good).sum())
            if not good.any():
                return False
            indices, patterns, i0 = indices[good], patterns[good], i0[good]
            it = None if it is None else it[good]
            if self.reference_i0 is None:
                self.reference_i0 = float(i0.mean())
            patterns = normalise(patterns, i0, it, reference=self.reference_i0)
        self.sinograms.add(indices, patterns, *(self.points[n].values[indices] for n in ("omega", "x", "z")))
        return True

    def _normalisation(self):
        return {("i0", "it"): "i0+transmission", ("i0",): "i0"}.get(self.monitors, "none")

    def counters(self):
        """The counters to offer for plotting: the scan's, else (a continuous scan that counts
        monitors) every scalar channel that is neither a motor nor bookkeeping."""
        named = [c for c in self.info.get("counters", []) if c in self.points]
        if named:
            return named
        skip = set(self.info.get("motors", [])) | set(TIMERS)
        channels = self.reader.channels
        return [n for n in self.scalars if n not in skip and not n.endswith("_frame_number")
                and not (n in channels and channels[n].extra.get("part_of"))]  # a detector's valid flags

    def plotted(self):
        """The channels a page can draw: the counters and the plot axis (not the bookkeeping
        channels such as epoch or elapsed_time, unless the scan plots against one)."""
        names = self.counters()
        axis = (self.info.get("plot") or {}).get("axis")
        return names + [axis] if axis in self.points and axis not in names else names

    def packed(self, name, start=0):
        """A channel's values from point `start` on, exact and compact for a page: {"type": a
        little-endian NumPy type code, "b64": base64 of the values in it}, the smallest of
        int8/16/32, float32 and float64 that holds every value exactly (counts are integers:
        an eighth to a half of the bytes of float64, which is itself a third of JSON numbers).
        A page decodes it without parsing numbers."""
        return pack(self.points[name].values[start:])

    def columns(self, stride=1):
        """{channel: list of every `stride`-th value}."""
        return {n: _plain(self.points[n].values[::stride]) for n in self.scalars}

    def frame_array(self, frame):
        """The frame of an (index, frame) pair such as `self.frame` (decoded when it was read)."""
        return frame[1]

    def pattern_curves(self):
        if self.pattern_last is None:
            return None
        return {"radial": _plain(self._radial), "unit": self._unit, "last_index": self.pattern_last[0],
                "last": _plain(self.pattern_last[1]), "sum": _plain(self.pattern_sum), "count": self.pattern_count}

    def mesh_image(self, counter):
        """(slow, fast) image of a counter in a mesh scan, NaN where not measured yet."""
        mesh = _mesh(self.info)
        return mesh_image(self.points[counter].values, mesh["shape"], mesh["backnforth"])


class ViewPatterns(PatternReader):
    """The scan's integrated patterns, each index once; an entry that is no pattern of this scan
    (no index, one beyond the scan, data of another length) goes to `bad` and is read past."""

    def __init__(self, client, scan_key, npt, index_limit, bad):
        super().__init__(client, scan_key, npt)
        self.index_limit, self.bad = index_limit, bad

    def poll(self, count=PAGE):
        """(indices, patterns (k, npt)) new since the last call, MAX_PAGES pages at most."""
        indices, patterns = [], []
        for _ in range(MAX_PAGES):
            newer = f"({self.last_id}" if self.last_id != "0-0" else "-"
            entries = self.client.xrange(self.key, min=newer, count=count)
            for entry_id, fields in entries:
                self.last_id = entry_id.decode()
                try:
                    index, pattern = self._pattern(fields)
                except Exception as exc:  # noqa: BLE001 - a bad entry: counted, read past
                    self.bad(self.key, entry_id, exc)
                    continue
                if self._first_time(index):
                    indices.append(index)
                    patterns.append(pattern)
            if len(entries) < count:
                break
        if not indices:
            return np.empty(0, int), np.empty((0, self.npt), np.float32)
        return np.asarray(indices), np.stack(patterns)

    def _pattern(self, fields):
        index = int(fields[b"index"])
        if not 0 <= index < self.index_limit:
            raise ValueError(f"index {index} outside the scan's 0 to {self.index_limit - 1}")
        data = fields[b"data"]
        if len(data) != 4 * self.npt:
            raise ValueError(f"{len(data)} bytes of data, not a pattern of {self.npt} float32 points")
        return index, np.frombuffer(data, "<f4")


def _state_of(fields):
    """(state, end reason or None) of a state stream entry; ValueError if it is not one."""
    if b"state" not in fields:
        raise ValueError("no state field")
    state = fields[b"state"].decode()
    if state not in STATES:
        raise ValueError(f"state {state[:40]!r} is none of {', '.join(STATES)}")
    end = fields.get(b"end_reason")
    end = end.decode() if end else None
    if end is not None and end not in END_REASONS:
        raise ValueError(f"end_reason {end[:40]!r} is none of {', '.join(END_REASONS)}")
    return state, end


def _pattern_info(raw):
    """(radial values, unit, npt) of a scan's integration description (JSON)."""
    info = json.loads(raw)
    npt = info["npt"]
    if type(npt) is not int or not 0 < npt <= MAX_NPT:
        raise ValueError(f"npt {npt!r}: not a whole number from 1 to {MAX_NPT}")
    radial = np.asarray(info["radial"], float)
    if radial.shape != (npt,):
        raise ValueError(f"radial of shape {radial.shape}, not ({npt},)")
    unit = info.get("unit", "")
    if not isinstance(unit, str):
        raise ValueError(f"unit {unit!r}: not text")
    return radial, unit, npt


def summary(reader, state, end_reason, points=None):
    """A scan's line in the list: what it is, where it is saved, how far it got."""
    info = reader.scan_info
    return {"key": reader.key, "name": reader.name, "number": reader.number, "session": reader.session,
            "title": info.get("title"), "state": state, "end_reason": end_reason, "points": points,
            "expected": _expected(info), "filename": info.get("filename"), "entry": info.get("entry"),
            "start_time": info.get("start_time")}


def _expected(info):
    if info.get("npoints"):
        return int(info["npoints"])
    xrdct = info.get("xrdct")
    if xrdct:
        return int(xrdct["n_x"]) * int(xrdct["n_omega"]) * len(xrdct["z_positions"])
    return None


def _mesh(info):
    if "shape" not in info or len(info.get("motors", [])) < 2:
        return None
    return {"shape": [int(n) for n in info["shape"]], "backnforth": bool(info.get("backnforth")),
            "fast": info["motors"][0], "slow": info["motors"][1]}


PACKED_TYPES = ("i1", "i2", "i4", "f4")


def pack(values):
    """{"type", "b64"} of float values: the first of PACKED_TYPES that holds them all exactly,
    else float64 ("f8")."""
    values = np.asarray(values, float)
    for code in PACKED_TYPES:
        kind = np.dtype("<" + code)
        if kind.kind == "i":
            info = np.iinfo(kind)
            if values.size and not (np.isfinite(values).all() and info.min <= values.min() and values.max() <= info.max):
                continue
        narrow = values.astype(kind)
        if np.array_equal(narrow.astype(float), values, equal_nan=kind.kind == "f"):
            return {"type": code, "b64": base64.b64encode(narrow.tobytes()).decode()}
    return {"type": "f8", "b64": base64.b64encode(values.astype("<f8").tobytes()).decode()}


def _plain(values):
    """JSON-ready floats: NaN and infinities become None."""
    values = np.asarray(values, float)
    out = values.tolist()
    if not np.isfinite(values).all():
        out = [v if np.isfinite(v) else None for v in out]
    return out
