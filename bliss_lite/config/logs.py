"""Logging: one logger per module under `bliss_lite`, set up once per process.

Every module logs to `logging.getLogger(__name__)` (`bliss_lite.processing.worker`,
`bliss_lite.view.server`, ...). `setup_logging` configures their parent, the `bliss_lite`
logger (never the root logger, which belongs to the application that imports us):

- stderr gets the records as plain `%(message)s` lines, so that a warning reads exactly as a
  print did; when a log file is in use, stderr gets only warnings and errors;
- a log file, when asked for, gets every record at the level, timestamped, with the pid (the
  workers of a session may share one file).

Level: the argument, else $BLISS_LITE_LOG_LEVEL, else INFO when logging to a file and WARNING
otherwise. File: the argument, else $BLISS_LITE_LOG_FILE, else `<run dir>/logs/<process>.log`
for the long-running processes (workers, the job server, the view server: `to_run_dir`),
rotated at 5 MiB with 3 old files kept; commands log to stderr only. `bliss-lite --log-level
--log-file` sets both variables, so the processes a session starts inherit them.

Without `setup_logging` (bliss_lite used as a library) nothing is configured here: Python's
last-resort handler prints warnings and errors to stderr as plain messages.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from bliss_lite.config.errors import ConfigError

__all__ = ["LEVEL_ENV", "FILE_ENV", "LEVELS", "LogFileError", "parse_level", "setup_logging", "reset_logging",
           "startup_error", "FILE_ONLY"]

LEVEL_ENV = "BLISS_LITE_LOG_LEVEL"
FILE_ENV = "BLISS_LITE_LOG_FILE"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ROOT = "bliss_lite"
FILE_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 5 * 2**20  # run-directory files rotate at this size
BACKUPS = 3
FILE_ONLY = {"file_only": True}  # `extra=` of a record that goes to the log file but not to stderr


class LogFileError(ConfigError):
    """A log file that cannot be opened."""


def parse_level(text) -> int:
    """The logging level of a level name (any case); ValueError naming the choices."""
    name = str(text).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"invalid level {text!r} (choose from {', '.join(LEVELS)})")
    return getattr(logging, name)


def setup_logging(level=None, file=None, *, process_name=None, to_run_dir=False):
    """Configure the `bliss_lite` logger (again: a second call replaces the first); the log
    file's path, or None. ConfigError for a bad $BLISS_LITE_LOG_LEVEL, LogFileError for a log
    file that cannot be opened (it says whether it came from $BLISS_LITE_LOG_FILE)."""
    if level is None and os.environ.get(LEVEL_ENV):
        try:
            level = parse_level(os.environ[LEVEL_ENV])
        except ValueError as exc:
            raise ConfigError(f"{LEVEL_ENV}: {exc}") from None
    elif isinstance(level, str):
        level = parse_level(level)
    origin = None
    if file is None and os.environ.get(FILE_ENV):
        file, origin = os.environ[FILE_ENV], FILE_ENV
    if file is not None:
        handler = _open(lambda path: logging.handlers.WatchedFileHandler(path, encoding="utf-8"), file, origin)
    elif to_run_dir:
        from bliss_lite.config.paths import run_dir

        directory = run_dir() / "logs"
        try:
            directory.mkdir(mode=0o700, exist_ok=True)  # the run directory's files are the user's only
        except OSError as exc:
            raise LogFileError(f"run directory: cannot create '{directory}': {exc.strerror or exc}") from None
        handler = _open(_SharedRotatingFileHandler, directory / f"{process_name or 'bliss_lite'}.log", "run directory")
    else:
        handler = None
    if level is None:
        level = logging.INFO if handler is not None else logging.WARNING
    reset_logging()
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    stderr = _Stderr()
    stderr.setFormatter(logging.Formatter("%(message)s"))
    stderr.addFilter(lambda record: not getattr(record, "file_only", False))
    if handler is not None:
        stderr.setLevel(logging.WARNING)  # the file has the rest
        handler.setFormatter(logging.Formatter(FILE_FORMAT))
        handler._bliss_lite = True
        logger.addHandler(handler)
    stderr._bliss_lite = True
    logger.addHandler(stderr)
    path = None if handler is None else Path(handler.baseFilename)
    logging.getLogger(__name__).debug("%s: logging at %s to %s", process_name or "bliss-lite",
                                      logging.getLevelName(level),
                                      "stderr" if path is None else f"{path} and stderr (warnings)")
    return path


def reset_logging():
    """Remove (and close) what setup_logging installed; the `bliss_lite` logger's level unset."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if getattr(h, "_bliss_lite", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


def startup_error(logger, message):
    """An error that stops a process before it starts working: printed plainly on stderr
    whatever the log level (it is the user's answer), and logged as an error to the log file."""
    print(message, file=sys.stderr, flush=True)
    logger.error(message, extra=FILE_ONLY)


def _open(make, path, origin):
    path = Path(path).expanduser()
    try:
        return make(str(path))
    except OSError as exc:
        where = f"{origin}: " if origin else ""
        raise LogFileError(f"{where}cannot open log file '{path}': {exc.strerror or exc}") from None


class _Stderr(logging.StreamHandler):
    """A handler to whatever sys.stderr is when a record comes (pytest's capture, the shell's
    patched stdout), as Python's last-resort handler does."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class _SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates at MAX_BYTES; several processes (the workers of a session) may append to the
    same file: one that finds the file rotated by another reopens it before writing."""

    def __init__(self, path):
        super().__init__(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        self._identity = self._opened()

    def _opened(self):
        status = os.fstat(self.stream.fileno())
        return status.st_dev, status.st_ino

    def emit(self, record):
        try:
            status = os.stat(self.baseFilename)
            current = (status.st_dev, status.st_ino)
        except OSError:
            current = None
        if current != self._identity and self.stream is not None:
            try:
                self.stream.close()
                self.stream = self._open()
                self._identity = self._opened()
            except OSError:
                self.handleError(record)
                return
        super().emit(record)

    def doRollover(self):
        super().doRollover()
        self._identity = self._opened()
