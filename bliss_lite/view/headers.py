"""Security headers on every answer of the live view.

Names on the page come from Redis, the session YAML and scan arguments: anyone who can write a
counter or phase name writes into the page. The page builds every element as text (view.js),
and this strict Content-Security-Policy is the second wall: scripts and styles from the view's
own /static files only (no inline script, no eval, no inline style), images and requests to the
view itself, no frames, no forms, no plugins.
"""
from __future__ import annotations

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),  # a PNG or JSON answer is never run as a script
    (b"referrer-policy", b"no-referrer"),  # a token in the URL never leaves in a Referer
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """ASGI middleware: adds HEADERS to every HTTP response (refusals included)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in present]
            await send(message)

        return await self.app(scope, receive, send_with_headers)
