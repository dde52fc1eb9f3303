"""HTTP/1.1 on the action port (`protocol.HttpConnection`), driven byte by byte with a recording
transport: keep-alive, pipelining in order, Expect: 100-continue, early 413, parse errors as
JSON, the idle, header and body time-outs, the connection cap, a router's headers."""

from __future__ import annotations

import json
from typing import Any

from warmwhisk_runtime.protocol import ActionServer, HttpConnection, Limits, Request

RUN = b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"


class RecordingTransport:
    """What an HttpConnection writes, and whether it closed (an asyncio transport's surface)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def answers(self) -> list[tuple[int, dict[str, str], bytes]]:
        """The answers written so far: (status, headers, body)."""
        out, data = [], bytes(self.written)
        while data:
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            length = int(headers.get("Content-Length", "0"))
            out.append((int(lines[0].split()[1]), headers, data[:length]))
            data = data[length:]
        return out


class EchoHandler:
    """Answers each request with its body at once, or holds its responder (`hold`)."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.requests: list[Request] = []
        self.held: list[Any] = []

    def handle(self, request: Request, respond: Any) -> None:
        self.requests.append(request)
        if self.hold:
            self.held.append(respond)
        else:
            respond((200, request.body))

    def error(self, status: int, message: str) -> tuple[int, bytes]:
        return status, json.dumps({"error": message}).encode()


def connect(
    handler: EchoHandler | None = None, limit: int = 1024, max_connections: int = 100
) -> tuple[HttpConnection, RecordingTransport, EchoHandler, ActionServer]:
    handler = handler or EchoHandler()
    server = ActionServer(handler, Limits(limit, 75.0, 10.0, 60.0, max_connections))
    connection, transport = server.protocol(), RecordingTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport, handler, server


def run(body: bytes) -> bytes:
    return RUN % (len(body), body)


def test_keep_alive_answers_each_request_on_one_connection_until_the_client_says_close():
    connection, transport, _, _ = connect()
    connection.data_received(run(b'{"a": 1}'))
    connection.data_received(run(b'{"b": 2}'))
    assert [a[2] for a in transport.answers()] == [b'{"a": 1}', b'{"b": 2}'] and not transport.closed
    headers = transport.answers()[0][1]
    assert headers["Content-Type"] == "application/json" and "Date" in headers and "Connection" not in headers
    connection.data_received(b"POST /run HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    assert transport.answers()[-1][1]["Connection"] == "close" and transport.closed


def test_pipelined_requests_are_handled_one_at_a_time_and_answered_in_order():
    connection, transport, handler, _ = connect(EchoHandler(hold=True))
    connection.data_received(run(b"1") + run(b"2") + run(b"3"))
    assert [r.body for r in handler.requests] == [b"1"]  # the next waits for this answer
    handler.held[0]((200, b"one"))
    assert [r.body for r in handler.requests] == [b"1", b"2"]
    handler.held[1]((200, b"two"))
    handler.held[1]((200, b"again"))  # a second answer to one request is dropped
    handler.held[2]((200, b"three"))
    assert [a[2] for a in transport.answers()] == [b"one", b"two", b"three"]


def test_a_client_pipelining_too_much_is_not_read_until_answers_go_out():
    connection, transport, handler, _ = connect(EchoHandler(hold=True))
    connection.data_received(b"".join(run(b"%d" % i) for i in range(12)))
    assert transport.paused and len(handler.requests) == 1
    for i in range(12):
        handler.held[i]((200, b"ok"))
    assert not transport.paused and len(transport.answers()) == 12


def test_expect_100_continue_is_answered_before_the_body_and_never_past_the_limit():
    connection, transport, handler, _ = connect(limit=10)
    connection.data_received(b"POST /run HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert bytes(transport.written) == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.data_received(b"{}")
    assert handler.requests[0].body == b"{}"

    connection, transport, handler, _ = connect(limit=10)
    connection.data_received(b"POST /run HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
    ((status, headers, body),) = transport.answers()
    assert status == 413 and "larger than 10 bytes" in json.loads(body)["error"]
    assert headers["Connection"] == "close" and not transport.closed  # the client may still send


def test_a_declared_length_over_the_limit_gets_413_at_once_and_the_body_is_dropped():
    connection, transport, handler, _ = connect(limit=10)
    connection.data_received(b"POST /run HTTP/1.1\r\nContent-Length: 30\r\n\r\n" + b"x" * 10)
    assert transport.answers()[0][0] == 413 and not transport.closed  # answered before the body ended
    connection.data_received(b"x" * 20 + run(b"{}"))  # the rest, then a request it never handles
    assert transport.closed and handler.requests == [] and len(transport.answers()) == 1


def test_an_unparseable_request_gets_a_json_400_and_the_connection_closes():
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"POST /run HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
        connection, transport, handler, _ = connect()
        connection.data_received(garbage)
        ((status, headers, body),) = transport.answers()
        assert status == 400 and "could not be read" in json.loads(body)["error"]
        assert headers["Content-Length"] == str(len(body)) and transport.closed and handler.requests == []


def test_an_upgrade_request_is_answered_as_http_and_the_connection_closes():
    connection, transport, handler, _ = connect()
    connection.data_received(
        b"GET /run HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05"
    )
    ((status, headers, _),) = transport.answers()
    assert status == 200 and headers["Connection"] == "close" and transport.closed
    assert [r.method for r in handler.requests] == [b"GET"]


def test_a_parse_error_after_a_pipelined_request_is_answered_after_it():
    connection, transport, handler, _ = connect(EchoHandler(hold=True))
    connection.data_received(run(b"first") + b"BROKEN\r\n\r\n")
    handler.held[0]((200, b"first"))
    assert [a[0] for a in transport.answers()] == [200, 400] and transport.closed


def test_the_header_body_and_idle_time_outs(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("warmwhisk_runtime.protocol.time.monotonic", lambda: clock[0])

    connection, transport, _, _ = connect()
    connection.data_received(b"POST /run HTTP/1.1\r\nHost:")  # headers begun, never ended
    clock[0] += 9.0
    connection.check(clock[0])
    assert not transport.closed
    clock[0] += 2.0
    connection.check(clock[0])
    ((status, _, body),) = transport.answers()
    assert status == 408 and "headers took longer than 10 s" in json.loads(body)["error"] and transport.closed

    connection, transport, _, _ = connect()
    connection.data_received(b"POST /run HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")  # body begun
    clock[0] += 61.0
    connection.check(clock[0])
    assert transport.answers()[0][0] == 408 and transport.closed

    connection, transport, _, _ = connect()
    connection.data_received(run(b"{}"))  # answered: now idle
    clock[0] += 76.0
    connection.check(clock[0])
    assert transport.closed and len(transport.answers()) == 1  # closed without a word


def test_a_request_with_the_handler_is_not_timed_out(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("warmwhisk_runtime.protocol.time.monotonic", lambda: clock[0])
    connection, transport, handler, server = connect(EchoHandler(hold=True))
    connection.data_received(run(b"{}"))
    clock[0] += 1000.0
    server.sweep(clock[0])  # a long activation: not idle
    assert not transport.closed and server.owing == 1
    handler.held[0]((200, b"{}"))
    assert transport.answers()[0][0] == 200 and server.owing == 0


def test_connections_past_the_cap_are_closed_at_once():
    _, first, _, server = connect(max_connections=1)
    second = RecordingTransport()
    server.protocol().connection_made(second)  # type: ignore[arg-type]
    assert second.closed and not first.closed and len(server.connections) == 1


def test_a_routers_headers_reach_the_handler_and_other_headers_do_not():
    connection, _, handler, _ = connect()
    connection.data_received(
        b"POST /run?x=1 HTTP/1.1\r\nX-Warmwhisk-Action: /guest/a@d\r\nx-warmwhisk-host-token: t0k\r\n"
        b"X-Other: y\r\nContent-Length: 2\r\n\r\n{}"
    )
    ((request),) = handler.requests
    assert (request.method, request.path, request.body) == (b"POST", b"/run", b"{}")
    assert (request.forwarding.action_key, request.forwarding.token) == ("/guest/a@d", "t0k")  # type: ignore[union-attr]
    connection.data_received(run(b"{}"))
    assert handler.requests[1].forwarding is None


def test_a_half_closed_client_still_gets_its_answer():
    connection, transport, handler, _ = connect(EchoHandler(hold=True))
    connection.data_received(run(b"{}"))
    assert connection.eof_received() is True  # keep the transport open to write the answer
    handler.held[0]((200, b"{}"))
    assert transport.answers()[0][0] == 200 and transport.closed


def test_a_graceful_stop_closes_idle_connections_now_and_busy_ones_after_their_answer():
    _, idle, handler, server = connect(EchoHandler(hold=True))
    busy_connection, busy = server.protocol(), RecordingTransport()
    busy_connection.connection_made(busy)  # type: ignore[arg-type]
    busy_connection.data_received(run(b"{}"))
    server.close_when_done()
    assert idle.closed and not busy.closed
    handler.held[0]((200, b"{}"))
    assert busy.answers()[0][1]["Connection"] == "close" and busy.closed
