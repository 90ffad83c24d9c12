"""The Pilatus driver for the simulator process (simulators/pilatus_server.py), over TCP.

A sibling of the in-process simulator (`Pilatus2M`), both built on PilatusBase and both a
bliss_lite.protocols.Detector, so scans do not know the difference.
Every command waits for its reply at most `timeout` seconds: a silent or vanished detector
is a DetectorError that names it and the command, never a hang. Frames arrive on the same
connection; a reader greenlet hands them to `on_frame` as they come.
"""
from __future__ import annotations

import socket as stdlib_socket

import gevent
import gevent.queue
from gevent import socket  # cooperative whether or not the process is monkey-patched

from bliss_lite.controllers.detectors.pilatus_base import MIN_LATENCY, DetectorError, PilatusBase
from bliss_lite.controllers.detectors.pilatus_protocol import DEFAULT_TIMEOUT, parse_frame_header


class RemotePilatus(PilatusBase):
    def __init__(self, name, address, sample=None, roi=None, timeout=DEFAULT_TIMEOUT):
        host, _, port = address.rpartition(":")
        self.address = (host or "127.0.0.1", int(port))
        self.timeout = timeout
        self._socket = None
        self._replies = gevent.queue.Queue()
        self._reader = None
        self._lost = None  # why the connection ended, seen by the reader greenlet
        self._max_rate = None
        super().__init__(name, sample, roi)

    # -- connection --------------------------------------------------------------------------
    def _connect(self):
        if self._socket is not None:
            return
        try:
            self._socket = socket.create_connection(self.address, timeout=self.timeout)
        except OSError as exc:
            raise DetectorError(f"{self.name}: cannot reach the detector at {self._where}: {exc}") from None
        self._socket.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        self._socket.settimeout(None)
        self._replies, self._lost = gevent.queue.Queue(), None
        self._reader = gevent.spawn(self._read, self._socket)
        self._send_roi()

    def _send_roi(self):
        roi = self._roi
        reply = self._command(f"ROI {roi.row} {roi.column} {roi.rows} {roi.columns}")
        self._max_rate = float(reply.split()[2])

    @property
    def _where(self):
        return f"{self.address[0]}:{self.address[1]}"

    def _read(self, link):
        stream = link.makefile("rb")
        lost = None
        try:
            while True:
                line = stream.readline()
                if not line:
                    lost = "closed by the detector"
                    break
                text = line.decode("ascii", "replace").strip()
                if text.startswith("FRAME "):
                    try:
                        number, t, nbytes = parse_frame_header(text)
                    except ValueError:
                        lost = f"garbled frame header {text[:60]!r}"
                        break
                    chunk = stream.read(nbytes)
                    if len(chunk) < nbytes:
                        lost = f"frame {number} cut short"
                        break
                    self.frame_counter = number + 1
                    if self.on_frame is not None:
                        self.on_frame(number, chunk, t)
                else:
                    self._replies.put(text)
        except OSError as exc:
            lost = str(exc)
        if self._socket is link:  # not a connection we dropped ourselves
            self._lost = lost
            self._replies.put(None)  # the connection is gone

    def check(self, before="the next frame"):
        """Raise the DetectorError of a connection the reader found lost: reported once, the
        next command reconnects (frames owed by a lost connection never come)."""
        if self._lost is not None:
            lost, self._lost = self._lost, None
            self._drop()
            raise DetectorError(f"{self.name}: connection to {self._where} lost before {before}: {lost}")

    def _command(self, line, expect_reply=True):
        verb = line.split()[0]
        self.check(before=verb)
        self._connect()
        try:
            self._socket.sendall(line.encode() + b"\n")
        except OSError as exc:
            self._drop()
            raise DetectorError(f"{self.name}: connection to {self._where} lost sending {line.split()[0]}: {exc}") from None
        if not expect_reply:
            return None
        try:
            reply = self._replies.get(timeout=self.timeout)
        except gevent.queue.Empty:
            raise DetectorError(f"{self.name}: no reply to {line.split()[0]} within {self.timeout:g} s from {self._where}") from None
        if reply is None:
            self._drop()
            raise DetectorError(f"{self.name}: connection to {self._where} closed during {line.split()[0]}")
        if reply.startswith("ERR"):
            raise DetectorError(f"{self.name}: {reply[4:]}")
        if reply != "OK" and not reply.startswith("OK "):
            self._drop()  # out of step with the detector server: start afresh
            raise DetectorError(f"{self.name}: garbled reply to {verb} from {self._where}: {reply[:60]!r}")
        return reply[3:]

    def _drop(self):
        """Forget the connection (and why it ended: reported already); the next command reconnects."""
        self._lost = None
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.kill(block=False)
        if self._socket is not None:
            try:
                self._socket.shutdown(stdlib_socket.SHUT_RDWR)  # the reader's file holds the fd open
            except OSError:
                pass
            try:
                self._socket.close()
            finally:
                self._socket = None

    def close(self):
        if self._reader is not None:
            self._reader.kill()
        self._drop()

    # -- the detector ------------------------------------------------------------------------
    def _roi_changed(self):
        if self._socket is not None:
            self._send_roi()

    @property
    def max_rate(self):
        if self.rate_cap is not None:
            return self.rate_cap
        self._connect()
        return self._max_rate

    def prepare(self, nb_frames, expo_time, latency_time=MIN_LATENCY, trigger_mode="INTERNAL"):
        self._command(f"PREPARE {nb_frames} {expo_time!r} {latency_time!r} {trigger_mode}")
        self.nb_frames, self.expo_time, self.latency_time = nb_frames, expo_time, max(latency_time, MIN_LATENCY)
        self.trigger_mode = trigger_mode
        self.frame_counter = 0

    def _beam(self, t):
        if self.sample is None:
            return "0 0 0"
        return " ".join(repr(float(v)) for v in self.sample.beam_at(t))

    def start(self):
        self._command(f"START {self._beam(0.0)}")

    def trigger(self, t):
        self._command(f"TRIGGER {t!r} {self._beam(t + self.expo_time / 2)}", expect_reply=False)

    def gate(self, t_open, t_close):
        self._command(f"GATE {t_open!r} {t_close!r} {self._beam((t_open + t_close) / 2)}", expect_reply=False)

    def inject(self, drop=(), twice=(), **faults):
        """Test faults in the simulator: drop/twice (frame numbers), stop_after=N,
        close_after=N, close=True, delay=S, garble=N (pilatus_protocol.py)."""
        words = [f"drop={','.join(map(str, drop))}", f"twice={','.join(map(str, twice))}"]
        words += [key if value is True else f"{key}={value}" for key, value in faults.items() if value not in (None, False)]
        self._command("INJECT " + " ".join(words))

    def wait(self, timeout):
        deadline = gevent.get_hub().loop.now() + timeout
        while self.frame_counter < self.nb_frames and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.01)

    def stop(self):
        if self._socket is not None:
            self._command("STOP")

    def __repr__(self):
        return f"<RemotePilatus {self.name} at {self._where}>"
