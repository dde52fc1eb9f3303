"""The API answers JSON, with a 2xx or 4xx status, whatever it is sent: bodies over 64 KiB (with a
Content-Length or chunked), JSON nested too deep, bytes that are not UTF-8, any content type, any
path and query string. Through Flask's test client (with hypothesis) and through the real
`warmwhisk-scaler` process, whose gunicorn reads bodies differently from the test client."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_harness import free_loopback_port
from scaler_harness import (
    ACTION,
    AUTH,
    finish,
    scaler_process,
    served_scaler,
    stop,
    wait_healthy,
)
from warmwhisk_scaler.api import MAX_BODY_BYTES, MAX_JSON_DEPTH, create_app
from warmwhisk_scaler.service import Service

CONFIG = f"/pools/{ACTION}/config"
TOO_DEEP = f"nested at most {MAX_JSON_DEPTH} levels deep"
# Nested beyond what json.loads can parse (RecursionError), and under 64 KiB.
DEEP_LIST = b"[" * 60000
DEEP_OBJECT = b'{"a":' * 9000 + b"}" * 9000


@pytest.fixture
def service(redis_server, tmp_path: Path) -> Iterator[Service]:
    yield from served_scaler(redis_server.url, tmp_path / "hosts", 8)


@pytest.fixture
def client(service: Service) -> FlaskClient:
    return create_app(service).test_client()


def chunked(client: FlaskClient, method: str, path: str, body: bytes) -> Any:
    """A request whose body has no Content-Length, as a server that decodes chunked transfer
    encoding hands it on (``wsgi.input_terminated``, as gunicorn sets it)."""
    return client.open(
        path, method=method, headers={**AUTH, "Transfer-Encoding": "chunked"}, input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
    )  # fmt: skip


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON followed by spaces up to ``size`` bytes (still valid JSON)."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


def assert_json_answer(answer: Any, context: object = None) -> None:
    assert 200 <= answer.status_code < 500, (context, answer.status_code, answer.get_data()[:300])
    assert answer.is_json, (context, answer.status_code, answer.get_data()[:300])
    payload = answer.get_json()
    assert isinstance(payload, dict), context
    if answer.status_code >= 400:
        assert isinstance(payload.get("error"), str) and payload["error"], context


# -- size ---------------------------------------------------------------------------------------------


def test_bodies_over_64_kib_are_413_with_a_content_length_or_chunked(client):
    scale = {"pool": ACTION, "hosts": 1}
    for path, method, body in (("/scale", "POST", scale), (CONFIG, "PUT", {"manual_hosts": 1})):
        for size in (MAX_BODY_BYTES - 1, MAX_BODY_BYTES):
            for answer in (client.open(path, method=method, headers=AUTH, data=padded(body, size)),
                           chunked(client, method, path, padded(body, size))):  # fmt: skip
                assert answer.status_code == 200, (path, size, answer.get_json())
        for size in (MAX_BODY_BYTES + 1, MAX_BODY_BYTES + 2, 10 * MAX_BODY_BYTES):
            for answer in (client.open(path, method=method, headers=AUTH, data=padded(body, size)),
                           chunked(client, method, path, padded(body, size))):  # fmt: skip
                assert answer.status_code == 413 and answer.is_json, (path, size)
                assert answer.get_json() == {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"}
    # A long string used to be cut at 64 KiB and answered "Unterminated string".
    answer = chunked(client, "POST", "/scale", b'{"pool": "' + b"a" * (2 * MAX_BODY_BYTES) + b'"}')
    assert answer.status_code == 413


# -- nesting and encoding -------------------------------------------------------------------------------


def test_json_nested_too_deep_is_400_and_nesting_within_the_limit_is_parsed(client):
    def nested(depth: int) -> bytes:  # an object whose "knobs" holds depth - 1 levels of lists
        return b'{"knobs": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    for body in (nested(MAX_JSON_DEPTH + 1), nested(5000), DEEP_LIST, DEEP_OBJECT):
        assert len(body) <= MAX_BODY_BYTES
        for answer in (client.put(CONFIG, headers=AUTH, data=body), chunked(client, "PUT", CONFIG, body),
                       client.post("/scale", headers=AUTH, data=body)):  # fmt: skip
            assert answer.status_code == 400 and TOO_DEEP in answer.get_json()["error"], body[:20]
    # Within the limit the body is parsed; the knobs are then refused for what they are.
    answer = client.put(CONFIG, headers=AUTH, data=nested(MAX_JSON_DEPTH))
    assert answer.status_code == 400 and "knobs must be a JSON object" in answer.get_json()["error"]


def test_bodies_that_are_not_utf8_json_are_400(client):
    body = json.dumps({"pool": ACTION, "hosts": 1})
    for raw, message in (
        (body.encode("utf-16"), "in UTF-8"),  # json.loads alone would have guessed UTF-16
        (body.encode("utf-32"), "in UTF-8"),
        (b'{"pool": "\xff"}', "in UTF-8: invalid start byte at byte 10"),
        (b'{"pool": "\xed\xa0\x80"}', "in UTF-8"),  # an encoded surrogate
        ("\ufeff".encode() + body.encode(), "BOM"),
        (f'{{"pool": "{ACTION}", "hosts": 1e999999}}'.encode(), "hosts must be a whole number"),  # inf
        (b'{"hosts": ' + b"9" * 5000 + b"}", "the body must be a JSON object"),  # over int's digit limit
    ):
        answer = client.post("/scale", headers=AUTH, data=raw, content_type="application/json")
        assert answer.status_code in (400, 404) and message in answer.get_json()["error"], (
            raw[:30],
            answer.json,
        )


# -- properties -----------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
KNOB_NAMES = st.sampled_from(
    ["tick_s", "max_hosts", "min_hosts", "initial_limit", "max_limit", "keep_alive_s", "limit_step_factor",
     "container_concurrency", "target_ongoing_requests", "downscale_to_zero_delay_s", "max_scale_down_rate"]
) | st.text(max_size=12)  # fmt: skip
SCALE_BODIES = st.fixed_dictionaries(
    {"pool": st.just(ACTION) | JSON_VALUES, "hosts": JSON_VALUES},
    optional={"extra": JSON_VALUES},
)
CONFIG_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "policy": st.sampled_from(["hybrid", "kpa", "rayserve", "openwhisk"]) | JSON_VALUES,
        "knobs": st.dictionaries(KNOB_NAMES, JSON_VALUES, max_size=4) | JSON_VALUES,
        "manual_hosts": JSON_VALUES,
    },
)


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON text of ``values`` (NaN and Infinity included, as Python writes them), or any bytes."""
    return values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)


CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/json; charset=utf-16", ""]
) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)  # fmt: skip
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(body=encoded(SCALE_BODIES), content_type=CONTENT_TYPES, send_chunked=st.booleans())
def test_scale_answers_json_and_no_5xx_whatever_the_body(client, body, content_type, send_chunked):
    if send_chunked:
        answer = chunked(client, "POST", "/scale", body)
    else:
        answer = client.post("/scale", headers=AUTH, data=body, content_type=content_type)
    assert_json_answer(answer, body)


@PROPERTY
@given(body=encoded(CONFIG_BODIES), content_type=CONTENT_TYPES, send_chunked=st.booleans())
def test_pool_config_answers_json_and_no_5xx_whatever_the_body(client, body, content_type, send_chunked):
    if send_chunked:
        answer = chunked(client, "PUT", CONFIG, body)
    else:
        answer = client.put(CONFIG, headers=AUTH, data=body, content_type=content_type)
    assert_json_answer(answer, body)
    if answer.status_code == 200:  # whatever was accepted reads back the same
        assert client.get(CONFIG, headers=AUTH).get_json()["config"] == answer.get_json()["config"]


RAW = st.binary(max_size=60).map(lambda b: b.decode("latin-1"))  # a WSGI string: bytes as latin-1
PATHS = st.tuples(
    st.sampled_from(["/pools/", "/pools//", f"/pools/{ACTION}", "/decisions", "/status", "/hosts", "/actions",
                     "/scale", "/", "", "/healthz"]),
    RAW,
    st.sampled_from(["", "/config", "/config/", "%2Fconfig", "/%"]),
).map("".join)  # fmt: skip
QUERIES = RAW | st.sampled_from(["limit=", "limit=0", "limit=%00", "limit=1&limit=x", "limit=" + "9" * 5000])


@PROPERTY
@given(path=PATHS, query=QUERIES, method=st.sampled_from(["GET", "DELETE", "PATCH", "POST", "PUT"]))
def test_reads_of_any_path_and_query_answer_json_and_no_5xx(client, path, query, method):
    answer = client.open(
        "/",
        method=method,
        headers=AUTH,
        data=b"{}",
        environ_overrides={"PATH_INFO": path, "QUERY_STRING": query},
    )
    if path == "/metrics" and answer.status_code == 200:
        return  # Prometheus text, by design
    assert_json_answer(answer, (method, path, query))


# -- the real server --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_gunicorn_server_refuses_large_chunked_and_deep_bodies_with_json(redis_server, tmp_path):
    """gunicorn decodes chunked bodies itself and werkzeug then reads them without a length: a
    20 MB chunked body and JSON nested 60,000 deep must still be a JSON 413 and 400."""
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    process = scaler_process(redis_server.url, port, tmp_path / "hosts")
    try:
        wait_healthy(process, base)
        with requests.Session() as session:
            session.headers.update(AUTH)
            session.post(f"{base}/scale", json={"pool": "/guest/nothing@1", "hosts": 1}, timeout=10)

            def twenty_mb() -> Iterator[bytes]:  # a generator: requests sends it chunked
                yield b'{"pool": "'
                for _ in range(20):
                    yield b"a" * 1_000_000
                yield b'", "hosts": 1}'

            for method, path in (("POST", "/scale"), ("PUT", CONFIG)):
                answer = session.request(method, f"{base}{path}", data=twenty_mb(), timeout=60)
                assert answer.status_code == 413, answer.text[:300]
                assert answer.json() == {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"}
                answer = session.request(method, f"{base}{path}", data=b" " * 20_000_000, timeout=60)
                assert answer.status_code == 413 and answer.json()["error"], answer.text[:300]
                for body in (DEEP_LIST, DEEP_OBJECT):
                    for data in (body, iter([body])):  # with a Content-Length, then chunked
                        answer = session.request(method, f"{base}{path}", data=data, timeout=10)
                        assert answer.status_code == 400 and TOO_DEEP in answer.json()["error"], answer.text[
                            :300
                        ]
            # The connection and the worker are still fine afterwards.
            assert session.get(f"{base}/status", timeout=10).json()["max_hosts"] >= 1
        process.send_signal(signal.SIGTERM)
        returncode, err = finish(process)
        assert returncode == 0 and "Traceback" not in err, err
    finally:
        stop(process)
