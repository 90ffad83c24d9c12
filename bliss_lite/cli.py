"""The `bliss-lite` command: `-s SESSION` opens the shell, `-c CODE` or a script runs and exits."""
from __future__ import annotations

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="bliss-lite",
        description="BLISS-like beamline control shell on simulated hardware.",
        epilog="Examples: bliss-lite -s demo | bliss-lite -s test -c 'umv(m0, 1); wa()' | bliss-lite -s demo run.py",
    )
    parser.add_argument("-s", "--session", help="session to open (a session YAML in the configuration)")
    parser.add_argument("-c", "--command", dest="code", help="run CODE in the session namespace and exit")
    parser.add_argument("--config", help="configuration directory (default: $BLISS_LITE_CONFIG, ./config, shipped)")
    parser.add_argument("script", nargs="?", help="a Python script to run in the session namespace")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.session is None:
        parser.error("give a session with -s SESSION (e.g. bliss-lite -s demo)")
    if args.code is not None and args.script is not None:
        parser.error("give either -c CODE or a SCRIPT, not both")
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
