"""The WSGI application on the action port: POST /init and POST /run, nothing else.

It only moves bytes between HTTP and `Runtime`; every response is JSON with a Content-Length
(the invoker treats a response of unknown length as no response at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from warmwhisk_protocol.forwarding import Forwarding

from .contract import BAD_REQUEST, PAYLOAD_TOO_LARGE
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
}


class BodyTooLarge(Exception):
    pass


# An oversized body is still read (and dropped) up to this many bytes, so that the client gets
# the 413 instead of a connection reset in the middle of its upload.
DRAIN_LIMIT = 256 * 1024 * 1024


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes (declared or streamed)."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    length = int(declared) if declared and declared.isdigit() else -1
    if 0 <= length <= limit:
        return stream.read(length)
    data = stream.read(limit + 1)  # chunked, unknown or too large
    if len(data) > limit:
        _drain(stream)
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

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, body = self._dispatch(environ)
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
        except (OSError, ValueError) as exc:
            return error_response(BAD_REQUEST, f"The request body could not be read: {exc}")
        return handler(raw, environ)
