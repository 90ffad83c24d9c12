"""Naming a Redis server in messages without its password.

A TCP URL may carry credentials (redis://user:password@host:port/0, or ?password=...). Every
message and log line names the server by `mask_url` (password replaced by ***), and the
connections `redis_server.connect` makes put that name into their connection and
authentication errors, so a wrong password or a dead server says where, and nothing prints
the secret.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

MASK = "***"


def mask_url(url) -> str:
    """The URL with any password replaced by ***."""
    text = re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", rf"\1:{MASK}@", str(url))
    return re.sub(r"([?&]password=)[^&#]*", rf"\1{MASK}", text)


def _describe(options) -> str:
    """A masked URL built from connection options (a connection's attributes or a pool's kwargs)."""
    get = options.get
    if get("path"):
        return f"unix://{get('path')}"
    user = get("username") or ""
    credentials = f"{user}:{MASK}@" if get("password") else (f"{user}@" if user else "")
    return f"redis://{credentials}{get('host') or 'localhost'}:{get('port') or 6379}/{get('db') or 0}"


def server_name(client) -> str:
    """The masked URL of the server a redis-py client talks to."""
    return _describe(client.connection_pool.connection_kwargs)


def _named(exc, name):
    """The same kind of error, its message naming the server (once)."""
    text = str(exc)
    if name in text:
        return exc
    try:
        return type(exc)(f"Redis at {name}: {text}")
    except Exception:  # noqa: BLE001 - an error class with another signature: keep it as it is
        return exc


class _NamedErrors:
    """Connection, timeout and authentication errors name the server (password masked)."""

    def _server_name(self):
        return _describe({k: getattr(self, k, None) for k in ("path", "host", "port", "db", "username", "password")})

    def connect_check_health(self, *args, **kwargs):
        try:
            return super().connect_check_health(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # AuthenticationError included
            raise _named(exc, self._server_name()) from exc

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _named(exc, self._server_name()) from exc


class NamedConnection(_NamedErrors, Connection):
    pass


class NamedSSLConnection(_NamedErrors, SSLConnection):
    pass


class NamedUnixConnection(_NamedErrors, UnixDomainSocketConnection):
    pass


def connection_class(url):
    """The connection class for a URL's scheme, naming the server in its errors."""
    scheme = urlsplit(str(url)).scheme
    return {"unix": NamedUnixConnection, "rediss": NamedSSLConnection}.get(scheme, NamedConnection)
