"""HTTP/1.1 on the action port, on the worker's event loop: one `HttpConnection` per client.

Requests are parsed by httptools (llhttp, the parser uvicorn and Node.js use: framing, chunked
bodies, conflicting Content-Length/Transfer-Encoding refused). This module only keeps what the
runtime's trust rules need, and nothing per request that they do not:
- every answer is JSON with a Content-Length, also for a request that cannot be parsed (400),
  a body over the limit (413, declared or streamed chunked; the rest is read and dropped up to
  `DRAIN_LIMIT` so that the client sees the answer, then the connection closes) and a client too
  slow to send its request (408);
- time-outs: idle (keep-alive, or opened and silent), from a request's first byte to the end of
  its headers, and from there to the end of its body; checked once a second by `sweep`, so a
  request costs no timer. A slow client holds its connection and no thread: activations never
  wait for it;
- keep-alive, pipelining (answers in order), `Expect: 100-continue`, a cap on connections.

Why not uvicorn or gunicorn's own ASGI worker (both measured, `make bench-runtime`): the ASGI
layer (a scope, receive/send coroutines and a task per request) costs about 50 us of CPU per
request, a fifth of the runtime's budget, and neither has header or body read time-outs nor
answers parse errors in JSON without replacing their internals.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol, cast

import httptools

from warmwhisk_protocol.forwarding import ACTION_HEADER, TOKEN_HEADER, Forwarding

Response = tuple[int, bytes]
Respond = Callable[[Response], None]

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_STATUS_LINES = {status: f"HTTP/1.1 {status} {reason}\r\n".encode() for status, reason in _REASONS.items()}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Bodies up to this size go out in one write together with the head; larger ones are not copied.
_JOIN_LIMIT = 64 * 1024
# An oversized body is still read (and dropped) up to this many bytes, so that the client gets
# the 413 instead of a connection reset in the middle of its upload.
DRAIN_LIMIT = 256 * 1024 * 1024
# Complete requests a client may have pipelined before the connection stops being read.
MAX_QUEUED = 8

_ACTION = ACTION_HEADER.lower().encode()
_TOKEN = TOKEN_HEADER.lower().encode()
_KEPT_HEADERS = frozenset({_ACTION, _TOKEN, b"content-length", b"expect"})


@dataclass(frozen=True)
class Limits:
    """What one connection may take (`RuntimeConfig`'s fields of the same names)."""

    max_body_bytes: int
    keepalive_s: float
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int


@dataclass(frozen=True)
class Request:
    method: bytes
    path: bytes
    body: bytes
    forwarding: Forwarding | None  # a router's headers (host mode)


class Handler(Protocol):
    """What serves the requests (`app.ActionApp`): answers each exactly once, on the loop."""

    def handle(self, request: Request, respond: Respond) -> None: ...

    def error(self, status: int, message: str) -> Response: ...


class _Date:
    """The Date header, formatted at most once a second."""

    second = -1
    header = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.header = second, f"Date: {formatdate(second, usegmt=True)}\r\n".encode()
        return cls.header


def encode_response(status: int, body: bytes, close: bool) -> list[bytes]:
    """The bytes of one answer (JSON, with its length; `close` adds Connection: close)."""
    head = b"".join(
        (
            _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Error\r\n".encode(),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            _Date.now(),
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        )
    )
    if len(body) <= _JOIN_LIMIT:
        return [head + body]
    return [head, body]


# Where a connection's incoming request is.
_IDLE, _HEADERS, _BODY = 0, 1, 2


class HttpConnection(asyncio.Protocol):
    """One client connection. Its requests are answered in order; one is handled at a time."""

    def __init__(self, server: ActionServer) -> None:
        self._server = server
        self._handler = server.handler
        self._limits = server.limits
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # The request being parsed.
        self._phase = _IDLE
        self._since = time.monotonic()  # when the current phase (idle, headers, body) began
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._refused = False  # answered already (413): the rest of its body is read and dropped
        # Requests parsed and not yet answered: a Request to handle, or an answer already decided.
        self._queue: deque[tuple[Request | Response, bool]] = deque()
        self._busy = False  # a request is with the handler
        self._closing = False  # no request after those owed: close once their answers went out
        self._broken = False  # the stream could not be parsed: nothing more is read
        self._dispatching = False
        self._reading = True
        self._writable = True

    # -------------------------------------------------------------------------- connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if len(self._server.connections) >= self._limits.max_connections:
            stream.abort()
            return
        self._transport = stream
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.connections.discard(self)
        self._queue.clear()  # what is with the handler finishes, and its answer is dropped

    def eof_received(self) -> bool:
        # The client sends no more; answers still owed go out first (a half-closed client).
        self._closing = True
        self._close_if_done()
        return self.owes_answers

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._next()

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request is answered as any other; what follows it is not HTTP/1.1: close after.
            self._broken = self._closing = True
        except httptools.HttpParserError as exc:
            what = "body" if self._phase == _BODY else "request"
            self._fail(400, f"The request {what} could not be read: {exc}")
        self._next()

    # ------------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._phase, self._since = _HEADERS, time.monotonic()
        self._url, self._headers, self._body, self._size, self._refused = b"", {}, [], 0, False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT_HEADERS:
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        self._phase, self._since = _BODY, time.monotonic()
        declared = self._headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self._limits.max_body_bytes:
            self._refuse_body()
        elif self._headers.get(b"expect", b"").lower() == b"100-continue" and self._nothing_owed():
            self._write([_CONTINUE])

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._refused:
            if self._size > DRAIN_LIMIT:
                self._abort()
            return
        if self._size > self._limits.max_body_bytes:  # chunked (or lying) past the limit
            self._body = []
            self._refuse_body()
            return
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._phase, self._since = _IDLE, time.monotonic()
        if self._refused or self._closing:
            self._close_if_done()
            return
        keep_alive = self._parser.should_keep_alive()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        headers = self._headers
        action, token = headers.get(_ACTION), headers.get(_TOKEN)
        forwarding = None
        if action is not None or token is not None:
            forwarding = Forwarding(
                None if action is None else action.decode("latin-1"),
                None if token is None else token.decode("latin-1"),
            )
        path = self._url.partition(b"?")[0]
        if not path.startswith(b"/"):  # absolute form (a proxy's): keep its path
            path = httptools.parse_url(self._url).path or b"/"
        self._queue.append((Request(self._parser.get_method(), path, body, forwarding), keep_alive))
        if len(self._queue) > MAX_QUEUED and self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    # ---------------------------------------------------------------------------- answering
    def _next(self) -> None:
        """Hand the next queued request to the handler, unless one is there already."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._queue and not self._busy and self._writable and self._transport is not None:
                item, keep_alive = self._queue.popleft()
                self._busy = True
                if isinstance(item, Request):
                    self._handler.handle(item, self._responder(keep_alive))
                else:
                    self._answer(item, False)
            if not self._reading and len(self._queue) <= MAX_QUEUED and self._transport is not None:
                self._reading = True
                self._transport.resume_reading()
        finally:
            self._dispatching = False

    def _responder(self, keep_alive: bool) -> Respond:
        answered = False

        def respond(response: Response) -> None:
            nonlocal answered
            if not answered:
                answered = True
                self._answer(response, keep_alive)

        return respond

    def _answer(self, response: Response, keep_alive: bool) -> None:
        self._busy = False
        if self._transport is None:
            return
        if not keep_alive:
            self._closing = True
        close = self._closing and not self._queue
        self._write(encode_response(response[0], response[1], close))
        if close:
            self._close_if_done()
            return
        if self.idle:
            self._since = time.monotonic()
        self._next()

    def _write(self, parts: list[bytes]) -> None:
        if self._transport is not None:
            if len(parts) == 1:
                self._transport.write(parts[0])
            else:
                self._transport.writelines(parts)

    def _nothing_owed(self) -> bool:
        """No answer to an earlier request is still owed (a 100 or a 408 may go out now)."""
        return not self._busy and not self._queue

    def _refuse_body(self) -> None:
        """413 for the request being read, as soon as it is its turn; the rest of its body is
        read and dropped (so that the client reads the answer), then the connection closes."""
        self._refused = True
        self._closing = True
        message = f"The request body is larger than {self._limits.max_body_bytes} bytes."
        self._queue.append((self._handler.error(413, message), False))

    def _fail(self, status: int, message: str) -> None:
        """The stream cannot be parsed any further: answer (after what is owed) and close."""
        self._broken, self._closing, self._phase = True, True, _IDLE
        if self._refused:  # answered already (413): nothing more to say
            self._close_if_done()
            return
        self._queue.append((self._handler.error(status, message), False))

    def _close_if_done(self) -> None:
        """Once closing: close after the answers owed went out and no refused body is still
        being dropped (its client then reads the 413 instead of a reset)."""
        if not self._closing or self.owes_answers or self._transport is None:
            return
        if self._refused and self._phase == _BODY:
            return
        self._transport.close()  # after what is written went out

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ---------------------------------------------------------------------------- time-outs
    def check(self, now: float) -> None:
        """Close this connection if its client took too long (called once a second)."""
        limits = self._limits
        if self._phase == _HEADERS and now - self._since > limits.header_timeout_s:
            self._too_slow(f"its headers took longer than {limits.header_timeout_s:g} s")
        elif self._phase == _BODY and now - self._since > limits.body_timeout_s:
            self._too_slow(f"its body took longer than {limits.body_timeout_s:g} s")
        elif self.idle and now - self._since > limits.keepalive_s:
            self._abort()

    def _too_slow(self, why: str) -> None:
        """408 (unless answers are owed first, or it was answered already), then close."""
        if self._refused or not self._nothing_owed():
            self._abort()
            return
        self._broken, self._closing, self._phase = True, True, _IDLE
        self._write(encode_response(*self._handler.error(408, f"The request timed out: {why}."), close=True))
        self._close_if_done()

    @property
    def idle(self) -> bool:
        """No request being read, queued or handled."""
        return self._phase == _IDLE and not self.owes_answers

    @property
    def owes_answers(self) -> bool:
        return self._busy or bool(self._queue)

    def close_when_done(self) -> None:
        """Graceful stop: close now if idle, else after the answers owed."""
        self._closing = True
        if self._phase == _IDLE:
            self._close_if_done()


class ActionServer:
    """The action port of one worker: its handler, limits and open connections."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.connections: set[HttpConnection] = set()

    def protocol(self) -> HttpConnection:
        """The protocol factory for `loop.create_server`."""
        return HttpConnection(self)

    def sweep(self, now: float | None = None) -> None:
        """Enforce the idle, header and body time-outs (once a second)."""
        now = time.monotonic() if now is None else now
        for connection in list(self.connections):
            connection.check(now)

    def close_when_done(self) -> None:
        for connection in list(self.connections):
            connection.close_when_done()

    @property
    def owing(self) -> int:
        """Connections that still owe an answer."""
        return sum(1 for connection in self.connections if connection.owes_answers)
