"""Hostile bodies on /init and /run always get a JSON answer with a Content-Length, never the
server's HTML 500: JSON nested too deeply, invalid UTF-8, huge numbers, chunked bodies over the
limit or with broken framing. A hypothesis property test sends arbitrary bodies to live runtimes.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_harness import ProcessRuntime
from test_runtime_protocol import EchoHandler, RecordingTransport, connect
from warmwhisk_runtime.app import ActionApp
from warmwhisk_runtime.contract import BAD_REQUEST, ContractError, parse_json_object, run_fields
from warmwhisk_runtime.isolation import LogSink
from warmwhisk_runtime.protocol import Request, encode_response
from warmwhisk_runtime.runner import DeadlineRunner

ECHO = "def main(args):\n    return args\n"
LIMIT = 1024 * 1024
DEEP = b"[" * 100_000


# ------------------------------------------------------------------------------------- unit
@pytest.mark.parametrize("raw", [DEEP, DEEP + b"]" * 100_000, b'{"value": ' + b'{"a": ' * 50_000])
def test_json_nested_too_deeply_is_a_contract_error(raw):
    with pytest.raises(ContractError) as caught:
        parse_json_object(raw, "/run")
    assert caught.value.status == BAD_REQUEST and "nested too deeply" in caught.value.message


def test_a_context_value_nested_too_deeply_to_stringify_is_a_contract_error():
    nested: Any = []
    for _ in range(5_000):
        nested = [nested]
    with pytest.raises(ContractError) as caught:
        run_fields({"value": {}, "deep": nested})
    assert caught.value.status == BAD_REQUEST and "nested too deeply" in caught.value.message


def _connection(limit: int) -> tuple[Any, RecordingTransport, EchoHandler]:
    connection, transport, handler, _ = connect(limit=limit)
    return connection, transport, handler


def _chunked(body: bytes) -> bytes:
    head = b"POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


def test_the_connection_refuses_a_chunked_body_over_the_limit_and_unreadable_framing():
    # No Content-Length: chunked. Read up to the limit, never all of it.
    connection, transport, handler = _connection(limit=10)
    connection.data_received(_chunked(b"x" * 10))
    assert [r.body for r in handler.requests] == [b"x" * 10] and transport.written.startswith(
        b"HTTP/1.1 200 "
    )
    connection, transport, handler = _connection(limit=10)
    connection.data_received(_chunked(b"x" * 11))
    assert handler.requests == [] and transport.written.startswith(b"HTTP/1.1 413 ") and transport.closed
    assert b"larger than 10 bytes" in transport.written

    connection, transport, handler = _connection(limit=10)
    connection.data_received(b"POST /run HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and transport.closed and handler.requests == []
    assert f"Content-Length: {len(body)}".encode() in head
    assert "could not be read" in json.loads(body)["error"]


class _BuggyRuntime:
    """A runtime whose /init fails in a way nothing anticipated."""

    def __init__(self) -> None:
        self.sink = LogSink(io.StringIO(), io.StringIO())
        self.slot_freed = None

    def init(self, raw: bytes) -> Any:
        raise RuntimeError("a bug")


def test_a_fault_in_the_app_is_a_json_500_with_a_length_not_an_html_page():
    runtime = _BuggyRuntime()
    app = ActionApp(runtime, DeadlineRunner())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        app.bind(loop)
        answered: asyncio.Future = loop.create_future()
        request = Request(b"POST", b"/init", b"{}", None)
        app.handle(request, lambda response: answered.done() or answered.set_result(response))
        status, body = loop.run_until_complete(asyncio.wait_for(answered, 10))
    finally:
        loop.close()
    assert status == 500 and "a bug" in json.loads(body)["error"]
    assert "Traceback" in runtime.sink.stderr.getvalue()  # type: ignore[attr-defined]
    head = encode_response(status, body, close=False)[0].partition(b"\r\n\r\n")[0]
    assert b"application/json" in head and f"Content-Length: {len(body)}".encode() in head


# ------------------------------------------------------------------------------- a live runtime
# These module-wide runtimes are not the conftest fixtures that mark a test slow: mark them here.
live = pytest.mark.slow


@pytest.fixture(scope="module")
def echo_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRuntime]:
    """An initialized runtime (an echo action) with a 1 MiB body limit, for a whole module."""
    runtime = ProcessRuntime(tmp_path_factory.mktemp("echo"), env={"WARMWHISK_MAX_BODY_BYTES": str(LIMIT)})
    runtime.wait_ready()
    assert runtime.init(ECHO)[0] == 200
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def fresh_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRuntime]:
    """A runtime that has not been initialized (hostile /init bodies may initialize it)."""
    runtime = ProcessRuntime(tmp_path_factory.mktemp("fresh"), env={"WARMWHISK_MAX_BODY_BYTES": str(LIMIT)})
    runtime.wait_ready()
    yield runtime
    runtime.stop()


def _post(runtime: ProcessRuntime, path: str, body: bytes, chunked: bool = False) -> requests.Response:
    """POST raw bytes; `chunked` sends them with Transfer-Encoding: chunked (no Content-Length)."""
    data: Any = iter([body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]) if chunked else body
    return requests.post(runtime.url + path, data=data, timeout=60)


def _json_answer(response: requests.Response) -> dict[str, Any]:
    assert response.headers.get("Content-Type") == "application/json", response.text[:200]
    assert response.headers.get("Content-Length") == str(len(response.content))
    # The echo of a value nested as deep as the runtime takes is deeper than this test's stack allows.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 2000)
    try:
        body = json.loads(response.content)
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(body, (dict, list))
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_deeply_nested_json_gets_400_and_consumes_no_init(start_process_runtime, chunked):
    runtime = start_process_runtime()
    response = _post(runtime, "/init", DEEP, chunked)
    assert response.status_code == 400 and "nested too deeply" in _json_answer(response)["error"]
    assert runtime.health()["initialized"] is False
    assert runtime.init(ECHO)[0] == 200
    response = _post(runtime, "/run", DEEP, chunked)
    assert response.status_code == 400 and "nested too deeply" in _json_answer(response)["error"]


@live
def test_nesting_around_the_recursion_limit_never_gives_a_500(echo_runtime):
    # Just below the limit parsing succeeds and stringifying the context value may not; either
    # way the answer is 200 or 400, in JSON.
    for depth in range(900, 1001, 4):
        nested = b"[" * depth + b"]" * depth
        for body in (b'{"value": {}, "x": ' + nested + b"}", b'{"value": {"x": ' + nested + b"}}"):
            response = _post(echo_runtime, "/run", body)
            assert response.status_code in (200, 400), (depth, response.text[:200])
            _json_answer(response)


def test_a_result_nested_too_deeply_is_an_application_error(start_process_runtime):
    runtime = start_process_runtime()
    source = (
        "def main(args):\n    r = []\n    for _ in range(100_000):\n        r = [r]\n    return {'r': r}\n"
    )
    assert runtime.init(source)[0] == 200
    status, body = runtime.run({})
    assert status == 200 and "not valid JSON" in body["error"]


@live
def test_a_chunked_body_over_the_limit_gets_413_and_one_within_it_runs(echo_runtime):
    response = _post(echo_runtime, "/run", b'{"value": {"x": "' + b"y" * (2 * LIMIT) + b'"}}', chunked=True)
    assert response.status_code == 413 and f"larger than {LIMIT} bytes" in _json_answer(response)["error"]
    response = _post(echo_runtime, "/run", b'{"value": {"small": 1}}', chunked=True)
    assert (response.status_code, _json_answer(response)) == (200, {"small": 1})


@live
@pytest.mark.parametrize(
    "chunks", [b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n"], ids=["bad-size", "short-chunk"]
)
def test_broken_chunk_framing_gets_a_json_400(echo_runtime, chunks):
    head = b"POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    port = int(echo_runtime.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + chunks)
        answer = b""
        while chunk := connection.recv(65536):  # the server closes: the stream is unusable
            answer += chunk
    head_lines, _, body = answer.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 400 ")
    assert b"application/json" in head_lines and f"Content-Length: {len(body)}".encode() in head_lines
    assert "could not be read" in json.loads(body)["error"]
    assert echo_runtime.run({"still": "up"}) == (200, {"still": "up"})


# --------------------------------------------------------------------------- property: any body
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(["value", "code", "main", "binary", "env", "name", "deadline", "activation_id"])


def _nested(depth: int, closed: bool) -> bytes:
    return b"[" * depth + (b"]" * depth if closed else b"")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# Just below and above the depth the parser, and then the stringifier of context and env
# values (/run's other keys, /init's env), can take.
near_the_limit = st.builds(
    lambda template, depth: template.replace(b"NESTED", _nested(depth, True)),
    st.sampled_from(
        [b'{"value": {"x": NESTED}}', b'{"value": {}, "x": NESTED}', b'{"value": {"env": {"A": NESTED}}}']
    ),
    st.integers(800, 1100),
)
huge_numbers = st.from_regex(r"-?[1-9][0-9]{0,6000}(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
bodies = st.one_of(
    st.binary(max_size=300),  # anything at all: mostly invalid UTF-8, not JSON
    json_values.map(_json),
    st.dictionaries(keys | st.text(max_size=6), json_values, max_size=5).map(_json),
    st.dictionaries(keys, json_values).map(lambda init: _json({"value": init})),
    st.builds(_nested, st.integers(1, 200_000), st.booleans()),  # deep, balanced or not
    near_the_limit,
    huge_numbers.map(lambda digits: b'{"value": {"n": ' + digits.encode() + b"}}"),
    st.binary(max_size=40).map(lambda raw: b'{"value": {"s": "' + raw + b'"}}'),  # bad UTF-8, escapes
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@live
@PROPERTY
@given(body=bodies, path=st.sampled_from(["/init", "/run"]), chunked=st.booleans())
def test_any_body_gets_a_json_answer_and_no_5xx_outside_the_contract(
    echo_runtime, fresh_runtime, body, path, chunked
):
    runtime = fresh_runtime if path == "/init" else echo_runtime
    response = _post(runtime, path, body, chunked)
    answer = _json_answer(response)
    status = response.status_code
    if status >= 500:
        # The contract's own: a failed /init, or a /run result that is not an object or array
        # (the echo action never returns one), and 503 only from a runtime gone unhealthy.
        if status == 503:
            assert runtime.health()["status"] == "unhealthy"
        else:
            assert (path, status) == ("/init", 502), (status, answer)
    else:
        assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
