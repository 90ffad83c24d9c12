"""The `integration` hook: every frame of the scan becomes a 1-D pattern while the scan runs.

At the start it registers the scan with the workers (integration_queue) and makes sure the
configured number of local workers run; a greenlet then collects the patterns as they come
back, writes them to the scan's `integrated.h5` (reduction_files.PatternStore: a line is
written once its patterns are all in, only incomplete lines stay in memory) and hands them to
listeners (the reconstruction hook). The hook itself keeps the runs of frames received
(`received`, an IndexRanges: its memory is that of the gaps, not of the scan) and the running
sum of the patterns (`pattern_sum`), never the patterns. At the end it waits for the last
patterns, integrates itself whatever no worker delivered (frames dropped from Redis
by the memory budget, no Redis at all, no worker alive) from the HDF5 file, closes
`integrated.h5` and writes the NXprocess, whose `results/intensity` refers to it.

`backend` ("cpu", "gpu", "auto") goes to the workers with the job (a GPU worker integrates
the compressed frames of a whole batch on the GPU) and is used for the frames integrated
here; on the GPU those patterns reach the listeners as CuPy arrays, so a GPU reconstruction
places them without a trip through host memory.
"""
from __future__ import annotations

import time

import numpy as np

from bliss_lite.data import dead_letters
from bliss_lite.data.model import dead_letters_key
from bliss_lite.processing import integration_queue as queue
from bliss_lite.processing.gpu import checked_option, take_rows, to_host
from bliss_lite.processing.hook_registry import ScanHook, register_hook, warn
from bliss_lite.processing.index_ranges import IndexRanges
from bliss_lite.processing.integration_settings import IntegrationSettings, cpu_only_reason
from bliss_lite.processing.reduction_files import OPEN_BYTES
from bliss_lite.protocols import Backend, EndReason

CHUNK_FRAMES = 64  # frames read and integrated here at once
HOOK_OPTIONS = {"workers", "timeout", "poni", "detector", "poll_s", "backend"}


class IntegrationHook(ScanHook):
    name = "integration"

    def __init__(self, settings: IntegrationSettings, detector, workers=2, timeout=20.0, poll_s=0.25,
                 backend=Backend.CPU):
        self.settings = settings
        self.backend = backend  # "cpu", "gpu" or "auto": the workers' and this hook's integration
        self.detector = detector  # name of the frame channel
        self.workers = workers
        self.dead_letters = 0  # frames of the last scan no worker could decode, integrated from the file
        self.timeout = timeout  # s without a new pattern before the hook integrates the rest itself
        self.poll_s = poll_s
        self.listeners = []  # callables (indices, patterns: NumPy, or CuPy when integrated here on the GPU)
        self.received = IndexRanges()  # the frames whose pattern is in
        self.pattern_sum = None  # (npt,) float64: the sum of the patterns received so far
        self.store = None  # the scan's PatternStore (integrated.h5) while a saved scan runs
        self.radial = None
        self.local_frames = 0  # integrated here, not by a worker
        self._client = self._reader = self._greenlet = self._scan_key = None
        self._integrator = None

    @property
    def npt(self):
        return self.settings.npt

    def estimate(self, frames, scan_info, earlier=None):
        """What it writes and holds for a scan of `frames` frames (run=False): float32 patterns
        and a flag per frame on disk; the open lines, the running sum and a chunk of frames
        integrated here in memory (the runs of frames received are a few, whatever the scan)."""
        patterns = frames * self.npt * 4
        return {"bytes": patterns + frames, "peak_memory_bytes": OPEN_BYTES + 8 * self.npt + 16 * CHUNK_FRAMES,
                "npt": self.npt, "patterns_bytes": patterns}

    @property
    def client(self):
        """The Redis client of the running scan, None without Redis (patterns from the file)."""
        return self._client

    def add_listener(self, callback):
        self.listeners.append(callback)

    # -- the scan's calls ------------------------------------------------------------------------
    def scan_started(self, scan):
        import gevent

        self.received, self.pattern_sum = IndexRanges(), np.zeros(self.npt, np.float64)
        if scan.filename:
            self.store = pattern_store(scan.filename, scan.entry, self.npt, scan.scan_info, scan.npoints)
        self._client = scan.context.redis.client()
        if self._client is None or scan.key is None:
            warn(f"integration: no Redis for scan {scan.number}: its frames are integrated from the file at the end")
            return
        self._scan_key = scan.key
        queue.register(self._client, scan.key, self.detector, self.settings, scan.npoints, self.backend)
        if self.workers:
            from bliss_lite.processing.worker_pool import pool

            workers = pool(scan.context.redis.url())
            workers.ensure(self.workers)
            scan.context.on_close(workers.stop)  # the session's workers end with it
        self._reader = queue.PatternReader(self._client, scan.key, self.npt)
        self._greenlet = gevent.spawn(self._collect_forever)

    def scan_finished(self, scan):
        if self._greenlet is not None:
            self._greenlet.kill()
        total = scan.data.count(self.detector)
        if self._reader is not None:
            self._wait_for(total, scan.end_reason)
            queue.unregister(self._client, scan.key)
            try:
                self._client.xgroup_destroy(queue.frames_key(scan.key, self.detector), queue.GROUP)
            except Exception:  # noqa: BLE001 - already gone: nothing to free
                pass
        try:
            missing = total - self.received.count_below(total)
            dead = self._dead_letters_missing(total) if self._reader is not None else set()
            self.dead_letters = len(dead)
            if missing and scan.filename:
                if dead:
                    warn(f"integration: {len(dead)} frame(s) the workers could not decode (dead letters in "
                         f"{dead_letters_key(scan.key)}); integrating them from the file")
                if self._reader is not None and missing > len(dead):
                    warn(f"integration: {missing - len(dead)} frame(s) not integrated by a worker; integrating "
                         "them from the file")
                self._integrate_from_file(scan, self.received.missing_below(total, chunk=CHUNK_FRAMES))
            if self.radial is None:
                self.radial = self.integrator().radial
        finally:  # the patterns file is closed (and whole) whatever failed
            stored = self.store.close(total) if self.store is not None else None
        if stored is not None:
            from bliss_lite.processing.nexus_output import write_integration

            write_integration(scan.filename, scan.entry, self.radial, self.settings, stored["intensity"],
                              stored["integrated"], self.local_frames)

    # -- collecting ----------------------------------------------------------------------------
    def _collect_forever(self):
        import gevent

        while True:
            self.collect()
            gevent.sleep(self.poll_s)

    def collect(self):
        """Take the patterns published since the last call; returns how many."""
        try:
            indices, patterns = self._reader.poll()
        except Exception as exc:  # noqa: BLE001 - Redis gone: the end integrates the rest from the file
            warn(f"integration: cannot read patterns ({exc})")
            return 0
        if not len(indices):
            return 0
        if self.radial is None:
            info = queue.get_info(self._client, self._scan_key)
            if info is not None:
                self.radial = np.asarray(info["radial"])
        self._store(indices, patterns)
        return len(indices)

    def _store(self, indices, patterns):
        """Write (host copy) and hand on newly arrived patterns (NumPy, or CuPy from the GPU)."""
        fresh = ~self.received.contains(indices)
        if not fresh.all():
            indices, patterns = indices[fresh], take_rows(patterns, fresh)
        if not len(indices):
            return
        host = to_host(patterns)
        if self.store is not None:
            self.store.put(indices, host)
        self.pattern_sum += host.sum(axis=0, dtype=np.float64)
        self.received.add(indices)
        for listener in self.listeners:
            try:
                listener(indices, patterns)
            except Exception as exc:  # noqa: BLE001 - a listener never stops the collection
                warn(f"integration: listener {listener!r} failed: {exc}")

    def _wait_for(self, total, end_reason):
        """Until every frame is integrated, or nothing new came for `timeout` seconds (a few
        seconds only after an abort: the user wants the prompt back)."""
        import gevent

        patience = self.timeout if end_reason == EndReason.SUCCESS else min(self.timeout, 3.0)
        last_progress = time.monotonic()
        while self.received.count_below(total) < total:
            if self.collect():
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > patience:
                break
            elif total - self.received.count_below(total) <= len(self._dead_letters_missing(total)):
                break  # what is left, no worker can decode: the file has it
            gevent.sleep(self.poll_s / 2)

    def _dead_letters_missing(self, total):
        """The dead letters among the frames 0 .. total-1 not received."""
        dead = [index for index in self._dead_letters() if 0 <= index < total]
        return {index for index, held in zip(dead, self.received.contains(dead)) if not held}

    def _dead_letters(self):
        """Indices of the frames of this scan the workers could not decode (data/dead_letters)."""
        try:
            return {letter["index"] for letter in dead_letters.read(self._client, self._scan_key)
                    if letter["index"] is not None}
        except Exception:  # noqa: BLE001 - Redis gone: the file has every frame anyway
            return set()

    # -- doing it here -------------------------------------------------------------------------
    def integrator(self):
        if self._integrator is None:
            from bliss_lite.processing.integrator import LeanIntegrator

            self._integrator = LeanIntegrator(self.settings, backend=self.backend)
        return self._integrator

    def _integrate_from_file(self, scan, chunks):
        """Integrate here the frames of these index arrays (at most CHUNK_FRAMES each)."""
        from bliss_lite.data.entry_reader import read_frames

        integrator = self.integrator()
        on_gpu = integrator.backend == Backend.GPU  # patterns stay there for the listeners
        for chunk in chunks:
            frames = read_frames(scan.filename, scan.entry, self.detector, chunk)
            self._store(chunk, integrator.integrate_many(frames, device=on_gpu))
            self.local_frames += len(chunk)


def line_frames(scan_info, npoints=None):
    """Frames of one line of the scan (a sweep of its fast axis): the chunk of its patterns."""
    xrdct = (scan_info or {}).get("xrdct")
    if xrdct:
        return int(xrdct["n_omega"] if xrdct.get("fast_axis", "omega") == "omega" else xrdct["n_x"])
    return int(npoints or 1)


def pattern_store(master, number, npt, scan_info, npoints, staging=False):
    """The PatternStore of scan `number` (or entry "N.k"): `integrated.h5` in the scan's folder."""
    from bliss_lite.data.scan_files import reduction_file
    from bliss_lite.processing.reduction_files import PatternStore

    return PatternStore(reduction_file(master, number, "integrated"), npt, line_frames(scan_info, npoints),
                        npoints or 0, staging=staging)


def _settings_from(options, context):
    detector = context.get("detector")
    poni = options.pop("poni", None)
    if poni is None:  # the geometry of the sample the scan recorded
        poni = ((context.get("scan_info") or {}).get("sample") or {}).get("poni")
    if poni is None:
        raise ValueError("no geometry: give poni=PATH (the scan recorded no sample with a PONI file)")
    roi = getattr(detector, "roi", None)
    if roi is not None and "roi" not in options:
        options["roi"] = (roi.row, roi.column, roi.rows, roi.columns)
    return IntegrationSettings.from_poni(poni, **options)


@register_hook("integration")
def make_integration_hook(options, context):
    hook_options = {k: options.pop(k) for k in list(options) if k in HOOK_OPTIONS}
    detector = hook_options.pop("detector", None) or getattr(context.get("detector"), "name", None)
    if detector is None:
        raise ValueError("no detector to integrate")
    workers = hook_options.get("workers", 2)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= 64:
        raise ValueError(f"workers must be a whole number in 0..64, got {workers!r}")
    timeout = hook_options.get("timeout", 20.0)
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    backend = _checked_backend(hook_options.get("backend", Backend.CPU), options.get("outliers", "none"))
    if "poni" in hook_options:
        options["poni"] = hook_options.pop("poni")
    try:
        settings = _settings_from(options, context)
    except TypeError as exc:  # an unknown keyword: name the known ones
        known = sorted(set(IntegrationSettings.__dataclass_fields__) - {"geometry", "extra"} | HOOK_OPTIONS)
        raise ValueError(f"{exc}; known options: {', '.join(known)}") from None
    return IntegrationHook(settings, detector, workers, float(timeout), hook_options.get("poll_s", 0.25), backend)


def _checked_backend(backend, outliers):
    """The backend option, refused before the scan where it cannot run: "gpu" needs a GPU
    here (the frames the workers miss are integrated here) and no outlier rejection."""
    reason = cpu_only_reason(outliers)
    if checked_option(backend, "integration") == Backend.GPU and reason:
        raise ValueError(f"backend 'gpu': {reason}; use backend='cpu' or 'auto'")
    return backend
