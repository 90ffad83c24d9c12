"""`queue` in the shell: the session's queue server, asked from the command line of a shell.

    queue.add("ascan(m0, 0, 1, 10, 0.1)")   or   queue.add(ascan, m0, 0, 1, 10, 0.1)
    queue              (shows it)     queue.pause()  queue.resume()  queue.stop()  queue.abort()
"""
from __future__ import annotations

from bliss_lite.data.queue_client import QueueClient, default_who


def _arg(value):
    name = getattr(value, "name", None)
    if isinstance(name, str) and not isinstance(value, (str, int, float)):
        return name  # a session object: the server looks it up by name
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_arg(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


def as_text(command, *args, **kwargs):
    """"ascan(m0, 0, 1, 10, 0.1)" from (ascan, m0, 0, 1, 10, 0.1), or the text itself."""
    if isinstance(command, str) and not args and not kwargs:
        return command
    name = command if isinstance(command, str) else command.__name__
    parts = [_arg(a) for a in args] + [f"{k}={_arg(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class ShellQueue:
    def __init__(self, session_name, context):
        self._session, self._context, self._client = session_name, context, None

    def _queue(self):
        if self._client is None:
            client = self._context.redis.client()
            if client is None:
                raise RuntimeError("queue: no Redis, hence no queue server to ask")
            self._client = QueueClient(client, self._session, who=default_who("shell"))
        return self._client

    def add(self, command, *args, position=None, **kwargs):
        """Queue a scan or command (checked by the server first); returns its id."""
        return self._queue().add(as_text(command, *args, **kwargs), position=position)["id"]

    def items(self):
        return self._queue().items()

    def __getattr__(self, name):
        if name in ("remove", "move", "pause", "resume", "stop", "abort", "clear", "status", "wait", "item"):
            return getattr(self._queue(), name)
        raise AttributeError(name)

    def __info__(self):
        queue = self._queue()
        status = queue.status()
        lines = [f"queue of '{self._session}': {status['mode']}{', holding' if status['holding'] else ''}; "
                 f"server {status['server'] or 'not running'}"]
        for item in queue.items():
            where = f" scan {item['scan']}" if item.get("scan") is not None else ""
            lines.append(f"  {item['id']}  {item['state']:<11} {item['command']}{where}"
                         + (f"  ({item['error']})" if item.get("error") else ""))
        return "\n".join(lines)

    def __repr__(self):
        try:
            return self.__info__()
        except Exception as exc:  # noqa: BLE001 - shown, not raised, at the prompt
            return f"queue of '{self._session}': {exc}"
