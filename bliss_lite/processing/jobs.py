"""Jobs, as ESRF's dahu runs them: registered plugins, the Job record (saved as JSON), a runner.

Plugin protocol: a plugin takes a plain dict and returns a plain dict. Two forms register:
- a function `f(input: dict) -> dict`;
- a class (dahu's protocol), instantiated with no arguments for each job: `setup(input)`,
  then `process()`, then `teardown()` (always, even after an error); the job's output is the
  instance's `output` dict. Subclass `Plugin` for the defaults (setup keeps `self.input`).

    @register()                      # name: the function's name, "integrate"
    def integrate(input): ...
    @register("reconstruct_scan")    # or an explicit name
    class Reconstruct(Plugin):
        def process(self): self.output["sinogram"] = ...

Only registered names run: a job names its plugin by a key of `PLUGINS`, never by a module or
class path, so an input can never make this process import or call arbitrary code. Modules that
ship plugins register them on import; `load_plugins()` imports `bliss_lite.processing.plugins`,
the one module that gathers them.

Concurrency (`JobRunner`): each job runs in its own worker. In a plain process that is a real OS
thread from a pool (reused, so a job costs a queue hand-off, not a thread start; jobs beyond
`max_workers` wait their turn). In a process where gevent has monkey-patched threading (the
shell) it is a greenlet per job whose plugin call goes to a gevent threadpool of real threads, so
CPU work in a plugin never blocks the hub. Plugins must not modify their input's nested values
(the job keeps its input as given; the plugin gets a shallow copy).
"""
from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
import traceback
import uuid
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PLUGINS", "STATES", "Job", "JobError", "JobRunner", "Plugin", "UnknownPluginError",
           "call_plugin", "get_plugin", "load_plugins", "register", "run_job"]

STATES = ("created", "running", "success", "failure", "aborted")
FINAL_STATES = frozenset(("success", "failure", "aborted"))
PLUGINS_MODULE = "bliss_lite.processing.plugins"

PLUGINS: dict = {}  # name -> callable(dict) -> dict (classes wrapped, see `register`)


class UnknownPluginError(LookupError):
    """A job names a plugin that is not registered; the message lists the registered ones."""


class JobError(ValueError):
    """A job record (JSON) that cannot be a job: not JSON, a missing or mistyped field."""


# --- registry ---------------------------------------------------------------------------------

class Plugin:
    """Base of class plugins: `setup(input)`, `process()`, `teardown()`; the result is `output`."""

    def __init__(self):
        self.input: dict = {}
        self.output: dict = {}

    def setup(self, input):
        self.input = input

    def process(self):
        raise NotImplementedError(f"{type(self).__name__}.process")

    def teardown(self):
        pass


def _class_runner(cls):
    def run(input):
        instance = cls()
        try:
            instance.setup(input)
            instance.process()
        finally:
            instance.teardown()
        return instance.output

    run.__wrapped__ = cls
    run.__name__ = cls.__name__
    run.__qualname__ = cls.__qualname__
    run.__module__ = cls.__module__
    return run


def _origin(obj):
    obj = getattr(obj, "__wrapped__", obj)
    return f"{obj.__module__}.{obj.__qualname__}"


def register(name=None):
    """Decorator registering a function or a class plugin under `name` (default: its __name__).
    Usable as `@register`, `@register()` or `@register("name")`. Registering another object
    under a taken name is an error (the same object again, e.g. a module reload, is not)."""
    if callable(name) and not isinstance(name, str):
        return register()(name)

    def decorate(obj):
        key = obj.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"plugin name must be a non-empty string, got {key!r}")
        if inspect.isclass(obj):
            missing = [m for m in ("setup", "process", "teardown") if not callable(getattr(obj, m, None))]
            if missing or not callable(obj):
                raise TypeError(f"plugin class {obj.__qualname__} lacks {', '.join(missing)} "
                                "(protocol: setup(input), process(), teardown(), output dict)")
            plugin = _class_runner(obj)
        elif callable(obj):
            plugin = obj
        else:
            raise TypeError(f"plugin {key!r} must be a function or a class, got {type(obj).__name__}")
        known = PLUGINS.get(key)
        if known is not None and _origin(known) != _origin(plugin):
            raise ValueError(f"plugin {key!r} is already registered by {_origin(known)}")
        PLUGINS[key] = plugin
        return obj

    return decorate


def get_plugin(name):
    """The registered callable for `name`; UnknownPluginError naming the registered ones."""
    try:
        return PLUGINS[name]
    except (KeyError, TypeError):
        registered = ", ".join(sorted(PLUGINS)) or "none"
        raise UnknownPluginError(f"unknown plugin {name!r}; registered plugins: {registered}") from None


def call_plugin(name, input):
    """Call a registered plugin directly (no Job): its output dict."""
    output = get_plugin(name)(input)
    if type(output) is not dict and not isinstance(output, dict):
        raise TypeError(f"plugin {name!r} returned {type(output).__name__}, not a dict")
    return output


def load_plugins():
    """Import the module that registers every shipped plugin (a fixed name, never from input)."""
    importlib.import_module(PLUGINS_MODULE)
    return PLUGINS


# --- the job record ---------------------------------------------------------------------------

def _json_default(value):
    """numpy scalars and arrays in a plugin's output become JSON numbers and lists."""
    for method in ("tolist", "item"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _new_id():
    return uuid.uuid4().hex


MAX_DEPTH = 100  # nesting of a job's input/output: deeper would exhaust the stack in copy and json


def too_deep(value, limit=MAX_DEPTH):
    """True if lists/objects nest deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


@dataclass(eq=False)
class Job:
    """One run of a plugin: id (uuid hex), plugin name, input, output, status, error, timings.

    Timings: `created`, `started`, `finished` (seconds since the epoch) and `seconds` (the
    plugin's own run time, monotonic clock). On failure, `error` is "Type: message" and
    `traceback` the formatted traceback. `reprocessed_from` names the job a rerun came from."""

    plugin: str
    input: dict
    id: str = field(default_factory=_new_id)
    status: str = "created"
    output: dict | None = None
    error: str | None = None
    traceback: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    reprocessed_from: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    def to_dict(self) -> dict:
        return {"id": self.id, "plugin": self.plugin, "status": self.status, "input": self.input,
                "output": self.output, "error": self.error, "traceback": self.traceback,
                "timings": {"created": self.created, "started": self.started, "finished": self.finished,
                            "seconds": self.seconds},
                "reprocessed_from": self.reprocessed_from}

    def to_json(self, indent=None) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_json_default, allow_nan=True)

    @classmethod
    def from_dict(cls, data, source="job") -> "Job":
        """A Job from its JSON object; JobError("<source>: <problem>") if it cannot be one.
        Only `plugin` and `input` are required (a hand-written job file needs no more)."""
        if not isinstance(data, dict):
            raise JobError(f"{source}: a job is a JSON object, got {type(data).__name__}")
        for key, kind in (("plugin", str), ("input", dict)):
            if key not in data:
                raise JobError(f"{source}: missing field {key!r}")
            if not isinstance(data[key], kind):
                raise JobError(f"{source}: field {key!r} must be a {'string' if kind is str else 'JSON object'}, "
                               f"got {type(data[key]).__name__}")
        if not data["plugin"]:
            raise JobError(f"{source}: field 'plugin' is empty")
        for key in ("input", "output"):
            if too_deep(data.get(key)):
                raise JobError(f"{source}: field {key!r} is nested more than {MAX_DEPTH} deep")
        values = {"plugin": data["plugin"], "input": data["input"]}
        for key, kinds in (("id", str), ("status", str), ("output", (dict, type(None))),
                           ("error", (str, type(None))), ("traceback", (str, type(None))),
                           ("reprocessed_from", (str, type(None)))):
            if key in data:
                if not isinstance(data[key], kinds):
                    raise JobError(f"{source}: field {key!r} has the wrong type ({type(data[key]).__name__})")
                values[key] = data[key]
        if values.get("status", "created") not in STATES:
            raise JobError(f"{source}: status {values['status']!r} is not one of {', '.join(STATES)}")
        if "id" in values and not values["id"]:
            raise JobError(f"{source}: field 'id' is empty")
        timings = data.get("timings", {})
        if not isinstance(timings, dict):
            raise JobError(f"{source}: field 'timings' must be a JSON object")
        for key in ("created", "started", "finished", "seconds"):
            value = timings.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise JobError(f"{source}: timings.{key} must be a number, got {value!r}")
            if value is not None or key != "created":
                values[key] = value
        return cls(**values)

    @classmethod
    def from_json(cls, text, source="job") -> "Job":
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise JobError(f"{source}: not JSON: {exc}") from None
        except RecursionError:  # json's decoder recurses per nesting level
            raise JobError(f"{source}: not a job: JSON nested too deeply") from None
        return cls.from_dict(data, source)

    def save(self, path):
        """Write the job as indented JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{self.id[:8]}.tmp")
        tmp.write_text(self.to_json(indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "Job":
        from bliss_lite.config.file_checks import FileCheckError, read_checked

        try:
            text = read_checked(path, "job")  # a regular file of bounded size, before reading
        except FileCheckError as exc:
            raise JobError(f"{path}: {exc.reason}") from None
        except OSError as exc:
            raise JobError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return cls.from_json(text, source=str(path))


def run_job(job: Job, call=None) -> Job:
    """Run `job` in the current thread; whatever the plugin raises ends up in the job (status
    failure, error, traceback). A KeyboardInterrupt or greenlet kill marks it aborted and is
    raised again. Returns the job. `call(plugin, input)` replaces `call_plugin` (reprocessing
    on Dask runs the same job record through its own driver)."""
    job.started = time.time()
    job.status = "running"
    t0 = time.perf_counter()
    try:
        output = (call or call_plugin)(job.plugin, dict(job.input))
    except Exception as exc:
        job.seconds, job.finished = time.perf_counter() - t0, time.time()
        job.error, job.traceback = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        job.status = "failure"
    except BaseException as exc:
        job.seconds, job.finished = time.perf_counter() - t0, time.time()
        job.error = f"aborted: {type(exc).__name__}"
        job.status = "aborted"
        raise
    else:
        job.seconds, job.finished = time.perf_counter() - t0, time.time()
        job.output = output
        job.status = "success"
    return job


# --- the runner -------------------------------------------------------------------------------

def _mark_aborted(job, on_done):
    if job.status == "created":
        job.status, job.error, job.finished = "aborted", "aborted before it started", time.time()
        if on_done is not None:
            on_done(job)


def _gevent_patched():
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


class JobRunner:
    """Runs jobs concurrently, each in its own worker (see the module docstring).

        with JobRunner() as runner:
            job = runner.submit("dummy", {"x": 1})
            runner.wait(job, timeout=10).output
    """

    def __init__(self, max_workers=16):
        self.max_workers = int(max_workers)
        self.gevent = _gevent_patched()
        if self.gevent:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(self.max_workers)
        else:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="job")

    def submit(self, plugin, input) -> Job:
        """Start a job of a registered plugin; UnknownPluginError before anything runs."""
        get_plugin(plugin)
        if not isinstance(input, dict):
            raise TypeError(f"job input must be a dict, got {type(input).__name__}")
        return self.start(Job(plugin, input))

    def start(self, job: Job, on_done=None) -> Job:
        """Start an existing job; `on_done(job)` is called in its worker once it is finished."""
        if self.gevent:
            import gevent

            job._worker = gevent.spawn(self._run_greenlet, self._pool, job, on_done)
        else:
            job._worker = self._pool.submit(self._run_thread, job, on_done)
            job._worker.add_done_callback(lambda future: future.cancelled() and _mark_aborted(job, on_done))
        return job

    @staticmethod
    def _run_thread(job, on_done):
        run_job(job)
        if on_done is not None:
            on_done(job)
        return job

    @staticmethod
    def _run_greenlet(pool, job, on_done):
        try:
            pool.apply(run_job, (job,))
        except BaseException:
            if not job.done:  # killed while its thread still runs: the job itself is not stopped
                job.status, job.error, job.finished = "aborted", "aborted: greenlet killed", time.time()
            raise
        finally:
            if on_done is not None and job.done:
                on_done(job)
        return job

    def wait(self, job: Job, timeout=None) -> Job:
        """Block until the job is finished (success, failure or aborted); TimeoutError after
        `timeout` seconds (the job goes on running)."""
        worker = getattr(job, "_worker", None)
        if worker is None:
            if job.done:
                return job
            raise ValueError(f"job {job.id} was not started by a runner")
        if self.gevent:
            worker.join(timeout)
            if not worker.ready():
                raise TimeoutError(f"job {job.id} ({job.plugin}) not finished after {timeout} s")
            return job
        try:
            worker.result(timeout)
        except CancelledError:
            pass
        except FutureTimeout:
            raise TimeoutError(f"job {job.id} ({job.plugin}) not finished after {timeout} s") from None
        return job

    def abort(self, job: Job) -> bool:
        """Abort a job that has not started yet (True); a running job cannot be stopped (False)."""
        worker = getattr(job, "_worker", None)
        if worker is None or job.status != "created":
            return False
        if not self.gevent:
            return worker.cancel()  # the done callback marks it aborted
        if worker or worker.dead:  # its greenlet has begun: the plugin may be running in a thread
            return False
        worker.kill(block=False)  # never scheduled: it will not run
        _mark_aborted(job, None)
        return True

    def shutdown(self, wait=True):
        """Stop taking jobs; jobs not started yet are aborted; with `wait`, running ones finish."""
        if not self.gevent:
            self._pool.shutdown(wait=wait, cancel_futures=True)
        else:
            if wait:
                self._pool.join()
            self._pool.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


# --- shipped plugins --------------------------------------------------------------------------

@register("dummy")
def dummy(input):
    """Returns its input (for benchmarks and checks of the machinery)."""
    return input


@register("sleep")
def sleep(input):
    """Sleeps `seconds` (default 1) and says how long it slept."""
    seconds = float(input.get("seconds", 1.0))
    if not seconds >= 0:
        raise ValueError(f"sleep: seconds must be >= 0, got {input.get('seconds')!r}")
    time.sleep(seconds)
    return {"slept": seconds}
