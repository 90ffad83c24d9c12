"""The queue server: one process owns a session and runs its queued items one after another.

The queue lives in Redis (keys: data/model.py `queue_key`), so it outlives the server: on
start, an item left "running" by a server that died (kill -9) is marked interrupted and the
rest stays queued. Only this process writes the queue; clients (data/queue_client.py) ask it
through the request stream, and every change is logged with who asked. Greenlets: one reads
requests, one renews the server's lease and reports whether the scan holds and how far it got
(status "progress": points done of expected), and the main loop runs items, each in a
greenlet that `abort` kills (the scan then ends USER_ABORT).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

import gevent
import gevent.event

from bliss_lite.data.model import QUEUE_LOG_MAXLEN, queue_key, queue_reply_key
from bliss_lite.data.queue_client import decode
from bliss_lite.shell.errors import short_message
from bliss_lite.shell.queue_commands import prepare

logger = logging.getLogger(__name__)
LEASE_MS = 10000  # another host's server may take the session this long after this one died
BEAT_S = 0.05  # how often the holding flag is refreshed (the lease every 20 beats)
FINISHED = ("done", "failed", "interrupted", "aborted")


def _expected(scan):
    """Points the scan will take: its npoints, an XRD-CT's frames, None when open-ended."""
    if isinstance(scan.npoints, int) and scan.npoints > 0:
        return scan.npoints
    xrdct = scan.scan_info.get("xrdct")
    if xrdct:
        return int(xrdct["n_x"]) * int(xrdct["n_omega"]) * len(xrdct["z_positions"])
    return None


def _whole(op, position):
    """A position of the order must be a whole number (JSON may send "2", 1.5 or true)."""
    if not isinstance(position, int) or isinstance(position, bool):
        raise ValueError(f"{op}: position must be a whole number, got {position!r}")


class QueueBusy(RuntimeError):
    """Another queue server runs for the session."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class QueueServer:
    def __init__(self, session_name, namespace, client, scripts=None):
        self.session = session_name
        self.namespace = namespace
        self.objects = dict(namespace["SESSION"].objects) if "SESSION" in namespace else {}
        self.client = client
        self.scripts = scripts
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.current = None  # the running item's record
        self.current_scan = None
        self._runner = None  # the running item's greenlet
        self._aborting = False
        self._wake = gevent.event.Event()
        self._greenlets = []
        self._closing = False

    def key(self, part):
        return queue_key(self.session, part)

    # -- starting --------------------------------------------------------------------------
    def start(self, context):
        """Take the session's server lease (QueueBusy if a live server holds it), recover what
        a dead server left, and start listening."""
        newest = self.client.xrevrange(self.key("requests"), count=1)
        self._last_request = newest[0][0] if newest else "0-0"  # fixed before the lease: no request
        self._claim()  # sent once clients see this server is missed, even before the first read
        self._recover()
        if self.client.hget(self.key("status"), "mode") is None:
            self.client.hset(self.key("status"), "mode", "running")
        self.client.hset(self.key("status"), mapping={"holding": "0", "server": self.me, "progress": "null"})
        context.watchers.append(self._watch_scan)
        self._greenlets = [gevent.spawn(self._listen), gevent.spawn(self._beat)]
        logger.info(f"queue server of session '{self.session}' started on {self.me}")
        return self

    def _claim(self):
        key = self.key("server")
        if self.client.set(key, self.me, nx=True, px=LEASE_MS):
            return
        holder = decode(self.client.get(key)) or ""
        host, _, pid = holder.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            self.client.set(key, self.me, px=LEASE_MS)  # its holder died here: no need to wait
            return
        raise QueueBusy(f"a queue server already runs for session '{self.session}' on {holder}")

    def _recover(self):
        running = decode(self.client.get(self.key("running")))
        if running is None:
            return
        item = self._load(running)
        if item is not None:
            item.update(state="interrupted", ended=time.time(),
                        error=item.get("error") or "the queue server stopped while it ran (killed or crashed)")
            self._resume(item)  # before the record says interrupted: it then says where it went on
            self._save(item)
            self.client.rpush(self.key("history"), running)
            self._log("server", "interrupted", {"id": running}, "recovered at start")
        self.client.delete(self.key("running"))

    def _resume(self, item):
        """An interrupted XRD-CT scan goes on from its file: `resume_scan(file, entry)` is queued
        first (checked as any item; when the file cannot be resumed, the reason is logged)."""
        if item.get("filename") is None or item.get("entry") is None \
                or not item["command"].startswith(("xrdct(", "resume_scan(")):
            return
        text = f"resume_scan({item['filename']!r}, {item['entry']!r})"
        try:
            resumed = self.add(text, who=f"server (resumes {item['id']})", position=0)
        except Exception as exc:  # noqa: BLE001 - left interrupted: the operator decides
            self._log("server", "resume", {"id": item["id"]}, f"not resumed: {short_message(exc)}")
            return
        item["resumed_by"] = resumed["id"]
        self._log("server", "resume", {"id": item["id"]}, f"queued first as {resumed['id']}")

    # -- records -----------------------------------------------------------------------------
    def _load(self, item_id):
        value = self.client.hget(self.key("items"), item_id)
        return None if value is None else json.loads(value)

    def _save(self, item):
        self.client.hset(self.key("items"), item["id"], json.dumps(item))

    def _log(self, who, op, args, result):
        logger.info(f"queue {self.session}: {op} {args} by {who}: {result}")
        try:
            self.client.xadd(self.key("log"), {"time": time.time(), "who": who, "op": op,
                                               "args": json.dumps(args), "result": str(result)},
                             maxlen=QUEUE_LOG_MAXLEN, approximate=True)
        except Exception as exc:  # noqa: BLE001 - the log file still has it
            logger.warning(f"queue log: {exc}")

    def mode(self):
        return decode(self.client.hget(self.key("status"), "mode")) or "running"

    def _set_mode(self, mode):
        self.client.hset(self.key("status"), "mode", mode)
        self._wake.set()

    # -- requests ----------------------------------------------------------------------------
    def _listen(self):
        while not self._closing:
            try:
                got = self.client.xread({self.key("requests"): self._last_request}, block=500, count=50)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again
                logger.warning(f"queue requests: {exc}")
                gevent.sleep(1)
                continue
            for _, entries in got or []:
                for entry_id, fields in entries:
                    self._last_request = entry_id
                    self._answer({decode(k): decode(v) for k, v in fields.items()})

    def _answer(self, request):
        op, who, request_id = request.get("op"), request.get("who", "?"), request.get("id")
        try:
            args = json.loads(request.get("args") or "{}")
            handler = getattr(self, f"_op_{op}", None)
            if handler is None or not isinstance(args, dict):
                raise ValueError(f"unknown request {op!r}")
            answer = {"ok": True, **(handler(who=who, **args) or {})}
        except Exception as exc:  # noqa: BLE001 - refused: the reason goes back to who asked
            answer = {"ok": False, "error": short_message(exc)}
        self._log(who, op, request.get("args"), "ok" if answer["ok"] else answer["error"])
        if request_id:
            reply = queue_reply_key(self.session, request_id)
            self.client.rpush(reply, json.dumps(answer, default=str))
            self.client.expire(reply, 60)

    def add(self, command, who="server", position=None):
        """Check `command` as the shell would, then queue it (at `position`, 0: next; None:
        last); the new item."""
        if position is not None:
            _whole("add", position)
        prepared = prepare(command, self.namespace, self.objects, self.scripts)
        item = {"id": uuid.uuid4().hex[:12], "command": prepared.text, "kind": prepared.kind, "state": "queued",
                "scan": None, "filename": None, "entry": None, "error": None, "who": who,
                "added": time.time(), "started": None, "ended": None}
        self._save(item)
        order = [decode(i) for i in self.client.lrange(self.key("order"), 0, -1)]
        order.insert(len(order) if position is None else max(0, position), item["id"])
        self._write_order(order)
        self._wake.set()
        return item

    def _write_order(self, order):
        pipe = self.client.pipeline()
        pipe.delete(self.key("order"))
        if order:
            pipe.rpush(self.key("order"), *order)
        pipe.execute()

    def _queued(self, item_id):
        order = [decode(i) for i in self.client.lrange(self.key("order"), 0, -1)]
        if item_id not in order:
            item = self._load(item_id)
            raise ValueError(f"item {item_id} is not queued" + (f" (it is {item['state']})" if item else ""))
        return order

    def _op_add(self, who, command=None, position=None):
        return {"item": self.add(command, who, position)}

    def _op_remove(self, who, id=None):  # noqa: A002 - the request's field
        order = self._queued(id)
        order.remove(id)
        self._write_order(order)
        self.client.hdel(self.key("items"), id)
        return {}

    def _op_move(self, who, id=None, position=None):  # noqa: A002
        order = self._queued(id)
        _whole("move", position)
        order.remove(id)
        order.insert(max(0, position), id)
        self._write_order(order)
        return {}

    def _op_clear(self, who):
        order = [decode(i) for i in self.client.lrange(self.key("order"), 0, -1)]
        self._write_order([])
        if order:
            self.client.hdel(self.key("items"), *order)
        return {"removed": len(order)}

    def _op_pause(self, who):
        self._set_mode("paused")
        if self.current_scan is not None:
            self.current_scan.pause()
        return {}

    def _op_resume(self, who):
        self._set_mode("running")
        if self.current_scan is not None:
            self.current_scan.resume()
        return {}

    def _op_stop(self, who):
        self._set_mode("stopped")
        if self.current_scan is not None:
            self.current_scan.resume()  # a paused scan finishes: stop means "after this one"
        return {}

    def _op_abort(self, who):
        self._set_mode("stopped")
        runner = self._runner
        if runner is None or runner.dead:
            return {"aborted": None}
        self._aborting = True
        runner.kill(block=False)
        return {"aborted": self.current["id"] if self.current else None}

    # -- running -----------------------------------------------------------------------------
    def _beat(self):
        beats, holding, shown = 0, None, None
        while not self._closing:
            try:
                if beats % 20 == 0:
                    self.client.set(self.key("server"), self.me, px=LEASE_MS)
                # holding and progress are read together and written in one HSET: a client
                # that sees the scan hold sees the points it took before it held
                scan = self.current_scan
                now = scan is not None and scan.guard.suspended is not None
                progress = self._progress()
                changed = {}
                if now != holding:
                    changed["holding"] = "1" if now else "0"
                if progress != shown:  # when a point came: a few small writes a second
                    changed["progress"] = json.dumps(progress)
                if changed:
                    self.client.hset(self.key("status"), mapping=changed)
                    holding, shown = now, progress
            except Exception as exc:  # noqa: BLE001 - Redis away: try again
                logger.warning(f"queue server lease: {exc}")
            beats += 1
            gevent.sleep(BEAT_S)

    def _progress(self):
        """{"id", "scan", "points", "expected"} of the running item's scan (points complete in
        every channel; expected None for an open-ended scan), or None while no scan runs."""
        scan, item = self.current_scan, self.current
        if scan is None or item is None:
            return None
        return {"id": item["id"], "scan": scan.number, "points": scan.data.npoints, "expected": _expected(scan)}

    def _watch_scan(self, scan):
        """Context watcher: the running item learns its scan's number, file and entry, and at
        its end how many points it took (`points` of `expected`, kept in the record)."""
        server = self

        class Watch:
            def __enter__(self):
                server.current_scan = scan
                if server.current is not None:
                    server.current.update(scan=scan.number, filename=scan.filename, entry=scan.entry,
                                          points=0, expected=_expected(scan))
                    server._save(server.current)
                if server.mode() == "paused":
                    scan.pause()
                return self

            def __exit__(self, *exc):
                if server.current_scan is scan:
                    server.current_scan = None
                if server.current is not None:  # saved with the item's end (run_next, close)
                    server.current["points"] = scan.data.npoints
                return False
        return Watch()

    def run_next(self):
        """Run the next queued item if the queue runs; False when there was none to run."""
        if self.mode() != "running":
            return False
        item_id = decode(self.client.lpop(self.key("order")))
        if item_id is None:
            return False
        item = self._load(item_id)
        if item is None:
            return True
        item.update(state="running", started=time.time())
        self.client.set(self.key("running"), item_id)
        self._save(item)
        self.current, self._aborting = item, False
        self._runner = gevent.spawn(self._execute, item)
        self._runner.join()
        value = self._runner.value if self._runner.successful() else None
        state, error = value if isinstance(value, tuple) else ("aborted", "aborted before it began")
        if self._aborting:
            state, error = "aborted", error or "aborted on request"
        item.update(state=state, error=error, ended=time.time())
        self._finish(item)
        self.current = self._runner = None
        self._log("server", "finished", {"id": item_id}, state)
        return True

    def _finish(self, item):
        """Record the item's end in one transaction: whoever reads it finished finds it in the
        history, no longer running, and no progress of its scan left in the status."""
        pipe = self.client.pipeline()
        pipe.hset(self.key("items"), item["id"], json.dumps(item))
        pipe.rpush(self.key("history"), item["id"])
        pipe.delete(self.key("running"))
        pipe.hset(self.key("status"), "progress", "null")
        pipe.execute()

    def _execute(self, item):
        try:
            prepared = prepare(item["command"], self.namespace, self.objects, self.scripts, check=False)
            result = prepared.run()
            if getattr(result, "number", None) is not None:
                item.update(scan=result.number, filename=result.filename, entry=result.entry)
            return "done", None
        except gevent.GreenletExit:
            return "aborted", "aborted on request"
        except BaseException as exc:  # noqa: BLE001 - the item failed, the queue goes on
            logger.warning(f"queue item {item['id']} failed: {exc}")
            return "failed", short_message(exc)

    def serve_forever(self):
        while not self._closing:
            if not self.run_next():
                self._wake.wait(0.05)
                self._wake.clear()

    def close(self):
        """Stop serving; an item still running is ended and marked interrupted (as after a
        crash, but at once: the next server need not find it)."""
        self._closing = True
        item, runner = self.current, self._runner
        if runner is not None and not runner.dead:
            runner.kill()
            if item is not None:
                item.update(state="interrupted", ended=time.time(), error="the queue server was stopped while it ran")
                self._finish(item)
        gevent.killall(self._greenlets)
        try:
            if decode(self.client.get(self.key("server"))) == self.me:
                self.client.delete(self.key("server"))
            self.client.hset(self.key("status"), mapping={"holding": "0", "progress": "null"})
        except Exception:  # noqa: BLE001 - the lease expires on its own
            pass
