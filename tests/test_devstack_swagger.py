"""`openwhisk_swagger.py`: the checker that holds the dev stack's answers to OpenWhisk's own swagger.

Each whitelist entry (`ALLOWANCES`) is needed: the verbatim swagger rejects a real answer of
OpenWhisk's code without it, and accepts it with it. Each schema of `BODIES` is stricter than the
swagger where it applies. And the checker finds what it must: a missing or mistyped field, a field
the swagger does not name, a status it does not list, 408 on invoke, a body that is not JSON or not
`application/json`, an error whose `code` is not its request id. No stack: answers are built here.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from openwhisk_swagger import (
    ACTION,
    ACTIONS,
    ACTIVATIONS,
    ALLOWANCES,
    BODIES,
    FIXTURE,
    Exchange,
    SwaggerChecker,
)
from warmwhisk_invoker_patch.manifest import ML_KIND

BASE = "/api/v1/namespaces/guest"
ACTIVATION_ID = "0123456789abcdef0123456789abcdef"
TID = "k3yTr4ns4ct10n1d0000000000000000"
LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
ACTION_DOC: dict[str, Any] = {
    "namespace": "guest", "name": "hello", "version": "0.0.1", "publish": False,
    "exec": {"kind": ML_KIND, "code": "def main(a): return a", "binary": False},
    "parameters": [], "limits": LIMITS,
    "annotations": [{"key": "provide-api-key", "value": False}, {"key": "exec", "value": ML_KIND}],
    "updated": 1796001089361,
}  # fmt: skip
RECORD: dict[str, Any] = {
    "namespace": "guest", "name": "hello", "subject": "guest", "activationId": ACTIVATION_ID,
    "start": 1796001089367, "end": 1796001091090, "duration": 1723,
    "response": {"result": {"ok": 1}, "size": 8, "success": True, "status": "success"},
    "logs": [], "version": "0.0.1", "publish": False,
    "annotations": [{"key": "path", "value": "guest/hello"}, {"key": "waitTime", "value": 0}],
}  # fmt: skip
SUMMARY: dict[str, Any] = {
    "namespace": "guest", "name": "hello", "version": "0.0.1", "publish": False, "annotations": [],
    "activationId": ACTIVATION_ID, "start": 1796001089367, "end": 1796001091090, "duration": 1723,
    "statusCode": 0,
}  # fmt: skip


def answer(
    method: str, path: str, status: int, body: Any = None, query: dict[str, str] | None = None, **headers: str
) -> Exchange:
    """An exchange as the stack answers it: JSON, `X-Request-ID`, error bodies carry it."""
    raw = b"" if body is None else json.dumps(body).encode()
    all_headers = {"content-type": "application/json", "x-request-id": TID, **headers}
    return Exchange(method, path, status, raw, all_headers, query or {})


def error(
    method: str, path: str, status: int, text: str = "x", query: dict[str, str] | None = None
) -> Exchange:
    return answer(method, path, status, {"error": text, "code": TID}, query)


@pytest.fixture(scope="module")
def checker() -> SwaggerChecker:
    return SwaggerChecker()


# -- the fixture ------------------------------------------------------------------------------------
def test_the_fixture_is_openwhisks_swagger(checker: SwaggerChecker) -> None:
    """Swagger 2.0 under /api/v1, with the operations the stack serves (SOURCES.md has its hash)."""
    assert checker.document["swagger"] == "2.0" and checker.base_path == "/api/v1"
    assert FIXTURE.name in (FIXTURE.parent / "SOURCES.md").read_text()
    for template, methods in {
        "/namespaces": {"get"}, ACTIONS: {"get"}, ACTION: {"get", "put", "delete", "post"},
        ACTIVATIONS: {"get"}, ACTIVATIONS + "/{activationid}": {"get"},
        ACTIVATIONS + "/{activationid}/logs": {"get"}, ACTIVATIONS + "/{activationid}/result": {"get"},
    }.items():  # fmt: skip
        assert methods <= set(checker.document["paths"][template])


def test_paths_map_to_templates(checker: SwaggerChecker) -> None:
    assert checker.template(f"{BASE}/actions") == ACTIONS
    assert checker.template("/api/v1/namespaces/_/actions/") == ACTIONS
    assert checker.template(f"{BASE}/actions/hello") == ACTION
    assert (
        checker.template(f"{BASE}/actions/pkg/hello")
        == "/namespaces/{namespace}/actions/{packageName}/{actionName}"
    )
    assert (
        checker.template(f"{BASE}/activations/{ACTIVATION_ID}/logs") == ACTIVATIONS + "/{activationid}/logs"
    )
    assert checker.template("/api/v1") is None and checker.template("/elsewhere") is None


# -- real answers pass ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exchange",
    [
        answer("GET", "/api/v1/namespaces", 200, ["guest"]),
        answer("GET", f"{BASE}/actions/hello", 200, ACTION_DOC),
        answer("PUT", f"{BASE}/actions/hello", 200, ACTION_DOC),
        answer("DELETE", f"{BASE}/actions/hello", 200, ACTION_DOC),
        answer("GET", f"{BASE}/actions", 200, [{k: v for k, v in ACTION_DOC.items() if k != "parameters"}
                                                | {"exec": {"binary": False}}]),
        answer("POST", f"{BASE}/actions/hello", 202, {"activationId": ACTIVATION_ID}),
        answer("POST", f"{BASE}/actions/hello", 200, RECORD, {"blocking": "true"}),
        answer("POST", f"{BASE}/actions/hello", 200, {"any": ["thing"]}, {"blocking": "yes", "result": "on"}),
        answer("POST", f"{BASE}/actions/hello", 200, [1, 2], {"blocking": "true"}),
        answer("GET", f"{BASE}/activations", 200, [SUMMARY]),
        answer("GET", f"{BASE}/activations", 200, [RECORD], {"docs": "true"}),
        answer("GET", f"{BASE}/activations", 200, {"activations": 3}, {"count": "1"}),
        answer("GET", f"{BASE}/actions", 200, {"actions": 0}, {"count": "true"}),
        answer("GET", f"{BASE}/activations/{ACTIVATION_ID}", 200, RECORD),
        answer("GET", f"{BASE}/activations/{ACTIVATION_ID}/result", 200, RECORD["response"]),
        answer("GET", f"{BASE}/activations/{ACTIVATION_ID}/logs", 200, {"logs": ["t stdout: x"]}),
        error("GET", f"{BASE}/actions/hello", 404),
        error("PUT", f"{BASE}/actions/hello", 409),
        error("POST", f"{BASE}/actions/hello", 401),
        error("POST", f"{BASE}/actions/hello", 429),
    ],
    ids=lambda e: f"{e.method} {e.path.removeprefix(BASE)} {e.status} {e.query}",
)  # fmt: skip
def test_real_answers_fit(checker: SwaggerChecker, exchange: Exchange) -> None:
    assert checker.check(exchange) == []


# -- every whitelist entry is needed -----------------------------------------------------------------------
# One real answer of OpenWhisk's code per entry, which the verbatim swagger rejects.
NEEDS: dict[str, Exchange] = {
    "kinds beyond the swagger's enum": answer("GET", f"{BASE}/actions/hello", 200, ACTION_DOC),
    "statusCode 3 in activation summaries": answer(
        "GET", f"{BASE}/activations", 200, [SUMMARY | {"statusCode": 3}]
    ),
    "init and encryption of parameters": answer(
        "GET", f"{BASE}/actions/hello", 200,
        ACTION_DOC | {"exec": {"kind": "nodejs:20", "code": "x", "binary": False},
                      "parameters": [{"key": "K", "value": "v", "init": True, "encryption": "aes-256"}]},
    ),
    "400 on every operation": error("GET", f"{BASE}/actions", 400, query={"limit": "201"}),
    "403 on lists and activations of another namespace": error(
        "GET", "/api/v1/namespaces/other/activations", 403
    ),
    "413 on invoke": error("POST", f"{BASE}/actions/hello", 413),
    "415 on a body that is not JSON": error("PUT", f"{BASE}/actions/hello", 415),
}  # fmt: skip


def test_every_allowance_has_its_case() -> None:
    assert set(NEEDS) == {a.name for a in ALLOWANCES}
    for allowance in ALLOWANCES:
        assert "." in allowance.why and "scala" in allowance.why.lower()  # a reason citing OpenWhisk


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_allowance_is_needed(checker: SwaggerChecker, name: str) -> None:
    exchange = NEEDS[name]
    assert checker.check(exchange) == []
    without = SwaggerChecker(allowances=tuple(a for a in ALLOWANCES if a.name != name))
    assert without.check(exchange) != []


def test_allowances_stay_narrow(checker: SwaggerChecker) -> None:
    """A kind outside the manifest, another status code, other extra fields still fail."""
    cobol = ACTION_DOC | {"exec": {"kind": "cobol:85", "code": "x", "binary": False}}
    assert [p.where for p in checker.check(answer("GET", f"{BASE}/actions/hello", 200, cobol))] == [
        ("exec", "kind")
    ]
    four = [SUMMARY | {"statusCode": 4}]
    assert checker.check(answer("GET", f"{BASE}/activations", 200, four)) != []
    odd = ACTION_DOC | {"parameters": [{"key": "K", "value": 1, "secret": True}]}
    assert checker.check(answer("GET", f"{BASE}/actions/hello", 200, odd)) != []
    assert checker.check(error("GET", f"{BASE}/actions", 413)) != []  # 413 only on invoke
    assert checker.check(error("GET", "/api/v1/namespaces", 403)) != []


# -- schemas where the swagger has none ---------------------------------------------------------------------
def test_bodies_the_swagger_leaves_open_are_checked(checker: SwaggerChecker) -> None:
    assert {b.name for b in BODIES} >= {
        "blocking invoke: the activation record",
        "DELETE answers the deleted action",
    }
    without_response = {k: v for k, v in RECORD.items() if k != "response"}
    blocking = answer("POST", f"{BASE}/actions/hello", 200, without_response, {"blocking": "true"})
    assert [p.message for p in checker.check(blocking)] == ["'response' is a required property"]
    assert SwaggerChecker(bodies=()).check(blocking) == []  # the swagger alone would let it pass
    failed = answer("POST", f"{BASE}/actions/hello", 502, without_response, {"blocking": "true"})
    assert [p.message for p in checker.check(failed)] == ["'response' is a required property"]
    deleted = answer("DELETE", f"{BASE}/actions/hello", 200, {"deleted": True})
    assert checker.check(deleted) != [] and SwaggerChecker(bodies=()).check(deleted) == []
    count = answer("GET", f"{BASE}/activations", 200, {"activations": -1}, {"count": "true"})
    assert checker.check(count) != []
    # A 500 naming an activation is its record; one without is an error body.
    whisk_error = RECORD | {
        "response": {"result": {"error": "x"}, "success": False, "status": "whisk internal error"}
    }
    assert (
        checker.check(answer("POST", f"{BASE}/actions/hello", 500, whisk_error, {"blocking": "true"})) == []
    )
    assert checker.check(error("POST", f"{BASE}/actions/hello", 500, query={"blocking": "true"})) == []


# -- what the checker finds ---------------------------------------------------------------------------------
def problems(checker: SwaggerChecker, exchange: Exchange) -> list[str]:
    return [p.what for p in checker.check(exchange)]


def test_schema_problems_are_found(checker: SwaggerChecker) -> None:
    missing = {k: v for k, v in ACTION_DOC.items() if k != "exec"}
    assert problems(checker, answer("GET", f"{BASE}/actions/hello", 200, missing)) == ["schema"]
    mistyped = ACTION_DOC | {"version": 1}
    assert problems(checker, answer("GET", f"{BASE}/actions/hello", 200, mistyped)) == ["schema"]
    invented = ACTION_DOC | {"owner": "guest"}
    assert problems(checker, answer("PUT", f"{BASE}/actions/hello", 200, invented)) == ["schema"]
    # A full record is not a list summary: summaries have no response or logs.
    assert problems(checker, answer("GET", f"{BASE}/activations", 200, [RECORD])) == ["schema"]
    limits = ACTION_DOC | {"limits": {**LIMITS, "timeout": "60s"}}
    assert problems(checker, answer("GET", f"{BASE}/actions/hello", 200, limits)) == ["schema"]
    assert (
        problems(checker, answer("POST", f"{BASE}/actions/hello", 202, {"id": ACTIVATION_ID}))
        == ["schema"] * 2
    )


def test_status_content_type_and_error_problems_are_found(checker: SwaggerChecker) -> None:
    assert problems(checker, error("POST", f"{BASE}/actions/hello", 408, query={"blocking": "true"})) == [
        "status"
    ]
    assert problems(checker, answer("GET", "/api/v1/namespaces", 201, ["guest"])) == ["status"]
    assert problems(checker, answer("PATCH", f"{BASE}/actions/hello", 200, {})) == ["operation"]
    as_text = answer("GET", "/api/v1/namespaces", 200, ["guest"], **{"content-type": "text/plain"})
    assert problems(checker, as_text) == ["content-type"]
    garbage = Exchange("GET", "/api/v1/namespaces", 200, b"<html>", {"content-type": "application/json"})
    assert problems(checker, garbage) == ["json"]
    wrong_code = answer("GET", f"{BASE}/actions/hello", 404, {"error": "x", "code": "another"})
    assert problems(checker, wrong_code) == ["error-code"]
    not_an_error = answer("GET", f"{BASE}/actions/hello", 404, {"message": "x"})
    assert "schema" in problems(checker, not_an_error)
    extra = answer("GET", f"{BASE}/actions/hello", 404, {"error": "x", "code": TID, "status": 404})
    assert problems(checker, extra) == ["schema"]


# -- the requests hook ---------------------------------------------------------------------------------------
class _Answers(http.server.BaseHTTPRequestHandler):
    """GET /api/v1/namespaces: a fitting answer, or (with ?bad) an action list that is not one."""

    def do_GET(self) -> None:  # the name http.server calls
        body = json.dumps({"oops": 1} if "bad" in self.path else ["guest"]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:  # quiet
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_checked_session_raises_on_a_bad_answer(local_server: str) -> None:
    checker = SwaggerChecker()
    session = checker.session()
    assert session.get(f"{local_server}/api/v1/namespaces", timeout=5).json() == ["guest"]
    assert checker.checked == [("GET", "/namespaces", 200)]
    with pytest.raises(AssertionError, match="does not fit OpenWhisk's swagger"):
        session.get(f"{local_server}/api/v1/namespaces?bad", timeout=5)
    assert len(checker.checked) == 1
    assert requests.get(f"{local_server}/api/v1/namespaces?bad", timeout=5).ok  # unchecked: no hook
