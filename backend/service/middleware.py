"""The service's three ASGI middlewares, outermost first: :class:`HostCheck` (``Host`` header, DNS
rebinding), :class:`BearerAuth` (the token, before any body is read) and :class:`BodyLimit` (size and
arrival time of the body); plus the JSON error answer they and the routes share.

Plain ASGI (no route knowledge): :func:`backend.service.app.create_app` adds them, the studio's
ingress gets them through the same app.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from blender_att3d.wire import routes

from .auth import host_name
from .jobs import DEFAULT_USER

MAX_BODY_BYTES = 1 << 20
BODY_TIMEOUT_S = 30.0  # a whole body (≤ 1 MiB) must arrive within this after the headers


def text(value: Any) -> str:
    """``value`` as readable text that UTF-8 can encode: control characters, and unpaired surrogates
    that came in as ``"\\ud800"`` (echoed in a field name, say), are written as escapes; a surrogate
    must not turn a 4xx answer into a serialisation error."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(value))


def header_value(value: Any, limit: int = 200) -> str:
    """The one place where data becomes an HTTP header value: printable ASCII only (CR, LF and other
    controls would end the header, and h11 refuses to send them, closing the connection unanswered;
    anything else becomes ``?``), at most ``limit`` characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(value)[:limit]).strip()


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    safe = {k: header_value(v) for k, v in headers.items()} if headers else None
    return JSONResponse({"error": text(message), **extra}, status_code=status, headers=safe)


class BodyLimit:
    """Reject request bodies over ``limit`` bytes with 413, and bodies that have not all arrived
    ``timeout`` seconds after their headers with 408 (a client sending one byte at a time would
    hold its connection forever), before anything parses them."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES, timeout: float | None = None) -> None:
        self.app, self.limit = app, limit
        self.timeout = BODY_TIMEOUT_S if timeout is None else timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope.get("method") in ("POST", "PUT", "PATCH") and ctype in (b"", b"text/plain",
                                                                          b"application/x-www-form-urlencoded"):
            # every body of this API is JSON: read it as JSON whatever a bare `curl -d` says
            scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                         + [(b"content-type", b"application/json")])
        too_big = JSONResponse({"error": f"the request body is too large (limit {self.limit} bytes)"}, 413)
        try:
            if cl is not None and int(cl) > self.limit:
                return await too_big(scope, receive, send)
        except ValueError:
            return await JSONResponse({"error": "bad Content-Length header"}, 400)(scope, receive, send)
        chunks, total = [], 0
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                late = JSONResponse({"error": f"the request body did not arrive within {self.timeout:g} s"}, 408,
                                    headers={"Connection": "close"})
                return await late(scope, receive, send)
            if msg["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(msg.get("body", b""))
            total += len(chunks[-1])
            if total > self.limit:
                return await too_big(scope, receive, send)
            if not msg.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


#: who a token belongs to: the user's name, or None for a token nobody has
Authenticator = Callable[[bytes], str | None]


def single_token(token: str, user: str = DEFAULT_USER) -> Authenticator:
    """``att3d serve``'s one token (compared in constant time)."""
    expected = token.encode()
    return lambda given: user if hmac.compare_digest(given, expected) else None


class BearerAuth:
    """401 for any request (but the liveness probe) without ``Authorization: Bearer <token>``.

    A middleware rather than a route dependency so that it runs before the body is read or
    parsed: without the token, malformed JSON, an oversized body or an unknown path all get the
    same 401 and nothing else. ``token``: the one token (compared in constant time), or an
    :data:`Authenticator` (a studio's users). The user's name goes to ``request.state.user``.
    """

    OPEN_PATHS = (routes.HEALTH,)

    def __init__(self, app, token: str | Authenticator, hint: str = "") -> None:
        self.app, self.hint = app, hint
        self.who: Authenticator = single_token(token) if isinstance(token, str) else token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = b""
        for k, v in scope.get("headers") or []:
            if k == b"authorization":
                header = v
                break
        scheme, _, given = header.strip().partition(b" ")
        given = given.strip()
        user = self.who(given) if scheme.lower() == b"bearer" and given else None
        if scheme.lower() != b"bearer" or not given:
            response = error(401, "authentication required: send 'Authorization: Bearer <token>'" + self.hint,
                             {"WWW-Authenticate": "Bearer"})
        elif user is None:
            response = error(401, "invalid token" + self.hint, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            scope.setdefault("state", {})["user"] = user
            return await self.app(scope, receive, send)
        return await response(scope, receive, send)


class HostCheck:
    """Answer only requests whose ``Host`` header names this server (DNS rebinding: a web page whose
    name an attacker re-points at 127.0.0.1 would otherwise reach the service from a browser; the
    token is then the only guard). ``allowed``: a :class:`backend.service.auth.HostPolicy`."""

    def __init__(self, app, allowed: Callable[[str], bool]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = ""
        for k, v in scope.get("headers") or []:
            if k == b"host":
                host = v.decode("latin-1")
                break
        if not host or self.allowed(host):  # HTTP/1.0 may omit it; browsers never do
            return await self.app(scope, receive, send)
        # short: the add-on quotes the first 100 characters of what /v1/health answered
        name = host_name(header_value(host, 80))
        response = error(421, f"host name {name!r} not allowed: start att3d serve with --allow-host {name}, "
                              "or connect by IP address")
        return await response(scope, receive, send)
