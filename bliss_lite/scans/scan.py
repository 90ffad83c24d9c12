"""A scan: runs an acquisition chain and sends its data to memory, the HDF5 file and Redis.

The contract users and programs rely on (docs/architecture.md): `.filename`, `.entry` ("N.1"),
`.state`, `.end_reason`, `.get_data()` -> {channel: array}, `.key` (its Redis key).

Cleanup always runs, whatever ended the scan (Bluesky's interrupt ladder is the model): the
chain stops every mover, the pump writes the last points, the entry gets its end_reason
(SUCCESS, USER_ABORT on Ctrl-C, FAILURE on an error) and stays readable, the Redis scan is
sealed, and a relative scan moves its axes back to where they started.
"""
from __future__ import annotations

import logging
import time

import gevent
import numpy as np

from bliss_lite.config.session import current_session
from bliss_lite.controllers.group import Group
from bliss_lite.data.frame_reader import entry_frames, open_file
from bliss_lite.data.publisher import ScanPublisher
from bliss_lite.data.writer import EntryWriter
from bliss_lite.protocols import EndReason, ScanState
from bliss_lite.scans.context import context_of
from bliss_lite.scans.io_pump import DataPump
from bliss_lite.scans.redis_link import LiveLink
from bliss_lite.scans.scan_data import ScanData
from bliss_lite.scans.suspension import ScanGuard, StagedPoint


class Scan:
    frame_budget = 256 * 2**20  # bytes of frames a Redis channel may hold (readers that fall behind lose old ones)

    def __init__(self, chain, *, name, title, npoints, save=True, restore=None, motors=(),
                 counters=(), count_time=None, scan_info=None, session=None, hooks=(), context=None, suspenders=None):
        self.chain = chain
        self.name = name
        self.title = title
        self.npoints = npoints  # None: open-ended (timescan until Ctrl-C)
        self.save = save
        self.restore = dict(restore or {})
        self.motors = list(motors)
        self.counters = list(counters)
        self.count_time = count_time
        self.session = session if session is not None else current_session()
        self.context = context if context is not None else context_of(self.session)
        self.scan_info = dict(scan_info or {})
        self.hooks = list(hooks)  # processing that follows the scan (bliss_lite.processing.hooks)
        self.state = ScanState.IDLE
        self.end_reason = None
        self.number = self.filename = self.entry = self.key = None
        self.start_time = self.end_time = None
        self.estimate = None  # set by run=False (scans/estimate.py): what the scan will cost
        self.data = ScanData(chain.channels())
        self._writer = self._publisher = self._pump = None
        self.suspenders = suspenders  # None: the session's (context.suspenders); [] none
        self.guard = ScanGuard()  # where the scan may wait: suspenders, pause() (scans/suspension.py)
        self.continues = None  # {filename, number, sub, ...}: a resumed scan's continuation entry (scans/resume.py)

    # -- the contract ------------------------------------------------------------------------
    def get_data(self):
        """{channel: numpy array} of every point taken (also while the scan runs). Points no
        longer held in memory (long scans) are read back from the file (frames from the scan's
        data files), where they were written and flushed before being let go."""
        released = [n for n, b in self.data.buffers.items() if not b.complete_in_memory]
        data = self.data.get_data([n for n in self.data.buffers if n not in released])
        for name in released:
            buffer = self.data.buffers[name]
            count, kept = buffer.released, list(buffer.points)  # no yield until read
            data[name] = np.concatenate([self._from_file(name, 0, count), buffer.as_array(kept)])
        return data

    def points(self, name, indices):
        """The values of channel `name` at these point indexes (in memory, else from the file)."""
        indices = np.asarray(indices, dtype=np.int64)
        buffer = self.data.buffers[name]
        if indices.size == 0:
            return buffer.as_array([])
        start, stop = int(indices.min()), int(indices.max()) + 1
        kept = buffer.in_memory(start, stop)
        block = buffer.as_array(kept) if kept is not None else self._from_file(name, start, stop)
        return block[indices - start]

    def _from_file(self, name, start, stop):
        """Points start..stop of a channel, as written to the file (flushed before let go)."""
        buffer = self.data.buffers[name]
        if buffer.encoded:
            with entry_frames(self.filename, self.entry, name) as frames:
                return frames.read(range(start, stop))
        with open_file(self.filename) as h5:
            return np.asarray(h5[f"{self.entry}/measurement/{name}"][start:stop], dtype=buffer.spec.dtype)

    def _raw_points(self, name, start, stop):
        """Points start..stop of a scalar channel, for publishing again after a Redis outage."""
        return self.points(name, np.arange(start, stop))

    def hook(self, name):
        """The scan's hook called `name` (e.g. "integration"), or None."""
        return next((h for h in self.hooks if getattr(h, "name", None) == name), None)  # name: optional

    def pause(self):
        """Hold the scan at its next safe place (between points, between sweep lines); from
        another greenlet, or through Redis (data/scan_control.py) from another process."""
        self.guard.pause()

    def resume(self):
        self.guard.resume()

    @property
    def suspensions(self):
        """[(start, end, reason)] of every time the scan waited (seconds since the epoch)."""
        return list(self.guard.suspensions)

    @property
    def plot_axis(self):
        return self.motors[0].name if self.motors else "elapsed_time"

    # -- running -----------------------------------------------------------------------------
    def _emit(self, values):
        if self._pump is not None and self._pump.error is not None:
            raise self._pump.error
        self.data.add_point(values)

    def run(self):
        saving = self.context.saving()
        if self.continues is not None:  # entry N.k of the scan it resumes, in that scan's file
            from bliss_lite.scans.resume import open_for_continuation

            self.number, self.save = self.continues["number"], True
            self.filename, self.entry = self.continues["filename"], f"{self.number}.{self.continues['sub']}"
            open_for_continuation(self.filename)
        else:
            if self.save:
                saving.check_writable(self.data.specs.values(), self.npoints)  # before anything moves
            self.number = saving.next_number(self.save)
            if self.save:
                self.filename, self.entry = str(saving.filename), f"{self.number}.1"
        emit = self._guard_chain()
        self.chain.attach(emit)
        self.chain.prepare()  # a device refusing its settings leaves no entry and no Redis scan
        self.start_time = time.time()
        self._open_outputs()  # the record goes out CREATED, PREPARED, STARTED in one round trip
        self._start_guard()
        self.context.scans.append(self)
        self._start_hooks()
        watchers = [factory(self) for factory in self.context.watchers]
        end_reason, pending = EndReason.FAILURE, None
        try:
            for watcher in watchers:
                watcher.__enter__()
            self._pump = DataPump(self.data, self._writer, self._publisher, warn=_warn).start()
            self.chain.run()
            end_reason = EndReason.SUCCESS
        except BaseException as exc:
            pending = exc
            if isinstance(exc, (KeyboardInterrupt, gevent.GreenletExit)):
                end_reason = EndReason.USER_ABORT
            raise
        finally:
            try:
                self.guard.stop()  # a suspension still running ends now, in the entry too
                self._close(end_reason, pending)
            finally:
                for watcher in reversed(watchers):
                    try:
                        watcher.__exit__(type(pending) if pending else None, pending, None)
                    except Exception as exc:  # noqa: BLE001 - a display never keeps the axes away
                        _warn(f"WARNING: scan display failed: {exc}")
                self._return_to_start(pending)
                self._finish_hooks()
        return self

    def _guard_chain(self):
        """Give the top master the guard (masters that can redo a point take it: `guard`), and
        the emit its nodes use: a step scan with suspenders holds each point until it stands."""
        top = self.chain.top
        suspenders = self.suspenders if self.suspenders is not None else list(self.context.suspenders)
        self.guard.suspenders = list(suspenders)
        if not hasattr(top, "guard"):
            return self._emit
        top.guard = self.guard
        if getattr(top, "redo", None) == "point" and self.guard.suspenders:
            self.guard.stage = StagedPoint(self._emit)
            return self.guard.stage.emit
        self.guard.stage = None
        return self._emit

    def _start_guard(self):
        self.guard.label = f"scan {self.number}"
        if self._publisher is not None and self.key is not None:
            self.guard.client, self.guard.key = self.context.redis.client(), self.key
        if self._writer is not None:
            self.guard.on_change = self._writer.add_suspension
        self.guard.start()

    def _start_hooks(self):
        """A hook that cannot start is dropped with a warning: acquisition goes on, the frames
        are in the file and can be reprocessed."""
        for hook in list(self.hooks):
            try:
                hook.scan_started(self)
            except Exception as exc:  # noqa: BLE001 - processing never stops the acquisition
                _warn(f"WARNING: scan {self.number}: hook {getattr(hook, 'name', hook)!r} did not start: {exc}")
                self.hooks.remove(hook)

    def _finish_hooks(self):
        for hook in self.hooks:
            try:
                hook.scan_finished(self)
            except Exception as exc:  # noqa: BLE001 - the data is saved; say what failed
                _warn(f"WARNING: scan {self.number}: hook {getattr(hook, 'name', hook)!r} failed: {exc}")

    def _open_outputs(self):
        specs = list(self.data.specs.values())  # the chain's channels, as the buffers hold them
        axes = [s for s in specs if s.name in {m.name for m in self.motors}]
        others = [s for s in specs if s not in axes]
        info = {"title": self.title, "type": self.name, "npoints": self.npoints, "count_time": self.count_time,
                "motors": [m.name for m in self.motors], "counters": [c.name for c in self.counters],
                "filename": self.filename, "entry": self.entry, "start_time": self.start_time,
                "plot": {"axis": self.plot_axis, "signal": self._plot_signal()}, **self.scan_info}
        self.scan_info = info
        if self.save:
            positioners = {a.name: (a.position, a.unit) for a in (self.session.axes if self.session else self.motors)}
            self._writer = EntryWriter(self.filename, self.number, title=self.title, positioners=positioners,
                                       axes=axes, counters=others,
                                       plot={"axis": self.plot_axis, "signal": info["plot"]["signal"]},
                                       scan_info=info, npoints=self.npoints,
                                       sub=self.continues["sub"] if self.continues else 1)
        client = self.context.redis.client()
        if client is not None:
            publisher = ScanPublisher(client, session=self.session.name if self.session else "", number=self.number,
                                      name=self.name, scan_info=info, channels=specs, frame_budget=self.frame_budget)
            self._publisher = LiveLink(publisher, self._raw_points, _warn, f"scan {self.number}", self.context.redis)
            self._publisher.create(then=("PREPARED", "STARTED"))  # if Redis fails, the pump creates it later
            self.key = self._publisher.key
        self.state = ScanState.STARTED

    def _plot_signal(self):
        names = [c.name for c in self.counters]
        chosen = self.context.selected_counter()
        return chosen if chosen in names else (names[0] if names else None)

    def _close(self, end_reason, pending=None):
        """Write the last points, close the entry, seal the Redis scan: always, in this order.

        Each step runs even if one before it failed; a Ctrl-C during cleanup is held until the
        entry is closed and the scan sealed, then raised. A writer error makes it a FAILURE.
        """
        errors, held = [], []

        def step(call, *args):
            try:
                return call(*args)
            except KeyboardInterrupt as exc:
                held.append(exc)
            except Exception as exc:  # noqa: BLE001 - the other steps still run
                errors.append(exc)
            return None

        last = None
        if self._pump is not None:
            last = step(self._pump.finish)
            if held:  # interrupted while waiting for the pump: write the rest anyway
                last = step(self._pump.flush, False)
            if self._pump.error is not None:
                errors.insert(0, self._pump.error)
        if errors:
            end_reason = EndReason.FAILURE
        elif held and end_reason == EndReason.SUCCESS:
            end_reason = EndReason.USER_ABORT
        self.end_reason = end_reason
        if self._writer is not None:
            marks = {node.name: {"frames_dropped": node.report["dropped"], "frames_duplicated": node.report["duplicated"]}
                     for node in self.chain.nodes if getattr(node, "report", None)}
            step(self._writer.close, end_reason, marks)
        step(self._seal, end_reason, last)
        self.state = ScanState.CLOSED
        self.end_time = time.time()
        if held:
            raise held[0]
        if errors and pending is None:
            raise errors[0]

    def _seal(self, end_reason, last):
        """Seal the Redis scan; if Redis went away during the scan, it is looked for once more
        (see LiveLink: what Redis missed is named in the record; the file has it all)."""
        if self._publisher is None:
            return
        self._publisher.seal(end_reason, last)
        self.key = self._publisher.key
        publisher = self._publisher.publisher
        for name, count in publisher.trimmed().items():
            self.scan_info.setdefault("redis_trimmed", {})[name] = count
            kind = "frames" if self.data.specs[name].encoding != "raw" else "points"
            budget = self.frame_budget if kind == "frames" else publisher.point_budget
            _warn(f"{name}: Redis kept only the last ~{publisher.counts[name] - count} {kind} (memory budget "
                  f"{budget // 2**20} MB); all {publisher.counts[name]} are in the file")

    def _return_to_start(self, pending=None):
        """Relative scans end where they started, also after an error or Ctrl-C."""
        if not self.restore:
            return
        axes = list(self.restore)
        try:
            Group(*axes).move(self.restore)
        except KeyboardInterrupt:
            _warn("Return to the start positions interrupted: " + ", ".join(f"{a.name} at {a.position:.5f}" for a in axes))
            raise
        except Exception as exc:
            if pending is None:
                raise
            _warn(f"WARNING: could not return to the start positions: {exc}")

    # -- display -----------------------------------------------------------------------------
    def __info__(self):
        where = f"{self.filename} entry {self.entry}" if self.filename else "not saved"
        points = self.data.npoints
        waiting = ""
        if self.guard.suspended is not None:
            reason, since = self.guard.suspended
            waiting = f", suspended since {time.strftime('%H:%M:%S', time.localtime(since))}: {reason}"
        return (f"Scan {self.number} {self.title}\n  state: {self.state}"
                f"{f' ({self.end_reason})' if self.end_reason else ''}, {points} points{waiting}\n"
                f"  file:  {where}\n  redis: {self.key or 'not published'}")

    def __repr__(self):
        return f"<Scan {self.number} {self.title!r} {self.state}>"


logger = logging.getLogger(__name__)


def _warn(text):
    """A warning for the user: plain text on stderr (bliss_lite.config.logs), and in the log."""
    logger.warning(text)
