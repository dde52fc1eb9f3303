"""The WSGI application on the action port: POST /init and POST /run, nothing else.

It only moves bytes between HTTP and `Runtime`; every response is JSON with a Content-Length
(the invoker treats a response of unknown length as no response at all), also when the body
cannot be read or something here fails: never the server's own HTML error page.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import Any

from warmwhisk_protocol.forwarding import Forwarding

from .contract import BAD_REQUEST, INTERNAL_ERROR, PAYLOAD_TOO_LARGE
from .runtime import Response, Runtime, error_response

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class BodyTooLarge(Exception):
    pass


class BodyUnreadable(Exception):
    """The body broke off or its framing is invalid (a bad chunk size, a missing terminator).
    The server closes such a connection after the answer: where the next request starts is unknown."""


# An oversized body is still read (and dropped) up to this many bytes, so that the client gets
# the 413 instead of a connection reset in the middle of its upload.
DRAIN_LIMIT = 256 * 1024 * 1024


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes (declared or streamed: a chunked
    body is read only up to the limit)."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    length = int(declared) if declared and declared.isdigit() else -1
    try:
        if 0 <= length <= limit:
            return stream.read(length)
        data = stream.read(limit + 1)  # chunked, unknown or too large
        if len(data) > limit:
            _drain(stream)
    except Exception as exc:  # gunicorn's parse errors (bad chunk framing) are not OSErrors
        raise BodyUnreadable(str(exc) or type(exc).__name__) from exc
    if len(data) > limit:
        raise BodyTooLarge
    return data


def _drain(stream: Any) -> None:
    left = DRAIN_LIMIT
    while left > 0:
        chunk = stream.read(min(left, 1024 * 1024))
        if not chunk:
            return
        left -= len(chunk)


class ActionApp:
    def __init__(self, runtime: Runtime, max_body_bytes: int) -> None:
        self._routes: dict[str, Callable[[bytes, dict[str, Any]], Response]] = {
            "/init": lambda raw, _environ: runtime.init(raw),
            # A model host learns which action a forwarded run is for, and the router's proof that
            # it may ask, from headers.
            "/run": lambda raw, environ: runtime.run(raw, Forwarding.from_wsgi(environ)),
        }
        self._max_body = max_body_bytes
        self._runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body = self._dispatch(environ)
        except Exception as exc:  # noqa: BLE001 - a fault of ours still answers JSON, not HTML
            self._runtime.sink.write_direct("stderr", traceback.format_exc())
            status, body = error_response(
                INTERNAL_ERROR, f"warmwhisk runtime: internal error: {type(exc).__name__}: {exc}"
            )
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _dispatch(self, environ: dict[str, Any]) -> Response:
        handler = self._routes.get(environ.get("PATH_INFO", ""))
        if handler is None:
            return error_response(404, "Not found: the action container serves POST /init and POST /run.")
        if environ.get("REQUEST_METHOD") != "POST":
            return error_response(405, f"{environ.get('PATH_INFO')} accepts POST only.")
        try:
            raw = read_body(environ, self._max_body)
        except BodyTooLarge:
            return error_response(
                PAYLOAD_TOO_LARGE, f"The request body is larger than {self._max_body} bytes."
            )
        except BodyUnreadable as exc:
            return error_response(BAD_REQUEST, f"The request body could not be read: {exc}")
        return handler(raw, environ)
