"""Slow and stalled clients: deadlines on reading a request, and a cap on idle connections.

uvicorn times out only keep-alive connections between requests. A client that connects and sends
nothing, or half a request line, holds its socket (a file descriptor) forever, token or not; a few
hundred of them starve a server with a low descriptor limit (``ulimit -n 256``: new clients are
never accepted). :class:`GuardedH11Protocol` answers ``408`` (JSON) and closes a connection whose
request headers have not all arrived ``HEADER_TIMEOUT_S`` after it opened (or after the first
byte of its next request), and when more than :func:`max_idle_connections` connections wait for
headers it closes the longest-waiting ones. Request bodies have their own deadline in
:class:`backend.service.middleware.BodyLimit`.
"""
from __future__ import annotations

import asyncio
import json
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5  # idle time between requests on one connection (the add-on opens one per request)


def max_idle_connections() -> int:
    """Connections allowed to wait for request headers at once: a quarter of the descriptor limit
    (the rest is for real requests, the model's files and the worker), between 16 and 256."""
    try:
        import resource  # POSIX only

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 4096
    except (ImportError, OSError, ValueError):
        soft = 1024
    return max(16, min(256, soft // 4))


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def accept_batch() -> int:
    """How many connections the event loop accepts in one go (uvicorn's ``backlog``: asyncio accepts up
    to that many sockets before any of them is served or shed). Its default, 2048, runs a process with
    128 descriptors out of them in one burst, and asyncio then stops accepting for a second each time.
    Measured, one request behind 300 silent connections, ``ulimit -n 128``: plain uvicorn never answers
    (30 s client timeout); with the cap on idle connections alone 4.3 s; with this as well 0.03 s."""
    return max(8, min(64, max_idle_connections() // 2))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request headers and a cap on waiting connections."""

    header_timeout = HEADER_TIMEOUT_S
    max_idle = max_idle_connections()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        self._cycle_at_arm: object = None
        super().connection_made(transport)
        self._arm()
        self._shed_idle()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._cycle_at_arm:
            self._disarm()  # a whole request line and headers arrived: the app has it now

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # waiting for the next request: uvicorn's keep-alive timer closes an idle connection, this
            # deadline one that sent part of its next request (in the same packet as the last, say)
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the deadline ---------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._cycle_at_arm = self.cycle
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._waiting_since = None

    def _timed_out(self) -> None:
        self._header_timer = None
        self._close(408, "Request Timeout", f"the request did not arrive within {self.header_timeout:g} s")

    def _close(self, status: int, reason: str, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # nothing of a response is on the wire
            self.transport.write(_raw_response(status, reason, message))
        self.transport.close()

    def _shed_idle(self) -> None:
        waiting = [c for c in self.connections
                   if isinstance(c, GuardedH11Protocol) and c._waiting_since is not None]
        if len(waiting) <= self.max_idle:
            return
        waiting.sort(key=lambda c: c._waiting_since or 0.0)
        for c in waiting[: len(waiting) - self.max_idle]:
            c._close(503, "Service Unavailable", "too many idle connections: this one waited longest")
