"""An integration worker: takes frames from the active scans' streams through the consumer
group, integrates them with the lean engine and publishes the patterns (`bliss-lite worker`).

One process, one thread, no gevent: workers scale by processes (OMP_NUM_THREADS=1; numpy
and the numba product each use one core). Each round it first claims frames left pending by
a dead worker (idle longer than CLAIM_IDLE_MS), then reads new ones; patterns and
acknowledgements go in one pipelined round trip per batch. A frame whose entry Redis has
already dropped (memory budget) is left to the scan's hook, which reads it from the file.

A job may ask for the GPU (`backend` "gpu" or "auto", the integration hook's option): a worker
that has one integrates a whole batch at once, the frames crossing the bus as the compressed
bytes Redis holds and decoded there; a worker without one integrates on the CPU (same
patterns within 1e-4) and says so once, so a GPU host and CPU hosts can share a scan.

The worker logs to `bliss_lite.processing.worker`: by default to `<run dir>/logs/worker.log`
(all the workers of a run directory share it), warnings also to stderr (bliss_lite.config.logs).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time

import redis

from bliss_lite.data import dead_letters
from bliss_lite.data.client import ScanReader
from bliss_lite.processing import integration_queue as queue
from bliss_lite.processing.integration_settings import IntegrationSettings, cpu_only_reason

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 5.0  # longest wait for a reply: well above the 0.5 s a worker's reads block


class Worker:
    def __init__(self, client, name=None, batch=16, frame_delay=0.0, log=None, backend=None):
        self.client = client
        self.backend = backend  # overrides the jobs' backend when given ("cpu", "gpu", "auto")
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.frame_delay = frame_delay  # tests: slow down, so a kill lands mid-batch
        self.log = log  # a callable(text) that takes the messages instead of the logger (tests)
        self.integrators = {}  # (settings JSON, backend asked for) -> LeanIntegrator
        self.readers = {}  # scan key -> ScanReader (channel specs)
        self.described = set()  # scans whose integration info this worker has made sure of
        self.done = 0
        self.stopping = False
        self._announce_id = "$"
        self._said = set()  # GPU fallback reasons already logged
        self.refused = {}  # scan key -> its job JSON, a job this worker cannot do (a dead letter says why)
        self.poisoned = 0  # stream entries it could not decode: dead letters

    def integrator(self, job):
        """The job's integrator, built once per geometry and asked-for backend. "gpu" and "auto"
        take the GPU where LeanIntegrator can (a GPU here, no outlier rejection); where a job
        asked for "gpu" and gets the CPU, the reason is said once."""
        from bliss_lite.processing import gpu

        settings = IntegrationSettings.from_dict(job["settings"])
        requested = self.backend or job.get("backend", "cpu")
        requested = requested if requested in gpu.BACKENDS else "cpu"
        key = (settings.to_json(), requested)
        if key not in self.integrators:
            from bliss_lite.processing.integrator import LeanIntegrator

            integrator = LeanIntegrator(settings, backend="cpu" if requested == "cpu" else "auto")
            if requested == "gpu" and integrator.backend != "gpu":
                self._say_once(gpu.unavailable_reason() or cpu_only_reason(settings.outliers))
            self.integrators[key] = integrator
        return self.integrators[key]

    def _say_once(self, reason):
        if reason not in self._said:
            self._said.add(reason)
            self._say(logging.WARNING, f"worker {self.name}: backend 'gpu' asked for, but {reason}: "
                                       "integrating on the CPU")

    def _say(self, level, text):
        if self.log is not None:
            self.log(text)
        else:
            logger.log(level, text)

    def run(self, max_idle_s=None, max_frames=None, reconnect_s=10.0):
        """Work until stopped (SIGTERM/SIGINT), or idle for `max_idle_s`, or `max_frames` done,
        or Redis unreachable for `reconnect_s` (the server went away: nothing left to do)."""
        idle_since = time.monotonic()
        lost_since = None
        while not self.stopping:
            try:
                handled = self.round()
                lost_since = None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_s:
                    self._say(logging.WARNING,
                              f"worker {self.name}: Redis unreachable for {reconnect_s:g} s ({exc}); stopping")
                    break
                time.sleep(0.5)
                continue
            if handled:
                idle_since = time.monotonic()
            elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                break
            if max_frames is not None and self.done >= max_frames:
                break
        return self.done

    def round(self, block_ms=500):
        """One pass over the active scans; returns the number of frames integrated."""
        jobs = queue.active_jobs(self.client)
        for key in list(self.readers):
            if key not in jobs:
                del self.readers[key]
                self.described.discard(key)
        if not jobs:
            self._wait_for_announce(block_ms)
            return 0
        for key in [k for k, raw in self.refused.items() if jobs.get(k) != raw]:
            del self.refused[key]  # gone, or registered anew: try it again
        jobs = {k: j for k, j in jobs.items() if k not in self.refused}
        handled = 0
        for key, job in list(jobs.items()):
            try:
                handled += self._claim(key, job)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - one scan this worker cannot do stops no other
                self._refuse(key, job, exc)
                del jobs[key]
        if not jobs:
            return handled
        streams = {queue.frames_key(k, j["detector"]): ">" for k, j in jobs.items()}
        by_stream = {queue.frames_key(k, j["detector"]): (k, j) for k, j in jobs.items()}
        try:
            answer = self.client.xreadgroup(queue.GROUP, self.name, streams, count=self.batch, block=block_ms)
        except redis.ResponseError as exc:  # a group gone (scan cleaned up): forget it next round
            if "NOGROUP" not in str(exc):
                raise
            return handled
        for stream, entries in answer or []:
            key, job = by_stream[stream.decode()]
            try:
                handled += self._process(key, job, entries)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - its entries stay pending: the scan integrates them from the file
                self._refuse(key, job, exc)
        return handled

    def _refuse(self, key, job, exc):
        """A scan whose job, record or channel this worker cannot use: one dead letter and one
        warning, then it leaves that scan alone (until its job changes)."""
        reason = f"{type(exc).__name__}: {exc}"
        self.refused[key] = job
        self.readers.pop(key, None)
        self.described.discard(key)
        dead_letters.record(self.client, source=queue.ACTIVE_KEY, entry_id=key, reason=reason, reader=self.name,
                            scan=key)
        self._say(logging.WARNING, f"worker {self.name}: cannot integrate {key}: {reason}; left to the scan")

    def _wait_for_announce(self, block_ms):
        answer = self.client.xread({queue.ANNOUNCE_KEY: self._announce_id}, block=block_ms, count=10)
        if answer:
            self._announce_id = answer[0][1][-1][0]

    def _claim(self, key, job):
        stream = queue.frames_key(key, job["detector"])
        try:
            reply = self.client.xautoclaim(stream, queue.GROUP, self.name, queue.CLAIM_IDLE_MS,
                                           start_id="0-0", count=self.batch)
        except redis.ResponseError:
            return 0
        # Redis 7 answers (next, entries, deleted ids), 6.2 (next, entries) with trimmed ones empty
        gone = list(reply[2]) if len(reply) > 2 else []
        gone += [e[0] for e in reply[1] if e is not None and not e[1]]
        if gone:  # trimmed by the memory budget: the scan's hook integrates them from the file
            self.client.xack(stream, queue.GROUP, *gone)
        entries = [e for e in reply[1] if e is not None and e[1]]
        if entries:
            self._say(logging.WARNING, f"worker {self.name}: claimed {len(entries)} frame(s) of {key} "
                                       "left by another worker")  # a worker died mid-scan: the user is told
        return self._process(key, job, entries)

    def _process(self, key, job, entries):
        if not entries:
            return 0
        if key not in self.readers:
            self.readers[key] = ScanReader(self.client, key)
        reader, integrator = self.readers[key], self.integrator(job)
        if key not in self.described:
            queue.set_info(self.client, key, integrator)
            self.described.add(key)
            self._say(logging.INFO, f"worker {self.name}: integrating {key} ({job['detector']}, "
                                    f"backend {integrator.backend})")
        ids = [entry_id for entry_id, _ in entries]
        poisoned = []  # (position in entries, frame index or None, reason)
        indices, patterns = integrate_entries(reader.channels[job["detector"]], integrator,
                                              [fields for _, fields in entries], self.frame_delay, poisoned)
        stream = queue.frames_key(key, job["detector"])
        pipe = self.client.pipeline(transaction=False)
        queue.publish_patterns(pipe, key, indices, patterns, self.name)
        for position, index, reason in poisoned:  # told to the scan, which integrates them from its file
            dead_letters.record(pipe, source=stream, entry_id=ids[position], reason=reason, reader=self.name,
                                scan=key, index=index)
        pipe.xack(stream, queue.GROUP, *ids)
        pipe.execute()
        if poisoned:
            self.poisoned += len(poisoned)
            self._say(logging.WARNING, f"worker {self.name}: {len(poisoned)} entr(y/ies) of {stream} not decodable "
                                       f"({poisoned[0][2]}); recorded as dead letters, going on")
        self.done += len(indices)
        logger.debug("worker %s: %d frame(s) of %s integrated", self.name, len(indices), key)
        return len(indices)


def integrate_entries(spec, integrator, entries, frame_delay=0.0, poisoned=None):
    """(indices, patterns) of a batch of frame-stream entries (field dicts; the seal entry has
    no data). On the GPU a batch of Bitshuffle-LZ4 frames is one call: the compressed bytes
    cross the bus and are decoded there. Elsewhere frame by frame, decoded here.
    `poisoned`: a list that takes (position, frame index or None, reason) of each entry that
    cannot be decoded or integrated, instead of raising (one bad entry stops no other)."""
    from bliss_lite.data.client import decode_entry

    entries = [(position, fields) for position, fields in enumerate(entries) if b"data" in fields]
    if integrator.backend == "gpu" and spec.encoding == "bslz4" and entries:
        try:
            indices = [int(fields[b"index"]) for _, fields in entries]
            patterns = integrator.integrate_compressed([fields[b"data"] for _, fields in entries],
                                                       dtype=spec.numpy_dtype.newbyteorder("="))
            return indices, patterns
        except Exception:
            if poisoned is None:
                raise  # else frame by frame below, to find the bad one(s)
    indices, patterns = [], []
    for position, fields in entries:
        try:
            index, frames = decode_entry(spec, fields)
            done = [integrator.integrate(frame) for frame in frames]
        except Exception as exc:
            if poisoned is None:
                raise
            poisoned.append((position, _index_of(fields), f"{type(exc).__name__}: {exc}"))
            continue
        for k, pattern in enumerate(done):
            indices.append(index + k)
            patterns.append(pattern)
            if frame_delay:
                time.sleep(frame_delay)
    return indices, patterns


def _index_of(fields):
    try:
        return int(fields[b"index"])
    except (KeyError, ValueError):
        return None


def main(argv=None):
    """`bliss-lite worker [--redis URL] [--name NAME]`: integrate frames of the active scans."""
    import argparse

    parser = argparse.ArgumentParser(prog="bliss-lite worker",
                                     description="Integrate the frames of running scans (Redis consumer group).")
    parser.add_argument("--redis", help="Redis URL (default: $BLISS_LITE_REDIS_URL or the run directory's server)")
    parser.add_argument("--name", help="consumer name (default: host-pid)")
    parser.add_argument("--batch", type=int, default=16, help="frames read at once (default 16)")
    parser.add_argument("--max-idle", type=float, default=None, help="exit after S seconds without frames")
    parser.add_argument("--backend", choices=("cpu", "gpu", "auto"), default=None,
                        help="integrate on this backend whatever the scans ask for (default: the scan's choice)")
    parser.add_argument("--frame-delay", type=float, default=0.0, help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    from bliss_lite.config.logs import setup_logging, startup_error

    setup_logging(process_name="worker", to_run_dir=True)
    if args.backend == "gpu":
        from bliss_lite.processing import gpu

        if not gpu.available():
            startup_error(logger, f"bliss-lite worker: --backend gpu, but {gpu.unavailable_reason()}")
            return 1
    from bliss_lite.data import redis_server

    try:  # a server silent for SOCKET_TIMEOUT_S is reported, not waited on
        if args.redis:
            client = redis_server.connect(args.redis, socket_timeout=SOCKET_TIMEOUT_S)
        else:
            from bliss_lite.config.paths import run_dir

            client = redis_server.connect(redis_server.ensure_server(run_dir()), socket_timeout=SOCKET_TIMEOUT_S)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable: reported, exit 1
        startup_error(logger, f"bliss-lite worker: cannot reach Redis: {exc}")
        return 1
    worker = Worker(client, args.name, args.batch, args.frame_delay, backend=args.backend)

    def stop(*_):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    logger.info("worker %s ready", worker.name)
    print(f"worker {worker.name} ready", flush=True)  # the line a starter waits for, as the view's URL
    try:
        worker.run(max_idle_s=args.max_idle)
    except KeyboardInterrupt:
        pass
    except Exception:  # noqa: BLE001 - in the log with its traceback (stderr too), exit 1
        logger.exception("worker %s failed after %d frame(s)", worker.name, worker.done)
        return 1
    logger.info("worker %s: %d frames integrated", worker.name, worker.done)
    return 0
