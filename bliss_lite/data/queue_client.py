"""A session's queue from any program: read it, and ask its server for changes. No gevent.

Only the queue server (shell/queue_server.py) writes the queue, so that adding, moving and
running never race: a client puts a request on the session's request stream and waits for the
answer on a reply key of its own. Reading (`items`, `status`) goes straight to Redis. Every
request names who asked; the server logs it.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid

from bliss_lite.data.model import QUEUE_STATUS_MATCH, queue_key, queue_reply_key, queue_sessions

STATES = ("queued", "running", "done", "failed", "interrupted", "aborted")
OPERATIONS = ("add", "remove", "move", "pause", "resume", "stop", "abort", "clear")
REPLY_TIMEOUT_S = 10.0
FIELDS = ("id", "command", "state", "scan", "filename", "entry", "error")


class QueueError(RuntimeError):
    """The server refused the request (the message says why) or did not answer."""


def default_who(what="client"):
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()} ({what})"


def decode(value):
    return value.decode() if isinstance(value, bytes) else value


class QueueClient:
    def __init__(self, client, session, who=None):
        self.client = client  # a redis.Redis
        self.session = session
        self.who = who or default_who()

    def key(self, part):
        return queue_key(self.session, part)

    # -- reading -----------------------------------------------------------------------------
    def items(self, history=True):
        """[item dict] : the finished (oldest first, when `history`), the running, the queued in order."""
        pipe = self.client.pipeline()
        pipe.lrange(self.key("history"), 0, -1)
        pipe.get(self.key("running"))
        pipe.lrange(self.key("order"), 0, -1)
        pipe.hgetall(self.key("items"))
        done, running, queued, records = pipe.execute()
        records = {decode(k): json.loads(v) for k, v in records.items()}
        ids = ([decode(i) for i in done] if history else []) + ([decode(running)] if running else []) \
            + [decode(i) for i in queued]
        return [records[i] for i in ids if i in records]

    def item(self, item_id):
        value = self.client.hget(self.key("items"), item_id)
        return None if value is None else json.loads(value)

    def status(self):
        """{"mode": running|paused|stopped, "holding": bool, "server": "host:pid" or None,
        "progress": {"id", "scan", "points", "expected"} of the running item's scan, or None}."""
        raw = {decode(k): decode(v) for k, v in self.client.hgetall(self.key("status")).items()}
        server = decode(self.client.get(self.key("server")))
        try:
            progress = json.loads(raw.get("progress") or "null")
        except ValueError:
            progress = None
        return {"mode": raw.get("mode", "running"), "holding": raw.get("holding") == "1", "server": server,
                "progress": progress if isinstance(progress, dict) and server else None}

    def items_with_progress(self):
        """(items, status): each item with `points` (taken so far: the running item's scan, as the
        server last reported it; a finished one's last scan) and `expected` (None: not known)."""
        items, status = self.items(), self.status()
        progress = status["progress"] or {}
        for item in items:
            item.setdefault("points", None)
            item.setdefault("expected", None)
            if item["state"] == "running" and progress.get("id") == item["id"]:
                item.update(points=progress.get("points"), expected=progress.get("expected"))
        return items, status

    # -- asking the server -------------------------------------------------------------------
    def request(self, op, timeout=REPLY_TIMEOUT_S, **args):
        """The server's answer (a dict) to `op`; QueueError with its reason if refused."""
        if op not in OPERATIONS:
            raise QueueError(f"queue: unknown operation {op!r} (one of {', '.join(OPERATIONS)})")
        if self.client.get(self.key("server")) is None:
            raise QueueError(f"no queue server runs for session '{self.session}' "
                             f"(start one: bliss-lite queue -s {self.session})")
        request_id = uuid.uuid4().hex
        self.client.xadd(self.key("requests"), {"id": request_id, "op": op, "who": self.who,
                                                "args": json.dumps(args)}, maxlen=1000, approximate=True)
        reply_key = queue_reply_key(self.session, request_id)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QueueError(f"the queue server of session '{self.session}' did not answer '{op}' "
                                 f"within {timeout:g} s")
            got = self.client.blpop([reply_key], timeout=1)  # whole seconds: older servers
            if got is not None:
                answer = json.loads(got[1])
                if not answer.get("ok"):
                    raise QueueError(answer.get("error") or f"queue: {op} refused")
                return answer

    def add(self, command, position=None, timeout=REPLY_TIMEOUT_S):
        """Queue `command` (text such as "ascan(m0, 0, 1, 10, 0.1)"), checked by the server
        first; returns the new item (dict with its id). `timeout`: seconds to wait for the
        answer (the first XRD-CT item a server checks loads the detector geometry: seconds)."""
        return self.request("add", timeout=timeout, command=command, position=position)["item"]

    def remove(self, item_id):
        return self.request("remove", id=item_id)

    def move(self, item_id, position):
        """Put a queued item at `position` (0: next to run)."""
        return self.request("move", id=item_id, position=position)

    def pause(self):
        """Hold the running scan at its next safe point; nothing further starts."""
        return self.request("pause")

    def resume(self):
        return self.request("resume")

    def stop(self):
        """Let the running item finish, then start nothing more until `resume`."""
        return self.request("stop")

    def abort(self):
        """End the running item now (its scan ends USER_ABORT); nothing further starts."""
        return self.request("abort")

    def clear(self):
        """Drop every queued item (the running one and the history stay)."""
        return self.request("clear")

    def wait(self, item_id, states=("done", "failed", "interrupted", "aborted"), timeout=60.0, poll=0.02):
        """The item once its state is one of `states`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.item(item_id)
            if item is not None and item["state"] in states:
                return item
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue item {item_id}: still {item and item['state']} after {timeout:g} s")
            time.sleep(poll)


def sessions(client):
    """Names of the sessions that have a queue (a server ran for them once)."""
    return queue_sessions(client.scan_iter(match=QUEUE_STATUS_MATCH, count=1000))


def summary(item):
    """The item's public fields, in order (what `bliss-lite queue list --json` prints)."""
    return {name: item.get(name) for name in FIELDS}
