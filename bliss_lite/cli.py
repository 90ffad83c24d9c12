"""The `bliss-lite` command: `-s SESSION` opens the shell, `-c CODE` or a script runs and exits."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMANDS = {  # `bliss-lite NAME ...` -> the module whose main(argv) runs it
    "demo": "bliss_lite.demo",
    "reprocess": "bliss_lite.processing.reprocess",
    "view": "bliss_lite.view.server",
    "plot": "bliss_lite.view.export",
    "worker": "bliss_lite.processing.worker",
    "job-server": "bliss_lite.processing.job_server",
    "queue": "bliss_lite.shell.queue_cli",
}


def _parser():
    parser = argparse.ArgumentParser(
        prog="bliss-lite",
        description="BLISS-like beamline control shell on simulated hardware.",
        epilog="Examples: bliss-lite -s demo | bliss-lite -s test -c 'umv(m0, 1); wa()' | "
               "bliss-lite -s demo run.py | bliss-lite server status|start|stop | bliss-lite follow | "
               "bliss-lite worker --redis URL | bliss-lite reprocess JOB.json | bliss-lite demo | "
               "bliss-lite view [--host H --port P] | bliss-lite plot FILE ENTRY -o out.png | "
               "bliss-lite queue -s test | bliss-lite queue -s test add 'ct(0.1)'",
    )
    parser.add_argument("-s", "--session", help="session to open (a session YAML in the configuration)")
    parser.add_argument("-c", "--command", dest="code", help="run CODE in the session namespace and exit")
    parser.add_argument("--config", help="configuration directory (default: $BLISS_LITE_CONFIG, ./config, shipped)")
    parser.add_argument("--view", nargs="?", const=8765, type=int, metavar="PORT",
                        help="also serve the live view on 127.0.0.1:PORT (default 8765) while the session runs")
    parser.add_argument("--serve", action="store_true",
                        help="run the session's queue server instead of a shell (as `bliss-lite queue -s SESSION`)")
    parser.add_argument("script", nargs="?", help="a Python script to run in the session namespace")
    # taken out of the arguments by main() before any parsing: accepted before or after a subcommand
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL "
                        "(default: $BLISS_LITE_LOG_LEVEL, else INFO for a log file, WARNING for stderr); "
                        "before or after a subcommand; the processes started inherit it")
    parser.add_argument("--log-file", metavar="PATH", help="append the log to PATH (default: $BLISS_LITE_LOG_FILE; "
                        "workers and servers: <run dir>/logs/NAME.log, commands: stderr only)")
    return parser


LOG_OPTIONS = ("--log-level", "--log-file")


def _log_options(argv):
    """({option: value} of --log-level and --log-file, the other arguments): the options are
    taken wherever they stand before a `--`, so `bliss-lite worker --log-level DEBUG` works
    although each subcommand has its own parser."""
    found, rest, i = {}, [], 0
    while i < len(argv):
        if argv[i] == "--":
            rest.extend(argv[i:])
            break
        name, equals, value = argv[i].partition("=")
        if name in LOG_OPTIONS:
            if not equals:
                if i + 1 == len(argv):
                    _parser().error(f"argument {name}: expected one argument")
                i += 1
                value = argv[i]
            found[name] = value
        else:
            rest.append(argv[i])
        i += 1
    return found, rest


def _setup_logging(options):
    """Logging of this process from --log-level/--log-file (bad values: usage error, exit 2),
    passed on through the environment to the processes it starts (workers, the live view)."""
    from bliss_lite.config import logs

    level, file = options.get("--log-level"), options.get("--log-file")
    if level is not None:
        try:
            logs.parse_level(level)
        except ValueError as exc:
            _parser().error(f"argument --log-level: {exc}")
        level = level.strip().upper()
    if file is not None:
        if not file:
            _parser().error("argument --log-file: expected a path")
        file = os.path.abspath(os.path.expanduser(file))  # children may start elsewhere
    try:
        logs.setup_logging(level, file)
    except logs.LogFileError as exc:
        if file is None:
            raise
        _parser().error(f"argument --log-file: {exc}")
    if level is not None:
        os.environ[logs.LEVEL_ENV] = level
    if file is not None:
        os.environ[logs.FILE_ENV] = file


def _server(argv):
    """`bliss-lite server start|status|stop`: the run directory's private Redis server."""
    parser = argparse.ArgumentParser(prog="bliss-lite server",
                                     description="Manage the private Redis server of the run directory.")
    parser.add_argument("action", choices=["start", "status", "stop"])
    args = parser.parse_args(argv)
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data import redis_server

    where = run_dir()
    if args.action == "start":
        try:
            print(redis_server.ensure_server(where))
        except redis_server.RedisUnavailable as exc:
            print(f"bliss-lite server: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "stop":
        stopped = redis_server.stop_server(where)
        print("stopped" if stopped else f"not running ({redis_server.ServerPaths.of(where).socket})")
        return 0
    status = redis_server.server_status(where)
    if status["running"]:
        print(f"running: pid {status['pid']}, redis {status['version']}, {status['url']}, "
              f"memory {status['used_memory']}, {status['clients']} client(s)")
        return 0
    print(f"not running ({status['socket']})")
    return 1


def _follow(argv):
    """`bliss-lite follow [--count N]`: print the points of the next scans live (no gevent)."""
    parser = argparse.ArgumentParser(prog="bliss-lite follow", description="Print the points of the next scans live.")
    parser.add_argument("--count", type=int, default=None, help="stop after N scans (default: follow forever)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after S seconds without news")
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and not 0 < args.timeout < 1e9:  # nan and inf fail this too
        parser.error(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data import redis_server
    from bliss_lite.data.client import RedisLost
    from bliss_lite.data.follow import follow
    from bliss_lite.data.redis_url import mask_url

    try:
        url = redis_server.ensure_server(run_dir())
        client = redis_server.connect(url)  # reads block 1 s at most: a frozen server is noticed
        client.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable or unstartable: reported, exit 1
        print(f"bliss-lite follow: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    print(f"Following scans on {mask_url(url)}", flush=True)
    try:
        follow(client, args.count, timeout_ms=None if args.timeout is None else int(args.timeout * 1000))
    except KeyboardInterrupt:
        return 130
    except RedisLost as exc:
        print(f"bliss-lite follow: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Exit status: 0 success, 1 failure, 2 bad usage or configuration (one line, no traceback)."""
    from bliss_lite.config import logs
    from bliss_lite.config.errors import ConfigError

    saved = {name: os.environ.get(name) for name in (logs.LEVEL_ENV, logs.FILE_ENV)}
    try:
        options, argv = _log_options(sys.argv[1:] if argv is None else list(argv))
        _setup_logging(options)
        return _main(argv)
    except ConfigError as exc:  # e.g. a run directory that cannot be created, for any subcommand
        print(f"bliss-lite: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:  # called in-process (tests, tools): leave logging and the environment as they were
        logs.reset_logging()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _main(argv):
    if argv and argv[0] == "server":
        return _server(argv[1:])
    if argv and argv[0] == "follow":
        return _follow(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:  # imported only when asked for: each has its own weight
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.session is None:
        parser.error("give a session with -s SESSION (e.g. bliss-lite -s demo)")
    if args.code is not None and args.script is not None:
        parser.error("give either -c CODE or a SCRIPT, not both")
    if args.serve:
        if args.code is not None or args.script is not None or args.view is not None:
            parser.error("--serve runs the queue server: no -c, SCRIPT nor --view with it")
        return importlib.import_module(SUBCOMMANDS["queue"]).main(
            ["-s", args.session, *(["--config", args.config] if args.config else [])])
    if args.view is not None:
        from bliss_lite.view.with_session import start_view

        start_view(args.view)
    # before anything else imports threading, sockets or ptpython: greenlets must cooperate
    from gevent import monkey

    monkey.patch_all()
    import gevent

    # Ctrl-C may land in any greenlet (a display, a motion task): the hub re-raises it in the
    # main greenlet, where the command stops its motion; it need not print it as an error.
    hub = gevent.get_hub()
    hub.NOT_ERROR = tuple(hub.NOT_ERROR) + (KeyboardInterrupt,)
    from bliss_lite.shell.runner import run

    return run(args.session, args.config, code=args.code, script=args.script)


if __name__ == "__main__":
    sys.exit(main())
