"""The WSGI application on the action port: POST /init and POST /run, nothing else.

It only moves bytes between HTTP and `Runtime`; every response is JSON with a Content-Length
(the invoker treats a response of unknown length as no response at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .contract import BAD_REQUEST, PAYLOAD_TOO_LARGE
from .runtime import Response, Runtime, _error

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


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes (declared or streamed)."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length > limit:
            raise BodyTooLarge
        if length >= 0:
            return stream.read(length)
    data = stream.read(limit + 1)  # chunked or unknown length
    if len(data) > limit:
        raise BodyTooLarge
    return data


class ActionApp:
    def __init__(self, runtime: Runtime, max_body_bytes: int) -> None:
        self._routes: dict[str, Callable[[bytes], Response]] = {"/init": runtime.init, "/run": runtime.run}
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
            return _error(404, "Not found: the action container serves POST /init and POST /run.")
        if environ.get("REQUEST_METHOD") != "POST":
            return _error(405, f"{environ.get('PATH_INFO')} accepts POST only.")
        try:
            raw = read_body(environ, self._max_body)
        except BodyTooLarge:
            return _error(PAYLOAD_TOO_LARGE, f"The request body is larger than {self._max_body} bytes.")
        except (OSError, ValueError) as exc:
            return _error(BAD_REQUEST, f"The request body could not be read: {exc}")
        return handler(raw)
