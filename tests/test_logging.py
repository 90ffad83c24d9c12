"""Logging (bliss_lite.config.logs): --log-level and --log-file, the run directory's log files of
the long-running processes, and user-facing warnings that stay plain lines on stderr.

Real processes wherever the behaviour is a process': the CLI's options, a worker's default
file, what the processes of a session inherit. Every process started here is stopped here."""
from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from bliss_lite.config import logs

CONFIG = Path(__file__).resolve().parents[1] / "config"
LEVELS = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
Record = namedtuple("Record", "pid level name message")
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\d+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                  r"(bliss_lite[\w.]*): (.*)$")


def records(path):
    """The records of a log file; every line must be one (timestamp, pid, level, logger)."""
    found = []
    for line in Path(path).read_text().splitlines():
        match = LINE.match(line)
        assert match, f"not a log line: {line!r}"
        found.append(Record(int(match[1]), match[2], match[3], match[4]))
    return found


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if k not in (logs.LEVEL_ENV, logs.FILE_ENV)}
    env.update(extra)
    return env


def bliss_lite(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "bliss_lite", *args], env=env or environment(),
                          capture_output=True, text=True, timeout=timeout)


def read_line(process, timeout):
    """The next stdout line of a running process, or AssertionError after timeout (a hang guard)."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no line from pid {process.pid} in {timeout} s"
    return process.stdout.readline()


@pytest.fixture(autouse=True)
def unconfigured(monkeypatch):
    """In-process tests start and end with logging unconfigured and no log variables."""
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    monkeypatch.delenv(logs.FILE_ENV, raising=False)
    yield
    logs.reset_logging()


# --- the CLI's options ---------------------------------------------------------------------------

def test_log_level_and_log_file_send_a_commands_log_lines_to_the_file(server_dir, tmp_path):
    log_file = tmp_path / "bliss.log"
    socket_path = server_dir / "redis" / "redis.sock"
    started = bliss_lite("--log-level", "DEBUG", "--log-file", str(log_file), "server", "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"unix://{socket_path}\n"  # the command's result stays on stdout
    assert started.stderr == ""  # debug and info lines go to the file; stderr keeps warnings only
    first = records(log_file)
    assert [(r.level, r.name) for r in first] == [("DEBUG", "bliss_lite.config.logs"),
                                                  ("INFO", "bliss_lite.data.redis_server")]
    assert first[0].message == f"bliss-lite: logging at DEBUG to {log_file} and stderr (warnings)"
    assert first[1].message.startswith("started ") and f" on {socket_path} (memory budget " in first[1].message
    assert {r.pid for r in first} == {first[0].pid}

    # after the subcommand, in the `=` form, another level: a second process appends at INFO
    stopped = bliss_lite("server", "stop", "--log-level=info", f"--log-file={log_file}")
    assert stopped.returncode == 0 and stopped.stdout == "stopped\n" and stopped.stderr == "", stopped.stderr
    second = records(log_file)[len(first):]
    assert [(r.level, r.name, r.message) for r in second] == [
        ("INFO", "bliss_lite.data.redis_server", f"stopped the redis-server on {socket_path}")]
    assert second[0].pid != first[0].pid
    assert not (server_dir / "logs").exists()  # commands log to no file of their own


@pytest.mark.parametrize("args, env, message", [
    (["--log-level", "LOUD", "server", "status"], {},
     f"bliss-lite: error: argument --log-level: invalid level 'LOUD' (choose from {LEVELS})"),
    (["server", "status", "--log-level=verbose"], {},
     f"bliss-lite: error: argument --log-level: invalid level 'verbose' (choose from {LEVELS})"),
    (["server", "status", "--log-level"], {}, "bliss-lite: error: argument --log-level: expected one argument"),
    (["--log-file", "{tmp}/no/such/dir/x.log", "server", "status"], {},
     "bliss-lite: error: argument --log-file: cannot open log file '{tmp}/no/such/dir/x.log': "
     "No such file or directory"),
    (["server", "status"], {logs.LEVEL_ENV: "loud"},
     f"bliss-lite: configuration error: BLISS_LITE_LOG_LEVEL: invalid level 'loud' (choose from {LEVELS})"),
    (["server", "status"], {logs.FILE_ENV: "{tmp}"},
     "bliss-lite: configuration error: BLISS_LITE_LOG_FILE: cannot open log file '{tmp}': Is a directory"),
], ids=["level-before", "level-after", "level-missing", "file-unopenable", "env-level", "env-file"])
def test_bad_log_options_exit_2_naming_the_option_before_anything_runs(run_dir, tmp_path, args, env, message):
    fill = lambda text: text.replace("{tmp}", str(tmp_path))  # noqa: E731
    done = bliss_lite(*map(fill, args), env=environment(**{k: fill(v) for k, v in env.items()}))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == fill(message)
    assert "Traceback" not in done.stderr and done.stdout == ""  # `server status` never ran


# --- long-running processes: the run directory's files, inherited options ----------------------

def test_a_worker_started_without_options_logs_to_the_run_directory(server_dir):
    worker = subprocess.Popen([sys.executable, "-m", "bliss_lite", "worker", "--name", "logged-worker"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        assert read_line(worker, 60) == "worker logged-worker ready\n"  # the starter's line stays
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0 and out == "" and err == ""  # nothing but warnings on stderr
    directory = server_dir / "logs"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["worker.log"]
    lines = records(directory / "worker.log")
    assert {r.pid for r in lines} == {worker.pid}
    assert [(r.level, r.name) for r in lines] == [("INFO", "bliss_lite.data.redis_server")] + \
        [("INFO", "bliss_lite.processing.worker")] * 2  # it started the run directory's Redis itself
    assert lines[0].message.startswith("started ") and str(server_dir / "redis" / "redis.sock") in lines[0].message
    assert [r.message for r in lines[1:]] == ["worker logged-worker ready", "worker logged-worker: 0 frames integrated"]


def test_the_job_server_run_as_a_program_logs_to_the_run_directory(server_dir):
    from bliss_lite.data.redis_server import ensure_server

    ensure_server(server_dir)  # already there: the file has the server's lines only
    done = subprocess.run([sys.executable, "-m", "bliss_lite.processing.job_server", "--max-jobs", "0"],
                          env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    lines = records(server_dir / "logs" / "job-server.log")
    assert [(r.level, r.name) for r in lines] == [("INFO", "bliss_lite.processing.job_server")] * 2
    assert re.fullmatch(r"job server server-[0-9a-f]{12}: serving with 16 worker\(s\)", lines[0].message)
    assert lines[1].message == "job server: 0 job(s) served"


SESSION_SCRIPT = """
import time
from bliss_lite.config.paths import run_dir
from bliss_lite.data.redis_server import ensure_server
from bliss_lite.processing.worker_pool import pool

workers = pool(ensure_server(run_dir()))
(process,) = workers.ensure(1)
deadline = time.monotonic() + 60
while " ready" not in open({log!r}).read() and time.monotonic() < deadline:
    time.sleep(0.05)
workers.stop()
print("worker pid", process.pid)
"""


def test_the_workers_of_a_session_inherit_its_log_options(server_dir, tmp_path):
    log_file = tmp_path / "session.log"
    script = tmp_path / "start_a_worker.py"
    script.write_text(SESSION_SCRIPT.format(log=str(log_file)))
    done = bliss_lite("--config", str(CONFIG), "-s", "test", str(script), "--log-level", "DEBUG",
                      "--log-file", str(log_file))
    assert done.returncode == 0, done.stderr
    worker_pid = int(done.stdout.splitlines()[-1].split()[-1])
    lines = records(log_file)
    session_pid = lines[0].pid
    assert worker_pid != session_pid
    mine = [(r.level, r.name) for r in lines if r.pid == session_pid]
    assert ("DEBUG", "bliss_lite.config.logs") in mine and ("INFO", "bliss_lite.processing.worker_pool") in mine
    started = [r.message for r in lines if r.name == "bliss_lite.processing.worker_pool"]
    assert len(started) == 1 and started[0].endswith(f"(pid {worker_pid})")
    name = started[0].split()[3]  # "started integration worker NAME (pid N)"
    theirs = [(r.level, r.name, r.message) for r in lines if r.pid == worker_pid]
    assert theirs == [  # the worker's own lines, at the session's level, in the session's file
        ("DEBUG", "bliss_lite.config.logs", f"bliss-lite: logging at DEBUG to {log_file} and stderr (warnings)"),
        ("DEBUG", "bliss_lite.config.logs", f"worker: logging at DEBUG to {log_file} and stderr (warnings)"),
        ("INFO", "bliss_lite.processing.worker", f"worker {name} ready"),
        ("INFO", "bliss_lite.processing.worker", f"worker {name}: 0 frames integrated"),
    ]
    assert not (server_dir / "logs").exists()  # --log-file replaced the run directory's files


# --- user-facing warnings stay plain lines on stderr ------------------------------------------

@pytest.mark.parametrize("log_options", [False, True], ids=["unconfigured", "log-file"])
def test_a_warning_for_the_user_stays_a_plain_line_on_stderr(run_dir, tmp_path, log_options):
    """The live view of a session cannot listen (port taken): the session's warning is the same
    line as before logging existed, with or without a log file; the view logged why."""
    log_file = tmp_path / "session.log"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    options = ["--log-file", str(log_file)] if log_options else []
    try:
        done = bliss_lite(*options, "--config", str(CONFIG), "-s", "test", "--view", str(port),
                          "-c", "print('session ran')")
    finally:
        busy.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "session ran"
    why = f"bliss-lite view: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert done.stderr.splitlines() == [f"WARNING: the live view did not start: {why}"]
    if log_options:  # both processes wrote to the file: the session its warning, the view its error
        said = [(r.level, r.name, r.message) for r in records(log_file)]
        assert ("WARNING", "bliss_lite.view.with_session", f"WARNING: the live view did not start: {why}") in said
        assert ("ERROR", "bliss_lite.view.server", why) in said
        assert not (run_dir / "logs").exists()
    else:  # the view is a server: its own file in the run directory
        view = records(run_dir / "logs" / "view.log")
        assert [(r.level, r.name, r.message) for r in view] == [("ERROR", "bliss_lite.view.server", why)]


def test_a_scan_warning_reaches_stderr_as_plain_text(run_dir, tmp_path):
    """A scan without Redis warns the user: one plain line, whatever the log options."""
    log_file = tmp_path / "session.log"
    env = environment(BLISS_LITE_REDIS_URL="redis://127.0.0.1:1", BLISS_LITE_DATA_ROOT=str(tmp_path / "data"))
    done = bliss_lite("--log-level", "INFO", "--log-file", str(log_file), "--config", str(CONFIG), "-s", "test",
                      "-c", "s = ascan(m0, 0, 1, 3, 0, diode1); print('END', s.end_reason)", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "END SUCCESS"
    warned = [line for line in done.stderr.splitlines() if "no Redis for live data" in line]
    assert len(warned) == 1
    assert warned[0].startswith("WARNING: no Redis for live data (Redis at redis://127.0.0.1:1")
    assert warned[0].endswith("); scans are saved to their file only")


def test_an_unconfigured_bliss_lite_logger_prints_warnings_as_plain_lines():
    """What a warning turned into a logger call relies on, used as a library (no setup)."""
    code = ("import logging; logging.getLogger('bliss_lite.scans.scan').warning('WARNING: scan 3: %s', 'lost'); "
            "logging.getLogger('bliss_lite.scans.scan').info('not shown')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "WARNING: scan 3: lost\n" and done.stdout == ""


# --- bliss_lite.config.logs in this process -----------------------------------------------------

def test_stderr_lines_are_plain_and_a_second_setup_replaces_the_first(capsys):
    logger = logging.getLogger("bliss_lite.test_logging")
    assert logs.setup_logging() is None  # a command: stderr only, WARNING
    logger.info("not shown")
    logger.warning("WARNING: plain")
    assert logs.setup_logging("debug") is None
    logger.debug("now shown")
    ours = [h for h in logging.getLogger("bliss_lite").handlers if getattr(h, "_bliss_lite", False)]
    assert len(ours) == 1
    assert capsys.readouterr().err == "WARNING: plain\nbliss-lite: logging at DEBUG to stderr\nnow shown\n"
    logs.reset_logging()
    assert not [h for h in logging.getLogger("bliss_lite").handlers if getattr(h, "_bliss_lite", False)]
    assert logging.getLogger("bliss_lite").level == logging.NOTSET


def test_with_a_file_stderr_keeps_warnings_and_startup_errors_are_said_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(logs.FILE_ENV, str(tmp_path / "env.log"))
    path = logs.setup_logging(process_name="worker", to_run_dir=True)  # the variable wins over the run dir
    assert path == tmp_path / "env.log"
    logger = logging.getLogger("bliss_lite.test_logging")
    logger.info("to the file")
    logger.warning("WARNING: to both")
    logs.startup_error(logger, "bliss-lite test: cannot start")
    assert capsys.readouterr().err == "WARNING: to both\nbliss-lite test: cannot start\n"
    assert [(r.level, r.message) for r in records(path)] == [
        ("INFO", "to the file"), ("WARNING", "WARNING: to both"), ("ERROR", "bliss-lite test: cannot start")]


def test_run_directory_files_rotate_and_processes_sharing_one_follow_the_rotation(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "MAX_BYTES", 400)
    path = tmp_path / "worker.log"
    first, second = logs._SharedRotatingFileHandler(path), logs._SharedRotatingFileHandler(path)  # two processes

    def write(handler, text):
        handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))

    try:
        write(second, "second-0")
        for i in range(100):  # 9 bytes a line: rotated twice by the first
            write(first, f"first-{i:02d}")
        write(second, "second-1")  # the second notices and writes to the new file, not to worker.log.1
    finally:
        first.close()
        second.close()
    assert path.with_name("worker.log.1").exists()
    assert path.read_text().splitlines()[-1] == "second-1"
    kept = [path.with_name(f"worker.log.{n}") for n in range(logs.BACKUPS, 0, -1)] + [path]
    lines = [line for p in kept if p.exists() for line in p.read_text().splitlines()]
    assert lines == ["second-0"] + [f"first-{i:02d}" for i in range(100)] + ["second-1"]  # none lost
    assert all(p.stat().st_size <= 400 for p in kept if p.exists())
