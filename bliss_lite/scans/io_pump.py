"""Moving a scan's new points to the HDF5 file and to Redis, in a greenlet of its own.

The scan loop never waits for I/O: it appends to the scan's buffers and goes on; the pump
wakes every PERIOD (or when asked), takes everything new as one batch per channel and hands it
to the writer (one flush for SWMR readers) and the publisher (one pipelined round trip).
A writer error (disk full, file gone) is kept and raised in the scan loop, which stops the
scan. Redis errors never reach the pump: its publisher is the scan's `redis_link.LiveLink`,
which warns, counts what Redis missed, looks for Redis again and resumes; the file keeps
every point whatever Redis does.
"""
from __future__ import annotations

import logging

import gevent
import gevent.event


class DataPump:
    PERIOD = 0.05  # seconds: how stale the file and the Redis streams may be while a scan runs

    def __init__(self, data, writer=None, publisher=None, warn=None):
        self.data = data
        self.writer = writer
        self.publisher = publisher
        self.error = None  # a writer failure: the scan must stop
        self._warn = warn or logging.getLogger(__name__).warning
        self._wake = gevent.event.Event()
        self._stopping = False
        self._greenlet = None

    def start(self):
        self._greenlet = gevent.spawn(self._loop)
        return self

    def wake(self):
        self._wake.set()

    def _loop(self):
        while True:
            self._wake.wait(self.PERIOD)
            self._wake.clear()
            if self._stopping:
                return  # finish() writes the rest; the scan publishes it with the seal
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - e.g. a counter value that is no number
                self.error = exc
                return

    def flush(self, publish=True):
        """Write (and publish) what is new; returns the batch."""
        batch = self.data.take_new()
        if batch and self.writer is not None and self.error is None:
            try:
                self.writer.append(batch)
            except Exception as exc:  # noqa: BLE001 - kept, raised by the scan loop
                self.error = exc
        if publish and self.publisher is not None:
            self.publisher.publish(batch)  # also when empty: Redis, if away, is looked for when due
        if batch and self.writer is not None and self.error is None:
            self.data.release_sent()  # frames on disk need not stay in memory
        return batch

    def finish(self):
        """Stop the greenlet and write what is left to the file (called from the scan's
        cleanup); returns the last batch, which the scan publishes together with the seal."""
        self._stopping = True
        self._wake.set()
        if self._greenlet is not None:
            try:
                self._greenlet.join()
            except BaseException:
                self._greenlet.kill(block=False)
                raise
        return self.flush(publish=False)
