"""Jobs submitted from other processes through Redis, served as dahu's server serves them.

Keys (docs: the job record is `Job.to_json()`):
- `bliss_lite:jobs:queue`  stream; one entry {"job": job JSON} per submitted job. Servers read it
  through the consumer group `bliss_lite:jobs:servers`, so several servers share the queue and
  each job goes to one of them. A served entry is acknowledged and deleted.
- `bliss_lite:jobs:<id>`   string; the job JSON: status created at submission, then the finished
  job (output or error); a job still running after `MARK_RUNNING_AFTER` shows status running
  (within one `block_ms` more; a short job costs no round trip for that). Expires after
  `RESULT_TTL` (one day).
- `bliss_lite:jobs:done`   stream; {"id", "status"} per finished job (capped), what waiters block on.

A server that dies leaves its jobs pending in the group; live servers take over entries idle
longer than `claim_idle_ms` (XAUTOCLAIM) and run them again. A live server keeps its own running
entries fresh (XCLAIM to itself, every quarter of that time), so a long job is never taken from
a server that is still running it.

Only JSON crosses the wire (nothing is unpickled) and a job names its plugin by its registered
name: a name the server does not know ends the job in failure naming the registered ones.

The server logs to `bliss_lite.processing.job_server`; run as a program, by default to
`<run dir>/logs/job-server.log`, warnings also to stderr (bliss_lite.config.logs).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid

import redis

from bliss_lite.config.file_checks import FileCheckError
from bliss_lite.data import dead_letters
from bliss_lite.data.model import JOBS_DONE_KEY as DONE_KEY
from bliss_lite.data.model import JOBS_GROUP as GROUP
from bliss_lite.data.model import JOBS_QUEUE_KEY as QUEUE_KEY
from bliss_lite.data.model import job_result_key
from bliss_lite.processing.job_paths import check_job_input, default_roots
from bliss_lite.processing.jobs import Job, JobError, JobRunner

__all__ = ["QUEUE_KEY", "GROUP", "DONE_KEY", "RESULT_TTL", "result_key", "submit_remote", "wait_remote",
           "get_remote", "serve", "main"]

logger = logging.getLogger(__name__)

DONE_MAXLEN = 10000
RESULT_TTL = 24 * 3600  # seconds
MAX_BLOCK_MS = 1000  # below the client's socket timeout
MARK_RUNNING_AFTER = 0.05  # seconds
# status "running" only over a record still "created": never over a finished job's result
_MARK_RUNNING = """
local stored = redis.call('GET', KEYS[1])
if stored and cjson.decode(stored)['status'] == 'created' then
    return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 0
"""


result_key = job_result_key


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def submit_remote(client: redis.Redis, plugin: str, input: dict) -> str:
    """Queue a job for the servers; its id. The plugin name is checked by the server (this
    process need not import the plugins): an unknown one ends the job in failure."""
    if not isinstance(plugin, str) or not plugin:
        raise ValueError(f"plugin must be a non-empty string, got {plugin!r}")
    if not isinstance(input, dict):
        raise TypeError(f"job input must be a dict, got {type(input).__name__}")
    job = Job(plugin, input)
    text = job.to_json()
    pipe = client.pipeline(transaction=False)
    pipe.set(result_key(job.id), text, ex=RESULT_TTL)
    pipe.xadd(QUEUE_KEY, {"job": text})
    pipe.execute()
    return job.id


def get_remote(client: redis.Redis, job_id: str) -> Job | None:
    """The job as Redis holds it now, None if unknown or expired."""
    text = client.get(result_key(job_id))
    return None if text is None else Job.from_json(text, source=result_key(job_id))


def wait_remote(client: redis.Redis, job_id: str, timeout=None) -> Job:
    """Block until the job is finished; the finished Job. TimeoutError after `timeout` seconds,
    KeyError if Redis knows no such job."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pipe = client.pipeline(transaction=False)
    pipe.xrevrange(DONE_KEY, count=1)  # where the done stream stands *before* the job is read:
    pipe.get(result_key(job_id))      # a job finishing in between is then seen in the stream
    last, text = pipe.execute()
    last = last[0][0] if last else b"0-0"
    while True:
        if text is None:
            raise KeyError(f"no job {job_id} in Redis (unknown id, or its result expired)")
        job = Job.from_json(text, source=result_key(job_id))
        if job.done:
            return job
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {job_id} ({job.plugin}) not finished after {timeout} s "
                                   f"(status {job.status})")
            block = MAX_BLOCK_MS if remaining is None else max(1, min(MAX_BLOCK_MS, int(remaining * 1000)))
            reply = client.xread({DONE_KEY: last}, count=1000, block=block)
            if not reply:
                break  # look at the record again now and then (a result set without notice)
            entries = reply[0][1]
            last = entries[-1][0]
            if any(_text(fields.get(b"id", fields.get("id"))) == job_id for _, fields in entries):
                break
        text = client.get(result_key(job_id))


def _ensure_group(client):
    try:
        client.xgroup_create(QUEUE_KEY, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class _Server:
    def __init__(self, client, consumer, workers, claim_idle_ms, ttl, log, roots=None):
        self.client, self.consumer, self.ttl, self.log = client, consumer, ttl, log  # log: None, the logger
        self.roots = roots  # None: any path (a server of one user's own process); else job_paths
        self.claim_idle_ms = int(claim_idle_ms)
        self.runner = JobRunner(max_workers=workers)
        self.workers = self.runner.max_workers
        self.running = {}  # entry id -> job
        self.lock = threading.Condition()
        self.started = self.finished = 0
        self.mark_script = client.register_script(_MARK_RUNNING)

    def say(self, level, text):
        if self.log is not None:
            self.log(text)
        else:
            logger.log(level, text)

    def heartbeat(self):
        """Reset the idle time of our running entries, so no other server claims them."""
        with self.lock:
            mine = list(self.running)
        if mine:
            self.client.xclaim(QUEUE_KEY, GROUP, self.consumer, 0, mine, justid=True)

    def take(self, count, block_ms, claim):
        """Entries to run: idle ones of dead servers when `claim`, else new ones."""
        if claim:
            reply = self.client.xautoclaim(QUEUE_KEY, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=count)
            entries, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
            if deleted:  # pending entries whose job is gone from the stream
                self.client.xack(QUEUE_KEY, GROUP, *deleted)
            entries = [(entry_id, fields) for entry_id, fields in entries if fields]
            if entries:
                self.say(logging.WARNING, f"job server {self.consumer}: claimed {len(entries)} job(s) of a dead server")
            return entries
        reply = self.client.xreadgroup(GROUP, self.consumer, {QUEUE_KEY: ">"}, count=count, block=block_ms)
        return reply[0][1] if reply else []

    def start(self, entries):
        """Start a job for each queue entry."""
        jobs = []
        for entry_id, fields in entries:
            raw = fields.get(b"job", fields.get("job"))
            try:
                if raw is None:
                    raise JobError(f"queue entry {_text(entry_id)}: no 'job' field")
                job = Job.from_json(raw, source=f"queue entry {_text(entry_id)}")
            except JobError as exc:  # a poison message: kept as a dead letter, then the queue goes on
                self.say(logging.WARNING, f"job server {self.consumer}: {exc}; dropped (dead letter)")
                dead_letters.record(self.client, source=QUEUE_KEY, entry_id=entry_id, reason=str(exc),
                                    reader=self.consumer)
                self._forget(entry_id)
                continue
            job.status, job.output, job.error, job.traceback = "created", None, None, None
            job._marked = False
            refused = self._refused(job)
            if refused:
                self.say(logging.WARNING, f"job server {self.consumer}: job {job.id} ({job.plugin}) refused: {refused}")
                job.status, job.error, job.finished = "failure", refused, time.time()
                with self.lock:
                    self.started += 1
                self.finish(entry_id, job)
                continue
            jobs.append((entry_id, job))
        if not jobs:
            return
        with self.lock:
            self.running.update(jobs)
            self.started += len(jobs)
        for entry_id, job in jobs:
            self.runner.start(job, on_done=lambda job, entry_id=entry_id: self.finish(entry_id, job))

    def _refused(self, job):
        """Why the job may not run here (a path outside the roots, an entry not plain), or None."""
        if self.roots is None:
            return None
        try:
            check_job_input(job.input, self.roots)
        except FileCheckError as exc:
            return f"FileCheckError: {exc}"
        return None

    def mark_running(self):
        """Status "running" for the jobs that have been running a while (one round trip)."""
        now = time.time()
        with self.lock:
            due = [job for job in self.running.values()
                   if job.started is not None and now - job.started > MARK_RUNNING_AFTER and not job._marked]
        if not due:
            return
        pipe = self.client.pipeline(transaction=False)
        for job in due:
            job._marked = True
            record = job.to_dict()
            record.update(status="running", output=None, error=None, traceback=None)
            record["timings"].update(finished=None, seconds=None)
            self.mark_script(keys=[result_key(job.id)], args=[json.dumps(record), self.ttl], client=pipe)
        try:
            pipe.execute(raise_on_error=False)  # only a status: a record the script cannot read stays
        except redis.RedisError as exc:
            self.say(logging.WARNING, f"job server {self.consumer}: cannot mark jobs running: {exc}")

    def finish(self, entry_id, job):
        try:
            pipe = self.client.pipeline(transaction=False)  # in order: the result before its notice
            pipe.set(result_key(job.id), job.to_json(), ex=self.ttl)
            pipe.xadd(DONE_KEY, {"id": job.id, "status": job.status}, maxlen=DONE_MAXLEN, approximate=True)
            pipe.xack(QUEUE_KEY, GROUP, entry_id)
            pipe.xdel(QUEUE_KEY, entry_id)
            pipe.execute()
        except redis.RedisError as exc:  # left pending: a server will claim and run it again
            self.say(logging.ERROR, f"job server {self.consumer}: cannot store job {job.id}: {exc}")
        finally:
            with self.lock:
                self.running.pop(entry_id, None)
                self.finished += 1
                self.lock.notify_all()

    def _forget(self, entry_id):
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(QUEUE_KEY, GROUP, entry_id)
        pipe.xdel(QUEUE_KEY, entry_id)
        pipe.execute()


def serve(client: redis.Redis, stop_event=None, max_jobs=None, *, consumer=None, workers=16,
          block_ms=200, claim_idle_ms=60000, ttl=RESULT_TTL, log=None, roots=None) -> int:
    """Serve jobs from the queue until `stop_event` is set or `max_jobs` jobs have been taken,
    each job in its own worker (JobRunner), at most `workers` at a time (a busy server takes no
    more, leaving them to the others). Returns when the jobs it took are finished and stored;
    the number of jobs served. `block_ms` bounds how long a stop takes to be noticed. Messages
    go to the module's logger, or to `log(text)` when given. `roots`: the folders jobs may name
    (job_paths; `bliss-lite job-server` gives the data root and the configuration, and --root);
    None: any (a server inside one user's own program)."""
    consumer = consumer or f"server-{uuid.uuid4().hex[:12]}"
    block_ms = max(1, min(int(block_ms), MAX_BLOCK_MS))
    _ensure_group(client)
    server = _Server(client, consumer, workers, claim_idle_ms, ttl, log, roots)
    server.say(logging.INFO, f"job server {consumer}: serving with {server.workers} worker(s)")
    claim_every = max(server.claim_idle_ms / 4000.0, block_ms / 1000.0)
    next_claim = 0.0  # look for a dead server's jobs at once
    try:
        while not (stop_event is not None and stop_event.is_set()):
            if max_jobs is not None and server.started >= max_jobs:
                break
            now = time.monotonic()
            claim = now >= next_claim
            if claim:
                next_claim = now + claim_every
                server.heartbeat()
            server.mark_running()
            with server.lock:
                free = server.workers - len(server.running)
                if free <= 0:
                    server.lock.wait(block_ms / 1000.0)
                    continue
            if max_jobs is not None:
                free = min(free, max_jobs - server.started)
            server.start(server.take(free, block_ms, claim))
    finally:
        while True:  # the jobs taken finish and are stored; still ours meanwhile
            with server.lock:
                if not server.running:
                    break
                server.lock.wait(block_ms / 1000.0)
            server.mark_running()
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + claim_every
                try:
                    server.heartbeat()
                except redis.RedisError:
                    pass
        server.runner.shutdown()
    return server.finished


def main(argv=None) -> int:
    """`bliss-lite job-server [--url URL] [--workers N] [--max-jobs N]` (or `python -m
    bliss_lite.processing.job_server`): a job server on the session's Redis
    (BLISS_LITE_REDIS_URL, else the run directory's)."""
    parser = argparse.ArgumentParser(prog="bliss-lite job-server", description=main.__doc__)
    parser.add_argument("--url", help="Redis URL (default: the run directory's server)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--max-jobs", type=int, default=None)
    parser.add_argument("--claim-idle", type=float, default=60.0, help="seconds before a dead server's job is taken")
    parser.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="a folder jobs may read and write below, besides the data root and the configuration")
    args = parser.parse_args(argv)
    from bliss_lite.config.errors import ConfigError
    from bliss_lite.config.logs import setup_logging
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data.redis_server import connect, ensure_server
    from bliss_lite.processing.jobs import load_plugins

    try:
        setup_logging(process_name="job-server", to_run_dir=True)
    except ConfigError as exc:  # run as a program, not under bliss_lite.cli, which says these
        print(f"job server: configuration error: {exc}", file=sys.stderr)
        return 2
    load_plugins()
    roots = [*default_roots(), *args.root]
    try:
        client = connect(args.url or ensure_server(run_dir()))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable or silent: one line, exit 1
        print(f"bliss-lite job-server: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    try:
        served = serve(client, stop, args.max_jobs, workers=args.workers, claim_idle_ms=args.claim_idle * 1000,
                       roots=roots)
    except KeyboardInterrupt:
        return 130
    except redis.RedisError as exc:  # lost or silent while serving: one line (the log has the rest)
        logger.error("job server: Redis failed: %s", exc)
        print(f"bliss-lite job-server: Redis failed: {exc}", file=sys.stderr)
        return 1
    logger.info("job server: %d job(s) served", served)
    return 0


if __name__ == "__main__":  # run under its package name, so its logger is bliss_lite.processing.job_server's
    from bliss_lite.processing import job_server

    sys.exit(job_server.main())
