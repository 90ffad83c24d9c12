"""`bliss-lite view`: the live view's web server (Starlette on uvicorn, server-sent events).

Why this stack: a small ASGI app serves the page, its scripts (uPlot, shipped in the package:
nothing is downloaded at run time), JSON and PNG images, and pushes changes to every page as
server-sent events, which browsers reconnect by themselves. One Watcher thread reads Redis for
all pages; images are rendered once per new data and shared (RenderCache). The server never
talks to the scan's process, so it can run on another host, and pages cost the scan nothing
but this one reader.

Security: it binds 127.0.0.1 by default and then only answers requests addressed to a loopback
name (no DNS rebinding); binding any other address needs a token, given once as `?token=`
(kept in a cookie) or as `Authorization: Bearer`.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import secrets
import socket
import sys
import threading
from collections import OrderedDict

from bliss_lite.view.addresses import is_loopback as is_loopback  # re-exported: tests and callers use it here

TOKEN_ENV = "BLISS_LITE_VIEW_TOKEN"
COOKIE = "bliss_lite_view_token"
logger = logging.getLogger(__name__)  # run as `bliss-lite view`: <run dir>/logs/view.log, warnings on stderr


class RenderCache:
    """Images by (scan, kind, parameters, data version): each rendered once, whatever the
    number of pages asking, the newest few kept."""

    def __init__(self, size=64):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()
        self.locks = {}  # (scan, kind, parameters) -> [lock, users]: only while a render is asked for
        self.renders = 0

    def get(self, key, render):
        with self.lock:
            if key in self.items:
                return self.items[key]
            entry = self.locks.setdefault(key[:-1], [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:  # a second page asking for the same image waits for the first render
                with self.lock:
                    if key in self.items:
                        return self.items[key]
                value = render()
                with self.lock:
                    self.renders += 1
                    self.items[key] = value
                    while len(self.items) > self.size:
                        self.items.popitem(last=False)
                return value
        finally:
            with self.lock:  # the last user drops the lock: a server up for weeks keeps none per old scan
                entry[1] -= 1
                if entry[1] == 0:
                    del self.locks[key[:-1]]


def create_app(watcher, token=None, loopback=True):
    """The ASGI app over a (started) Watcher."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from bliss_lite.view import queue_routes, routes
    from bliss_lite.view.headers import SecurityHeaders

    cache = RenderCache()
    middleware = [Middleware(SecurityHeaders)]  # outermost: refusals carry the headers too
    if loopback and not token:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"]))
    if token:
        middleware.append(Middleware(TokenMiddleware, token=token))
    app = Starlette(routes=[*routes.routes(), *queue_routes.routes(),
                            Mount("/static", app=StaticFiles(directory=routes.STATIC), name="static")],
                    middleware=middleware)
    app.state.watcher, app.state.cache, app.state.token = watcher, cache, token
    return app


class TokenMiddleware:
    """Every request shows the token: `?token=` (then remembered in a cookie), the cookie, or
    `Authorization: Bearer`. Compared in constant time."""

    def __init__(self, app, token):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse

        request = Request(scope)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [given, request.cookies.get(COOKIE), header[7:] if header.startswith("Bearer ") else None]
        if not any(c and hmac.compare_digest(c.encode(), self.token) for c in candidates):
            response = PlainTextResponse("bliss-lite view: a token is needed (open the URL the server printed)",
                                         status_code=401)
            return await response(scope, receive, send)
        if given:
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict"
                    message["headers"] = list(message.get("headers", [])) + [(b"set-cookie", cookie.encode())]
                await send(message)
            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)


def _parser():
    parser = argparse.ArgumentParser(prog="bliss-lite view",
                                     description="Serve the live view of the scans in Redis (a web page).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; "
                        "any other needs a token)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free port)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"access token (default ${TOKEN_ENV}); 'auto' makes one")
    parser.add_argument("--redis", help="Redis URL (default: $BLISS_LITE_REDIS_URL, else the run "
                        "directory's private server)")
    parser.add_argument("--poll", type=float, default=None, help="seconds between reads of Redis (default 0.1)")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    if args.poll is not None and not 0.01 <= args.poll <= 10:
        parser.error(f"--poll must be 0.01-10 seconds, got {args.poll}")
    loopback = is_loopback(args.host)
    token = args.token
    if token == "auto":
        token = secrets.token_urlsafe(24)
    if not loopback and not token:
        print(f"bliss-lite view: --host {args.host} is not a loopback address: give a token "
              f"(--token TOKEN, --token auto, or ${TOKEN_ENV}) so that only those who have it see the beamline",
              file=sys.stderr)
        return 2
    if token is not None and len(token) < 16:
        print("bliss-lite view: the token must have at least 16 characters", file=sys.stderr)
        return 2
    from bliss_lite.config.logs import setup_logging, startup_error

    setup_logging(process_name="view", to_run_dir=True)
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        startup_error(logger, f"bliss-lite view: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    try:
        client, where = _redis(args.redis)
    except Exception as exc:  # noqa: BLE001 - unreachable or unstartable: one line, exit 1
        startup_error(logger, f"bliss-lite view: cannot reach Redis: {exc}")
        return 1
    from bliss_lite.view.watcher import POLL_S, Watcher

    watcher = Watcher(client, args.poll or POLL_S).start()
    app = create_app(watcher, token, loopback)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"Live view of {where} on {url}", flush=True)
    logger.info("live view of %s on http://%s:%d/%s", where, shown, port,
                " (token required)" if token else "")  # the token stays out of the file
    return _serve(app, sock, watcher)


def _bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _redis(url):
    from bliss_lite.config.paths import run_dir
    from bliss_lite.data import redis_server
    from bliss_lite.data.redis_url import mask_url

    url = url or redis_server.ensure_server(run_dir())
    client = redis_server.connect(url)
    client.ping()
    return client, mask_url(url)


def _serve(app, sock, watcher):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
    return 0

