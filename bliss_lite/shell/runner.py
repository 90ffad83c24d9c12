"""Open a session and run it: interactively, one piece of code (-c), or a script."""
from __future__ import annotations

import sys
from pathlib import Path

from bliss_lite.config import ConfigError, load_config
from bliss_lite.config.paths import run_dir
from bliss_lite.config.session import Session, SessionSetupError
from bliss_lite.processing.hooks import make_hooks
from bliss_lite.scans.context import ScanContext
from bliss_lite.shell import scan_commands, standard
from bliss_lite.shell.axis_leases import install_leases
from bliss_lite.shell.errors import ErrorLog, short_message, show
from bliss_lite.shell.help import session_help
from bliss_lite.shell.queue_shell import ShellQueue


def open_session(session_name, config_root=None, role="a shell"):
    """Build the session's namespace: standard commands, then the session's objects and setup.
    The session gets its ScanContext here, with the processing layer's hooks; its moves lease
    their axes as `role` ("the queue server's scan 12" is what another process is told)."""
    config = load_config(config_root)
    sessions = [n for n in config.names if str(config.get_node(n).get("class", "")).lower() == "session"]
    if session_name not in sessions:
        raise ConfigError(f"{config.root}: no session named '{session_name}' (sessions: {', '.join(sessions) or 'none'})")
    session = config.get(session_name)
    assert isinstance(session, Session)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    namespace.update({name: getattr(standard, name) for name in standard.__all__})
    namespace.update({name: getattr(scan_commands, name) for name in scan_commands.__all__})
    session.scan_context = context = ScanContext(session, make_hooks=make_hooks)
    namespace["SCAN_SAVING"] = context.scan_saving
    namespace["SCAN_LIMITS"] = context.limits
    namespace["SCANS"] = context.scans
    namespace["last_error"] = ErrorLog(session_name)  # last_error(): the traceback of the last error
    namespace["help"] = session_help(namespace)
    namespace["queue"] = ShellQueue(session_name, context)
    install_leases(session_name, context, role)
    scan_commands.show_scans(context)
    session.setup(namespace)
    namespace["SUSPENDERS"] = context.load_suspenders(namespace)
    return session, namespace


def _run_code(code, filename, namespace):
    try:
        exec(compile(code, filename, "exec"), namespace)  # noqa: S102 - the user's own code
    except KeyboardInterrupt:
        print("KeyboardInterrupt", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # the user's error: one line, exit non-zero; the traceback kept
        errors = namespace.get("last_error")
        kept = ""
        if isinstance(errors, ErrorLog):
            errors.record(exc)
            kept = f"  (traceback: {errors.path})"
        show(short_message(exc, namespace, source=None if filename == "<-c>" else filename) + kept)
        return 1
    return 0


def run(session_name, config_root=None, code=None, script=None):
    """Exit status: 0 on success, 1 on an error in the code, 2 when the session cannot be set
    up. A ConfigError goes up to `cli.main`, which says it in one line for every subcommand."""
    try:
        session, namespace = open_session(session_name, config_root)
    except SessionSetupError as exc:
        print(f"bliss-lite: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(session_name, namespace, code, script)
    finally:
        session.close()


def _run(session_name, namespace, code, script):
    if code is not None:
        return _run_code(code, "<-c>", namespace)
    if script is not None:
        path = Path(script)
        if not path.is_file():
            print(f"bliss-lite: script '{script}' not found", file=sys.stderr)
            return 2
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"bliss-lite: script '{script}' cannot be read: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr)
            return 2
        namespace["__file__"] = str(path.resolve())
        return _run_code(source, str(path), namespace)
    from bliss_lite.shell.repl import run_shell

    history = run_dir() / "history" / session_name
    history.parent.mkdir(parents=True, exist_ok=True)
    run_shell(session_name, namespace, history, namespace["last_error"])
    return 0
