"""`bliss-lite queue`: serve a session's queue, or read and change it from the command line.

    bliss-lite queue -s SESSION [--scripts DIR]       run the queue server (Ctrl-C stops it)
    bliss-lite queue -s SESSION add 'ascan(m0, 0, 1, 10, 0.1)' [--position N]
    bliss-lite queue -s SESSION list [--json]
    bliss-lite queue -s SESSION remove ID | move ID POSITION
    bliss-lite queue -s SESSION pause | resume | stop | abort | clear

Everything but serving is a gevent-free client of the server (data/queue_client.py).
"""
from __future__ import annotations

import argparse
import json
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="bliss-lite queue", description="A session's queue of scans and commands.")
    parser.add_argument("-s", "--session", required=True, help="the session whose queue it is")
    parser.add_argument("--config", help="configuration directory (serving)")
    parser.add_argument("--scripts", help="folder of the scripts items may run (serving; default: "
                        "<configuration>/queue_scripts)")
    sub = parser.add_subparsers(dest="action")
    add = sub.add_parser("add", help="queue a command, checked first")
    add.add_argument("command")
    add.add_argument("--position", type=int, default=None, help="0: next to run (default: last)")
    listing = sub.add_parser("list", help="the history, the running item and the queued ones")
    listing.add_argument("--json", action="store_true", help="one JSON list of items")
    remove = sub.add_parser("remove", help="drop a queued item")
    remove.add_argument("id")
    move = sub.add_parser("move", help="put a queued item at a position (0: next)")
    move.add_argument("id")
    move.add_argument("position", type=int)
    for name, text in (("pause", "hold the running scan at its next point"), ("resume", "go on"),
                       ("stop", "start nothing after the running item"), ("abort", "end the running item now"),
                       ("clear", "drop every queued item")):
        sub.add_parser(name, help=text)
    return parser


def _client(session):
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data import redis_server
    from bliss_lite.data.queue_client import QueueClient, default_who

    url = redis_server.ensure_server(run_dir())
    return QueueClient(redis_server.connect(url), session, who=default_who("cli"))


def _show(items, status):
    print(f"queue: {status['mode']}{', holding' if status['holding'] else ''}; "
          f"server {status['server'] or 'not running'}")
    for item in items:
        where = f" scan {item['scan']}" if item.get("scan") is not None else ""
        if item.get("points") is not None:
            where += f" {item['points']}" + (f"/{item['expected']}" if item.get("expected") else "") + " points"
        error = f"  ({item['error']})" if item.get("error") else ""
        print(f"  {item['id']}  {item['state']:<11} {item['command']}{where}{error}")


def _serve(args):
    from gevent import monkey

    monkey.patch_all()
    from pathlib import Path

    from bliss_lite.config.session import SessionSetupError
    from bliss_lite.shell.queue_server import QueueBusy, QueueServer
    from bliss_lite.shell.runner import open_session

    try:
        session, namespace = open_session(args.session, args.config, role="the queue server")
    except SessionSetupError as exc:
        print(f"bliss-lite queue: {exc}", file=sys.stderr)
        return 2
    context = session.scan_context
    scripts = Path(args.scripts) if args.scripts else Path(session.config.root) / "queue_scripts"
    server = QueueServer(args.session, namespace, context.redis.client(), scripts=scripts)
    if server.client is None:
        print("bliss-lite queue: no Redis to keep the queue in", file=sys.stderr)
        session.close()
        return 1
    try:
        server.start(context)
    except QueueBusy as exc:
        print(f"bliss-lite queue: {exc}", file=sys.stderr)
        session.close()
        return 1
    print(f"queue server of session '{args.session}' on {server.me}", flush=True)
    import signal

    import gevent

    main_greenlet = gevent.getcurrent()  # SIGTERM ends the server as Ctrl-C does: cleanly
    gevent.signal_handler(signal.SIGTERM, lambda: main_greenlet.throw(KeyboardInterrupt))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
        session.close()
    return 0


def main(argv):
    args = _parser().parse_args(argv)
    if args.action is None:
        return _serve(args)
    from bliss_lite.data.queue_client import QueueError, summary

    try:
        queue = _client(args.session)
        if args.action == "list":
            if args.json:
                print(json.dumps([summary(i) for i in queue.items()]))
            else:
                _show(*queue.items_with_progress())
            return 0
        if args.action == "add":
            item = queue.add(args.command, position=args.position)
            print(item["id"])
            return 0
        if args.action == "remove":
            queue.remove(args.id)
        elif args.action == "move":
            queue.move(args.id, args.position)
        else:
            answer = getattr(queue, args.action)()
            if args.action == "abort" and answer.get("aborted"):
                print(answer["aborted"])
        return 0
    except QueueError as exc:
        print(f"bliss-lite queue: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - Redis unreachable: one line
        print(f"bliss-lite queue: {exc}", file=sys.stderr)
        return 1
