#!/usr/bin/env python3
"""The Pilatus 2M simulator as its own process, behind a TCP socket (protocol:
bliss_lite/controllers/detectors/pilatus_protocol.py).

It renders frames of the simulated sample (the same phantom and PONI geometry as in-process)
for each trigger, compresses them and sends them back on the connection. One client at a time,
as a detector server serves one control system.

    python simulators/pilatus_server.py [--port 0] [--poni FILE] [--seed 1]

prints `LISTENING <port>` once it accepts connections.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bliss_lite.controllers.detectors.pilatus import Pilatus2M  # noqa: E402
from bliss_lite.controllers.detectors.pilatus_base import DetectorError  # noqa: E402
from bliss_lite.controllers.detectors.pilatus_protocol import frame_header, parse_ints  # noqa: E402
from bliss_lite.controllers.sample.diffraction import DiffractionModel, load_geometry  # noqa: E402
from bliss_lite.controllers.sample.phantom import default_phantom  # noqa: E402


class FixedSample:
    """The sample as the simulator sees it: the beam position comes with each trigger."""

    def __init__(self, poni, seed):
        self.geometry = load_geometry(poni)
        self.phantom = default_phantom()
        self.seed = seed
        self.models = {}
        self.position = (0.0, 0.0, 0.0)

    def frame_at(self, t, exposure, roi):
        if roi not in self.models:
            self.models[roi] = DiffractionModel(self.phantom, self.geometry, roi, seed=self.seed)
        return self.models[roi].frame(*self.position, exposure)


class Faults:
    """Faults injected by a test, beside drop/twice (frames skipped or repeated by the detector):
    `stop_after=N` frames >= N are never sent; `close_after=N` hang up after frame N; `close`
    hang up instead of the next reply; `delay=S` each reply S seconds late; `garble=N` the next
    N replies garbled."""

    def __init__(self, stop_after=None, close_after=None, close_now=False, delay=0.0, garble=0):
        self.stop_after, self.close_after, self.close_now = stop_after, close_after, close_now
        self.delay, self.garble = delay, garble

    @classmethod
    def parse(cls, options):
        unknown = set(options) - {"stop_after", "close_after", "close", "delay", "garble"}
        if unknown:
            raise ValueError(f"unknown fault {', '.join(sorted(unknown))}")
        number = lambda key: int(options[key]) if options.get(key) else None  # noqa: E731
        return cls(number("stop_after"), number("close_after"), "close" in options,
                   float(options.get("delay") or 0.0), int(options.get("garble") or 0))


class Session:
    def __init__(self, connection, sample):
        self.connection = connection
        self.sample = sample
        self.detector = Pilatus2M("pilatus", sample)
        self.detector.on_frame = self.send_frame
        self.lock = threading.Lock()  # replies and frames never interleave mid-message
        self.faults = Faults()

    def send(self, data):
        with self.lock:
            self.connection.sendall(data)

    def send_frame(self, number, chunk, t):
        f = self.faults
        if f.stop_after is not None and number >= f.stop_after:
            return  # the detector goes on "exposing" but nothing comes out
        self.send(frame_header(number, t, len(chunk)) + chunk)
        if f.close_after is not None and number >= f.close_after:
            self.hang_up()

    def hang_up(self):
        """Drop the connection, as a detector server that crashes or a cable pulled."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reply(self, text):
        f = self.faults
        if f.close_now:
            f.close_now = False
            self.hang_up()
            return
        if f.garble:
            f.garble -= 1
            text = "#?" + text[::-1]
        if f.delay:
            time.sleep(f.delay)
        self.send(text.encode() + b"\n")

    def handle(self, line):
        words = line.split()
        command, args = words[0].upper(), words[1:]
        d = self.detector
        if command == "PING":
            return "OK pong"
        if command == "ROI":
            d.roi = tuple(int(v) for v in args) if args else None
            return f"OK {d.shape[0]} {d.shape[1]} {d.max_rate:g}"
        if command == "PREPARE":
            d.prepare(int(args[0]), float(args[1]), float(args[2]), args[3])
            return "OK"
        if command == "START":
            self.sample.position = tuple(float(v) for v in args[:3]) if args else (0.0, 0.0, 0.0)
            if d.trigger_mode == "INTERNAL":
                threading.Thread(target=self._internal, daemon=True).start()
            else:
                d.start()
            return "OK"
        if command == "TRIGGER":
            self.sample.position = tuple(float(v) for v in args[1:4])
            d.trigger(float(args[0]))
            return None  # the frame is the answer
        if command == "GATE":
            self.sample.position = tuple(float(v) for v in args[2:5])
            d.gate(float(args[0]), float(args[1]))
            return None
        if command == "STOP":
            d.stop()
            return "OK"
        if command == "INJECT":
            options = dict(item.split("=", 1) if "=" in item else (item, "") for item in args)
            drop, twice = parse_ints(options.pop("drop", "")), parse_ints(options.pop("twice", ""))
            faults = Faults.parse(options)
            self.send(b"OK\n")  # answered before the faults apply
            d.inject(drop=drop, twice=twice)
            self.faults = faults
            return None
        return f"ERR unknown command {command}"

    def _internal(self):
        d = self.detector
        t0, period = time.monotonic(), d.expo_time + d.latency_time
        d.trigger_mode, d._armed = "EXTERNAL_TRIGGER", True
        for i in range(d.nb_frames):
            delay = t0 + i * period + d.expo_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            d.trigger(t0 + i * period)

    def serve(self):
        buffer = b""
        while True:
            data = self.connection.recv(65536)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("ascii", "replace").strip()
                if not line:
                    continue
                try:
                    reply = self.handle(line)
                except (DetectorError, ValueError, IndexError) as exc:
                    reply = f"ERR {exc}"
                if reply is not None:
                    self.reply(reply)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--poni", default=str(ROOT / "config" / "xrdct" / "pilatus2m.poni"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sample = FixedSample(args.poni, args.seed)
    server = socket.create_server((args.host, args.port))
    print(f"LISTENING {server.getsockname()[1]}", flush=True)
    while True:
        connection, _ = server.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with connection:
            try:
                Session(connection, sample).serve()
            except OSError:
                pass  # the client went away: wait for the next one


if __name__ == "__main__":
    main()
