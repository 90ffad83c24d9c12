"""The queue on the live view's server: GET /api/queue/{session}, POST /api/queue/{session}/{op}.

GET answers {"session", "status", "items"}; each item has the fields of `list --json` plus
`started`, `ended`, and `points` of `expected` (its scan's progress; None when not known).

Changing the queue moves a beamline, so besides the server's own guards (loopback Host names
only, or the token on any other address: view/server.py) a change must come as JSON (a
cross-site form cannot send that without a CORS preflight, which is never granted) and, when
no token is set, from a loopback peer. Each change is logged here and by the queue server,
with who asked (peer address, and whether a token was shown).
"""
from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from bliss_lite.data.queue_client import OPERATIONS, QueueClient, QueueError, sessions, summary
from bliss_lite.view.addresses import is_loopback

logger = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store"}
MAX_BODY = 8192


def routes():
    return [Route("/api/queues", queue_list), Route("/api/queue/{session}", queue_state),
            Route("/api/queue/{session}/{op}", queue_change, methods=["POST"])]


def _is_loopback(host):
    return host is not None and is_loopback(host)


def _session(request):
    session = request.path_params["session"]
    if not session or len(session) > 100 or not all(c.isalnum() or c in "_-" for c in session):
        raise ValueError(f"not a session name: {session[:100]!r}")
    return session


def _queue(request, session, who=None):
    return QueueClient(request.app.state.watcher.client, session, who=who)


async def queue_list(request):
    """{"sessions": [names]}: the sessions whose queue the page may show."""
    found = await run_in_threadpool(sessions, request.app.state.watcher.client)
    return JSONResponse({"sessions": found}, headers=NO_STORE)


async def queue_state(request):
    try:
        session = _session(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    queue = _queue(request, session)

    def read():
        items, status = queue.items_with_progress()
        return {"session": session, "status": status,
                "items": [{**summary(i), "started": i.get("started"), "ended": i.get("ended"),
                           "points": i["points"], "expected": i["expected"]} for i in items]}
    return JSONResponse(await run_in_threadpool(read), headers=NO_STORE)


async def queue_change(request):
    op = request.path_params["op"]
    peer = request.client.host if request.client else None
    token = getattr(request.app.state, "token", None)
    if not token and not _is_loopback(peer):
        logger.warning(f"queue {op}: refused from {peer}: no token is set, only this host may change the queue")
        return JSONResponse({"error": "changing the queue from another host needs the view's token"}, status_code=403)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "send the request as application/json"}, status_code=415)
    try:
        session = _session(request)
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r} (one of {', '.join(OPERATIONS)})")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ValueError(f"request body over {MAX_BODY} bytes")
        args = json.loads(body or b"{}")
        if not isinstance(args, dict):
            raise ValueError("the body is a JSON object")
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    who = f"http {peer}" + (" (token)" if token else " (loopback)")
    logger.info(f"queue {session}: {op} {args} asked by {who}")
    queue = _queue(request, session, who=who)
    allowed = {"add": ("command", "position"), "remove": ("id",), "move": ("id", "position")}.get(op, ())
    extra = sorted(set(args) - set(allowed))
    if extra:
        return JSONResponse({"error": f"{op}: unexpected fields {extra}"}, status_code=400)
    try:
        answer = await run_in_threadpool(lambda: queue.request(op, **args))
    except QueueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse(answer, headers=NO_STORE)
