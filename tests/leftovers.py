"""The processes a test session started and left running (issue 20, item 7).

A process is the session's when it was not running as the session began and
- it descends from the pytest process (whatever its environment), or
- its environment carries the session's token ($BLISS_LITE_TEST_SESSION, set before anything
  starts, so every worker, server, simulator or Dask process inherits it, even one that left
  the pytest process's tree: a new session, a parent that exited), or
- its command line or working directory is inside a directory the session made (pytest's base
  temp, any `tempfile.mkdtemp` of this process): a redis-server daemonizes (its parent is then
  init) and writes its title over its environment, but it runs in its run directory and names
  its socket there.
A process that was already running (a system redis-server on 127.0.0.1:6379, another test
session's processes) is never the session's: neither its token nor its directories are ours.
"""
from __future__ import annotations

import os
import re
import tempfile
import uuid

import psutil

TOKEN_ENV = "BLISS_LITE_TEST_SESSION"
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")  # exit with pytest itself


def _key(proc):
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, None


class SessionProcesses:
    """Processes started after construction that are ours (see the module docstring)."""

    def __init__(self, token=None, dirs=()):
        self.token = token or uuid.uuid4().hex
        self.root = os.getpid()
        self.before = {_key(proc) for proc in psutil.process_iter()}
        self.dirs = []
        for path in dirs:
            self.add_dir(path)

    @classmethod
    def start(cls):
        """The watch of this test session: its token exported to every child, and every
        directory `tempfile.mkdtemp` makes here (e.g. /tmp/bl_redis_*, /tmp/bl_pdf_*) watched."""
        watch = cls()
        os.environ[TOKEN_ENV] = watch.token
        made = tempfile.mkdtemp

        def mkdtemp(*args, **kwargs):
            path = made(*args, **kwargs)
            watch.add_dir(path)
            return path

        tempfile.mkdtemp = mkdtemp
        return watch

    def add_dir(self, path):
        path = os.path.realpath(path)
        self.dirs.append((path, re.compile(re.escape(path) + r"(?=[/\s:]|$)")))

    def _ours(self, proc, descendants) -> bool:
        try:
            if _key(proc) in self.before or proc.status() == psutil.STATUS_ZOMBIE:
                return False
            command = " ".join(proc.cmdline())
        except psutil.Error:
            return False
        if any(helper in command for helper in HELPERS):
            return False
        if proc.pid in descendants:
            return True
        try:
            if proc.environ().get(TOKEN_ENV) == self.token:
                return True
        except psutil.Error:
            pass  # another user's process: only its command line is readable
        try:
            cwd = proc.cwd()
        except psutil.Error:
            cwd = ""
        return any(pattern.search(command) or pattern.match(cwd) for _, pattern in self.dirs)

    def leftovers(self) -> list:
        """The session's processes running now (the pytest process itself excluded)."""
        try:
            descendants = {child.pid for child in psutil.Process(self.root).children(recursive=True)}
        except psutil.Error:
            descendants = set()
        return [proc for proc in psutil.process_iter() if proc.pid != self.root and self._ours(proc, descendants)]

    def finish(self, grace_s=10.0) -> list:
        """Waits up to grace_s for the session's processes to exit (a server shut down a moment
        ago), then kills those still running; returns them as 'pid command line' strings."""
        left = self.leftovers()
        if left:
            _, alive = psutil.wait_procs(left, timeout=grace_s)
            left = [proc for proc in alive if proc in self.leftovers()]
        named = []
        for proc in left:
            try:
                named.append(f"{proc.pid} {' '.join(proc.cmdline()).strip()}")
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(left, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        return named
