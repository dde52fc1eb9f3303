"""The dev stack's REST API with plain HTTP (`requests`), held to OpenWhisk's controller: flows, error
cases with OpenWhisk's texts, query parameter rules, headers, and every answer checked against
OpenWhisk's own swagger (`openwhisk_swagger.py`: a checked session raises on an answer that does not
fit). One stack (real containers of the runtime image, default warmwhisk mode) serves the whole
module. Tests invoke few distinct actions: in warmwhisk mode every python:3-ml action revision is a
pool of the scaler's warm model hosts, and the scaler runs at most `max_hosts` of them (sized from
the machine's memory: 11 on a 23 GB machine), so the module shares one `hello` action (its code
does what the payload asks) and makes its own only where a test needs a fresh one.

Expected values cite OpenWhisk's source (apache/openwhisk 1fae641a2); `../shared/reference/
ow-rest-api.md` gives the line numbers.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import requests

from devstack_harness import RunningStack
from openwhisk_swagger import SwaggerChecker
from warmwhisk_invoker_patch import Limits
from warmwhisk_invoker_patch.manifest import ML_KIND

pytestmark = pytest.mark.docker

# A trivial OpenWhisk Python action (the runtime runs any): fast to start, `print` gives a log
# line, and the payload picks what it does.
HELLO = """\
import os
import time

KEYS = ("SECRET", "COUNT", "PLAIN", "__OW_ACTIVATION_ID", "__OW_ACTION_NAME", "__OW_NAMESPACE")


def main(args):
    time.sleep(float(args.get("sleep_s", 0)))
    name = args.get("name", "stranger")
    print("hello", name)
    if args.get("fail"):
        return {"error": "failed for " + name}
    if args.get("raise"):
        raise RuntimeError("boom")
    if "array" in args:
        return args["array"]
    if args.get("env"):
        return {"env": {key: os.environ.get(key) for key in KEYS}, "args": args}
    return {"greeting": "hello " + name}
"""
OTHER_CODE = "def main(args):\n    return {}\n"  # any code other than HELLO
# hello's time limit: a run past it is a developer error (and the sleeps here stay below it).
HELLO_TIMEOUT_MS = 5000
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
AUTH_INVALID = "The supplied authentication is invalid"
NOT_FOUND = "The requested resource does not exist."
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
    ),
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
}
# OpenWhisk's generated transaction id: 32 letters and digits (TransactionId.scala generateTid).
GENERATED_TID = re.compile(r"[A-Za-z0-9]{32}")
ACTIVATION_ID = re.compile(r"[0-9a-f]{32}")
PAYLOAD_MAX = 1024 * 1024  # whisk.activation.payload.max (1 m)
BLOCKING_WAIT_MS = 60_000  # max-wait-for-blocking-activation
T = TypeVar("T")


@dataclass
class Wsk:
    """One namespace's client: a session whose every answer is checked against the swagger."""

    base: str
    http: requests.Session

    def action_url(self, name: str, namespace: str = "_") -> str:
        return f"{self.base}/namespaces/{namespace}/actions/{name}"

    def activation_url(self, activation_id: str, part: str = "", namespace: str = "_") -> str:
        return f"{self.base}/namespaces/{namespace}/activations/{activation_id}" + (
            f"/{part}" if part else ""
        )

    def create(self, name: str, code: str = HELLO, **fields: Any) -> dict[str, Any]:
        body = {"exec": {"kind": ML_KIND, "code": code}, **fields}
        response = self.http.put(self.action_url(name), json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def invoke(self, name: str, payload: Any = None, **query: str) -> requests.Response:
        return self.http.post(
            self.action_url(name), json=payload if payload is not None else {}, params=query
        )

    def activation(self, activation_id: str, part: str = "", timeout_s: float = 30.0) -> dict[str, Any]:
        """The stored activation (or its result or logs), polled until it exists (404 before)."""

        def fetch() -> dict[str, Any] | None:
            response = self.http.get(self.activation_url(activation_id, part))
            assert response.status_code in (200, 404), response.text
            return dict(response.json()) if response.status_code == 200 else None

        return eventually(fetch, timeout_s)


def eventually(fetch: Callable[[], T | None], timeout_s: float = 30.0, every_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = fetch()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"nothing after {timeout_s} s"
        time.sleep(every_s)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def annotations(doc: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in doc["annotations"]}


def assert_error(response: requests.Response, status: int, message: str | re.Pattern[str]) -> None:
    """OpenWhisk's error answer: the status, JSON `{"error", "code"}`, code = X-Request-ID."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code"}
    if isinstance(message, re.Pattern):
        assert message.fullmatch(body["error"]), body["error"]
    else:
        assert body["error"] == message
    assert body["code"] == response.headers["X-Request-ID"]


@pytest.fixture(scope="module")
def swagger() -> SwaggerChecker:
    return SwaggerChecker()


@pytest.fixture(scope="module")
def guest(devstack: RunningStack, swagger: SwaggerChecker) -> Wsk:
    return Wsk(devstack.base, swagger.session(devstack.auth("guest")))


@pytest.fixture(scope="module")
def other(devstack: RunningStack, swagger: SwaggerChecker) -> Wsk:
    return Wsk(devstack.base, swagger.session(devstack.auth("other")))


@pytest.fixture(scope="module")
def anonymous(devstack: RunningStack, swagger: SwaggerChecker) -> Wsk:
    return Wsk(devstack.base, swagger.session())


@pytest.fixture(scope="module")
def hello(guest: Wsk) -> Iterator[str]:
    """The module's HELLO action (a 5 s time limit), warm after its first invoke."""
    name = unique("hello")
    guest.create(name, limits={"timeout": HELLO_TIMEOUT_MS})
    assert guest.invoke(name, blocking="true").status_code == 200
    yield name


# -- namespaces and auth -------------------------------------------------------------------------------
def test_api_info_needs_no_key(devstack: RunningStack) -> None:
    # GET /api/v1 is described by infoswagger.json, not apiv1swagger.json: checked by hand.
    response = requests.get(devstack.base, timeout=10)
    assert response.status_code == 200
    info = response.json()
    assert {"description", "api_version", "api_version_path", "build", "buildno", "swagger_paths"} <= set(
        info
    )
    assert info["api_version_path"] == "v1"


def test_namespaces_lists_the_callers_own(guest: Wsk, other: Wsk) -> None:
    assert guest.http.get(f"{guest.base}/namespaces").json() == ["guest"]
    assert other.http.get(f"{other.base}/namespaces").json() == ["other"]


def test_no_key_or_a_wrong_key_is_401(
    devstack: RunningStack, anonymous: Wsk, swagger: SwaggerChecker
) -> None:
    url = f"{devstack.base}/namespaces/_/actions"
    missing = anonymous.http.get(url)
    assert_error(missing, 401, AUTH_MISSING)
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'
    key_uuid, secret = devstack.auth("guest")
    wrong = [
        (key_uuid, secret[:-1] + ("a" if secret[-1] != "a" else "b")),  # wrong secret
        (str(uuid.uuid4()), secret),  # unknown uuid
        (key_uuid, secret[:10]),  # malformed: not 64 characters (Secret.scala)
        (devstack.auth("other")[0], secret),  # another namespace's uuid with guest's secret
    ]
    for auth in wrong:
        assert_error(swagger.session(auth).get(url), 401, AUTH_INVALID)
    # A scheme other than Basic is no credentials at all; undecodable Basic is invalid.
    bearer = anonymous.http.get(url, headers={"Authorization": f"Bearer {secret}"})
    assert_error(bearer, 401, AUTH_MISSING)
    garbage = anonymous.http.get(url, headers={"Authorization": "Basic !!!not-base64!!!"})
    assert_error(garbage, 401, AUTH_INVALID)
    no_colon = base64.b64encode(key_uuid.encode()).decode()
    assert_error(anonymous.http.get(url, headers={"Authorization": f"Basic {no_colon}"}), 401, AUTH_INVALID)


def test_underscore_is_the_callers_namespace(guest: Wsk) -> None:
    name = unique("ns")
    doc = guest.create(name)
    assert doc["namespace"] == "guest"  # never "_" (AuthorizedRouteDispatcher.scala L108-118)
    assert guest.http.get(guest.action_url(name, "guest")).json()["namespace"] == "guest"
    listed = guest.http.get(f"{guest.base}/namespaces/guest/actions", params={"limit": 200}).json()
    assert name in {a["name"] for a in listed}


def test_another_namespace_is_403(guest: Wsk, other: Wsk) -> None:
    """Rights are the caller's own namespace only; the text names `ns/entity` (or `ns` for a list)."""
    name = unique("theirs")
    other.create(name)
    activation_id = other.invoke(name).json()["activationId"]
    other.activation(activation_id)
    denied = f"The supplied authentication is not authorized to access 'other/{name}'."
    assert_error(guest.http.get(guest.action_url(name, "other")), 403, denied)
    assert_error(guest.http.put(guest.action_url(name, "other"), json={"exec": {}}), 403, denied)
    assert_error(guest.http.post(guest.action_url(name, "other"), json={}), 403, denied)
    assert_error(guest.http.delete(guest.action_url(name, "other")), 403, denied)
    # Whether the entity exists or not, 403: existence is not revealed.
    missing = unique("missing")
    assert_error(
        guest.http.get(guest.action_url(missing, "other")),
        403,
        f"The supplied authentication is not authorized to access 'other/{missing}'.",
    )
    listing = "The supplied authentication is not authorized to access 'other'."
    assert_error(guest.http.get(f"{guest.base}/namespaces/other/actions"), 403, listing)
    assert_error(guest.http.get(f"{guest.base}/namespaces/other/activations"), 403, listing)
    for part in ("", "result", "logs"):
        assert_error(
            guest.http.get(guest.activation_url(activation_id, part, "other")),
            403,
            f"The supplied authentication is not authorized to access 'other/{activation_id}'.",
        )
    # And guest's own view does not have them: its activation is stored under the invoker's namespace.
    assert_error(guest.http.get(guest.activation_url(activation_id)), 404, NOT_FOUND)
    assert other.http.get(other.action_url(name)).status_code == 200


# -- actions: create, get, update, delete ----------------------------------------------------------------
def test_create_get_update_delete(guest: Wsk) -> None:
    name = unique("crud")
    created = guest.create(
        name,
        parameters=[{"key": "name", "value": "param"}],
        annotations=[{"key": "description", "value": "d"}],
    )
    assert created["name"] == name and created["version"] == "0.0.1" and created["publish"] is False
    assert created["exec"] == {"kind": ML_KIND, "code": HELLO, "binary": False}
    # OpenWhisk's defaults (application.conf L485-510), the controller's annotations (Actions.scala L62-86).
    assert created["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert annotations(created) == {"description": "d", "provide-api-key": False, "exec": ML_KIND}
    assert created["parameters"] == [{"key": "name", "value": "param"}]

    fetched = guest.http.get(guest.action_url(name)).json()
    assert fetched == created
    without_code = guest.http.get(guest.action_url(name), params={"code": "false"}).json()
    assert without_code["exec"] == {"kind": ML_KIND, "binary": False}
    assert {k: v for k, v in without_code.items() if k != "exec"} == {
        k: v for k, v in created.items() if k != "exec"
    }

    # Without overwrite an existing name is 409 (ApiUtils.scala L327-329), and nothing changes.
    assert_error(
        guest.http.put(guest.action_url(name), json={"exec": {"kind": ML_KIND, "code": OTHER_CODE}}),
        409,
        "resource already exists",
    )
    assert guest.http.get(guest.action_url(name)).json() == created
    # The body is read and its limits checked before the name is looked up: 400, not 409
    # (Actions.scala `create` L211-231 before ApiUtils.putEntity).
    assert_error(
        guest.http.put(guest.action_url(name), json={"exec": {"kind": "cobol:85", "code": HELLO}}),
        400,
        re.compile(r"The request content was malformed:\nThe specified runtime 'cobol:85' .*"),
    )
    assert_error(
        guest.http.put(guest.action_url(name), json={"limits": {"memory": 1}}),
        400,
        "memory size 1 MB below allowed threshold of 128 MB",
    )
    assert_error(
        guest.http.put(guest.action_url(name), json=[1]),
        400,
        "The request content was malformed:\nObject expected in field 'exec'",
    )

    # Update: version bumped, limits merged field by field, annotations merged then `exec` re-set,
    # parameters replaced, exec kept when not given (Actions.scala updateWhiskAction L549-609).
    updated = guest.http.put(
        guest.action_url(name),
        params={"overwrite": "true"},
        json={
            "limits": {"memory": 300},
            "annotations": [{"key": "exec", "value": "nodejs:20"}, {"key": "extra", "value": 1}],
            "delAnnotations": ["description"],
            "parameters": [],
        },
    ).json()
    assert updated["version"] == "0.0.2"
    assert updated["exec"] == created["exec"]
    assert updated["limits"] == {**created["limits"], "memory": 300}
    assert annotations(updated) == {"provide-api-key": False, "exec": ML_KIND, "extra": 1}
    assert updated["parameters"] == []
    assert updated["updated"] >= created["updated"]
    again = guest.http.put(
        guest.action_url(name), params={"overwrite": "true"}, json={"exec": created["exec"]}
    )
    assert again.json()["version"] == "0.0.3"
    given = guest.http.put(guest.action_url(name), params={"overwrite": "true"}, json={"version": "2.0.0"})
    assert given.json()["version"] == "2.0.0"

    # DELETE answers the deleted document (ApiUtils.scala L403-406); then it is gone.
    deleted = guest.http.delete(guest.action_url(name))
    assert deleted.status_code == 200 and deleted.json() == given.json()
    assert_error(guest.http.get(guest.action_url(name)), 404, NOT_FOUND)
    assert_error(guest.http.delete(guest.action_url(name)), 404, NOT_FOUND)
    assert_error(guest.invoke(name), 404, NOT_FOUND)


def test_overwrite_of_a_missing_action_creates_it(guest: Wsk) -> None:
    name = unique("fresh")
    response = guest.http.put(
        guest.action_url(name), params={"overwrite": "true"}, json={"exec": {"kind": ML_KIND, "code": HELLO}}
    )
    assert response.status_code == 200 and response.json()["version"] == "0.0.1"
    assert annotations(response.json())["provide-api-key"] is False


def test_list_actions_newest_first_with_limit_skip_count(guest: Wsk) -> None:
    names = [unique(f"list{i}") for i in range(3)]
    for name in names:
        guest.create(name)
        time.sleep(0.01)  # distinct `updated` stamps: lists are newest first (WhiskStore.scala L205-217)
    url = f"{guest.base}/namespaces/_/actions"
    newest = names[::-1]
    listed = guest.http.get(url, params={"limit": 3}).json()
    assert [a["name"] for a in listed] == newest
    # Summaries only (WhiskAction.summaryAsJson): no code, no parameters.
    assert set(listed[0]) == {
        "namespace",
        "name",
        "version",
        "publish",
        "annotations",
        "limits",
        "exec",
        "updated",
    }
    assert listed[0]["exec"] == {"binary": False}
    assert [a["name"] for a in guest.http.get(url, params={"limit": 1, "skip": 1}).json()] == newest[1:2]
    assert [a["name"] for a in guest.http.get(url + "/", params={"limit": 2}).json()] == newest[:2]
    total = guest.http.get(url, params={"count": "true"}).json()["actions"]
    everything = guest.http.get(url, params={"limit": 0}).json()  # 0 is the maximum, 200
    assert len(everything) == min(total, 200) and total >= 3
    assert len(guest.http.get(url).json()) == min(total, 30)  # the default limit
    # A count skips as the list does (CouchDbRestStore.count: count - skip, at least 0).
    assert guest.http.get(url, params={"count": "yes", "skip": 2}).json() == {"actions": total - 2}
    assert guest.http.get(url, params={"count": "1", "skip": total + 5}).json() == {"actions": 0}


@pytest.mark.parametrize("collection", ["actions", "activations"])
def test_limit_and_skip_rules(guest: Wsk, collection: str) -> None:
    """`limit` 0..200 (0: the maximum), `skip` >= 0, both 32-bit integers (RestAPIs.scala L115-140)."""
    url = f"{guest.base}/namespaces/_/{collection}"
    for limit in ("0", "1", "200"):
        assert guest.http.get(url, params={"limit": limit}).status_code == 200
    bad = "The query parameter '{name}' was malformed:\nThe value '{value}' {why} for " + collection + "."
    cases = [
        ("limit", "201", "is not in the range of 0 to 200"),
        ("limit", "-1", "is not in the range of 0 to 200"),
        ("limit", "ten", "is not an integer"),
        ("limit", "1.5", "is not an integer"),
        ("limit", "1_0", "is not an integer"),  # Java's toInt: no underscores, no spaces
        ("limit", "99999999999", "is not an integer"),  # beyond Int
        ("skip", "-1", "is not greater than or equal to 0"),
        ("skip", "x", "is not an integer"),
        ("skip", " 1", "is not an integer"),
    ]
    for name, value, why in cases:
        response = guest.http.get(url, params={name: value})
        assert_error(response, 400, bad.format(name=name, value=value, why=why))
        # Checked with count=true too: every parameter is read before either answer.
        response = guest.http.get(url, params={name: value, "count": "true"})
        assert_error(response, 400, bad.format(name=name, value=value, why=why))


@pytest.mark.parametrize(
    ("value", "truthy"),
    [("true", True), ("yes", True), ("on", True), ("1", True), ("TRUE", True), ("Yes", True),
     ("false", False), ("no", False), ("off", False), ("0", False), ("OFF", False)],
)  # fmt: skip
def test_boolean_query_values(guest: Wsk, hello: str, value: str, truthy: bool) -> None:
    """pekko-http's Boolean: true/yes/on/1 and false/no/off/0, any case."""
    exec_ = guest.http.get(guest.action_url(hello), params={"code": value}).json()["exec"]
    assert ("code" in exec_) is truthy
    counted = guest.http.get(f"{guest.base}/namespaces/_/actions", params={"count": value}).json()
    assert isinstance(counted, dict) is truthy


def test_a_malformed_boolean_is_400(guest: Wsk, hello: str) -> None:
    for name, method in (("code", "GET"), ("overwrite", "PUT"), ("blocking", "POST"), ("result", "POST")):
        response = guest.http.request(method, guest.action_url(hello), params={name: "maybe"}, json={})
        assert_error(
            response,
            400,
            f"The query parameter '{name}' was malformed:\n'maybe' is not a valid Boolean value",
        )
    response = guest.http.get(f"{guest.base}/namespaces/_/activations", params={"docs": "2"})
    assert_error(response, 400, "The query parameter 'docs' was malformed:\n'2' is not a valid Boolean value")


# -- create and update errors ------------------------------------------------------------------------------
def test_limits_outside_the_range_are_400(guest: Wsk) -> None:
    """OpenWhisk's texts (TimeLimit/MemoryLimit/LogLimit/IntraConcurrencyLimit.scala), no period;
    the maxima are the invoker patch's, the minima OpenWhisk's."""
    maxima = Limits()
    name = unique("limits")
    cases = [
        ({"timeout": maxima.time_max_s * 1000 + 1}, f"duration {maxima.time_max_s * 1000 + 1} milliseconds "
         f"exceeds allowed threshold of {maxima.time_max_s * 1000} milliseconds"),
        ({"timeout": 99}, "duration 99 milliseconds below allowed threshold of 100 milliseconds"),
        ({"memory": maxima.memory_max_mb + 1}, f"memory size {maxima.memory_max_mb + 1} MB exceeds allowed "
         f"threshold of {maxima.memory_max_mb} MB"),
        ({"memory": 127}, "memory size 127 MB below allowed threshold of 128 MB"),
        ({"logs": 11}, "log size 11 MB exceeds allowed threshold of 10 MB"),
        ({"concurrency": maxima.concurrency_max + 1}, f"concurrency {maxima.concurrency_max + 1} exceeds "
         f"allowed threshold of {maxima.concurrency_max}"),
        ({"concurrency": 0}, "concurrency 0 below allowed threshold of 1"),
    ]  # fmt: skip
    for limits, message in cases:
        body = {"exec": {"kind": ML_KIND, "code": HELLO}, "limits": limits}
        assert_error(guest.http.put(guest.action_url(name), json=body), 400, message)
    malformed = "The request content was malformed:\n"
    body = {"exec": {"kind": ML_KIND, "code": HELLO}, "limits": {"memory": 256.5}}
    assert_error(
        guest.http.put(guest.action_url(name), json=body),
        400,
        malformed + "memory limit must be whole number",
    )
    body["limits"] = {"timeout": "soon"}
    assert_error(guest.http.put(guest.action_url(name), json=body), 400, malformed + "time limit malformed")
    assert_error(guest.http.get(guest.action_url(name)), 404, NOT_FOUND)  # nothing was created
    # At the maxima it is accepted and echoed back.
    top = {"timeout": maxima.time_max_s * 1000, "memory": maxima.memory_max_mb, "logs": 10,
           "concurrency": maxima.concurrency_max}  # fmt: skip
    assert guest.create(name, limits=top)["limits"] == top
    # An update is checked too, and leaves the action as it was.
    over = guest.http.put(guest.action_url(name), params={"overwrite": "true"}, json={"limits": {"logs": 11}})
    assert_error(over, 400, "log size 11 MB exceeds allowed threshold of 10 MB")
    assert guest.http.get(guest.action_url(name)).json()["version"] == "0.0.1"


def test_kind_errors_are_400(guest: Wsk) -> None:
    name = unique("kind")
    malformed = "The request content was malformed:\n"
    # The kind is trimmed and lower-cased before the check, and the text names it so (Exec.scala L287-328).
    for sent, named in (("cobol:85", "cobol:85"), (" Cobol:85 ", "cobol:85"), ("sequence", "sequence")):
        response = guest.http.put(guest.action_url(name), json={"exec": {"kind": sent, "code": HELLO}})
        pattern = re.compile(
            re.escape(f"{malformed}The specified runtime '{named}' is not supported by this platform. ")
            + r"Valid values are: '[^']+'(, '[^']+')*\."
        )  # fmt: skip
        assert_error(response, 400, pattern)
        listed = set(re.findall(r"'([^']+)'", response.json()["error"].split("Valid values are: ")[1]))
        assert {"blackbox", ML_KIND} <= listed
    for exec_ in ({"code": HELLO}, {"kind": 3, "code": HELLO}):
        response = guest.http.put(guest.action_url(name), json={"exec": exec_})
        assert_error(response, 400, malformed + "'kind' must be a string defined in 'exec'")
    # A trimmed, upper-case known kind is accepted and stored resolved.
    doc = guest.create(name, exec={"kind": " PYTHON:3-ML ", "code": HELLO})
    assert doc["exec"]["kind"] == ML_KIND


def test_malformed_bodies_are_400(guest: Wsk) -> None:
    name = unique("body")
    url = guest.action_url(name)
    json_header = {"Content-Type": "application/json"}
    bad_json = guest.http.put(url, data=b'{"exec": {"kind": ', headers=json_header)
    assert_error(bad_json, 400, re.compile(r"The request content was malformed:\n.+", re.S))
    assert_error(
        guest.http.put(url, data=b"", headers=json_header), 400, "Request entity expected but not supplied"
    )
    assert_error(guest.http.put(url, json={"limits": {}}), 400, "exec undefined")
    code_missing = guest.http.put(url, json={"exec": {"kind": ML_KIND}})
    assert_error(
        code_missing, 400, re.compile(r"The request content was malformed:\n'code' must be a string.*")
    )
    not_json = guest.http.put(url, data=b"exec=1", headers={"Content-Type": "text/plain"})
    assert_error(
        not_json,
        415,
        "The request's Content-Type [text/plain] is not supported. Expected:\napplication/json",
    )
    assert_error(guest.http.get(url), 404, NOT_FOUND)


def test_entity_names(guest: Wsk) -> None:
    """EntityPath.scala's name rule; over 256 characters has its own (misspelt) text."""
    for name in ("a b", "x" * 256, "a@b.c&d-e", "9"):
        assert guest.http.put(guest.action_url(name), json={"exec": {"kind": ML_KIND, "code": HELLO}}).ok
        assert guest.http.delete(guest.action_url(name)).ok
    for name in ("-a", "a ", "a$b", "ü"):
        response = guest.http.get(guest.action_url(name))
        assert_error(response, 400, "The name of the entity contains illegal characters.")
    too_long = guest.http.get(guest.action_url("x" * 257))
    assert_error(too_long, 400, "Name segement longer than allowed: 257 > 256.")


# -- invoke ------------------------------------------------------------------------------------------------
def test_blocking_invoke_answers_the_record(guest: Wsk) -> None:
    name = unique("block")
    action = guest.create(name)
    cold = guest.invoke(name, {"name": "ada"}, blocking="true")
    assert cold.status_code == 200
    record = cold.json()
    assert cold.headers["x-openwhisk-activation-id"] == record["activationId"]
    assert ACTIVATION_ID.fullmatch(record["activationId"])
    # `size`: the length of the container's raw answer (ActivationResult.scala L205).
    assert record["response"] == {
        "result": {"greeting": "hello ada"}, "size": record["response"]["size"],
        "success": True, "status": "success",
    }  # fmt: skip
    assert isinstance(record["response"]["size"], int) and record["response"]["size"] >= 20
    assert "statusCode" not in record["response"]  # toExtendedJson drops it (ActivationResult.scala L35-42)
    assert record["namespace"] == "guest" and record["subject"] == "guest" and record["name"] == name
    assert record["version"] == action["version"] and record["publish"] is False
    assert record["duration"] == record["end"] - record["start"] and record["duration"] >= 0
    marks = annotations(record)
    assert marks["path"] == f"guest/{name}" and marks["kind"] == ML_KIND
    assert marks["limits"] == action["limits"] and marks["timeout"] is False
    assert isinstance(marks["waitTime"], int) and isinstance(marks["initTime"], int)  # a cold start
    assert record["logs"] == []  # logs come later (ContainerProxy.scala L871-881)

    warm = guest.invoke(name, {"name": "bob"}, blocking="true").json()
    assert warm["response"]["result"] == {"greeting": "hello bob"}
    assert "initTime" not in annotations(warm)  # only cold starts have it
    assert warm["activationId"] != record["activationId"]

    result_only = guest.invoke(name, {"name": "cy"}, blocking="true", result="true")
    assert result_only.status_code == 200 and result_only.json() == {"greeting": "hello cy"}
    assert ACTIVATION_ID.fullmatch(result_only.headers["x-openwhisk-activation-id"])
    # The stored record is the one the answer named.
    stored = guest.activation(result_only.headers["x-openwhisk-activation-id"])
    assert stored["response"]["result"] == {"greeting": "hello cy"}


def test_failed_activations_are_502(guest: Wsk, hello: str) -> None:
    """An application error (a result with `error`) and a developer error (here: past the time
    limit) are 502 with the record, or the bare result with result=true (Actions.scala L300-315)."""
    failed = guest.invoke(hello, {"name": "x", "fail": True}, blocking="true")
    assert failed.status_code == 502
    assert failed.json()["response"] == {
        "result": {"error": "failed for x"}, "size": failed.json()["response"]["size"],
        "success": False, "status": "application error",
    }  # fmt: skip
    assert failed.headers["x-openwhisk-activation-id"] == failed.json()["activationId"]
    bare = guest.invoke(hello, {"name": "y", "fail": True}, blocking="true", result="true")
    assert bare.status_code == 502 and bare.json() == {"error": "failed for y"}
    # An exception in main is the runtime's error result, as OpenWhisk's Python runtime answers it.
    raised = guest.invoke(hello, {"raise": True}, blocking="true")
    assert raised.status_code == 502 and raised.json()["response"]["status"] == "application error"
    assert "boom" in raised.json()["response"]["result"]["error"]

    slow = guest.invoke(hello, {"sleep_s": HELLO_TIMEOUT_MS / 1000 + 1}, blocking="true")
    assert slow.status_code == 502
    record = slow.json()
    assert record["response"] == {
        "result": {"error": f"The action exceeded its time limits of {HELLO_TIMEOUT_MS} milliseconds."},
        "success": False, "status": "action developer error",
    }  # fmt: skip
    assert annotations(record)["timeout"] is True
    # The container that timed out is gone (ContainerProxy): the next run still works.
    after = guest.invoke(hello, {"name": "again"}, blocking="true", result="true")
    assert after.status_code == 200 and after.json() == {"greeting": "hello again"}


def test_an_array_result_comes_back_bare(guest: Wsk, hello: str) -> None:
    for query in ({"blocking": "true"}, {"blocking": "true", "result": "true"}):
        response = guest.invoke(hello, {"array": [1, 2, 4]}, **query)
        assert response.status_code == 200 and response.json() == [1, 2, 4]  # Actions.scala L294-296
    record = guest.activation(response.headers["x-openwhisk-activation-id"])
    assert record["response"]["result"] == [1, 2, 4]


def test_non_blocking_invoke_then_record_result_and_logs(guest: Wsk, hello: str) -> None:
    name = hello
    accepted = guest.invoke(name, {"name": "eve"})
    assert accepted.status_code == 202
    assert set(accepted.json()) == {"activationId"}
    activation_id = accepted.json()["activationId"]
    assert accepted.headers["x-openwhisk-activation-id"] == activation_id
    # result=true has no effect without blocking (Actions.scala L288-292).
    also = guest.invoke(name, {"name": "eve"}, result="true", blocking="false")
    assert also.status_code == 202 and set(also.json()) == {"activationId"}

    record = guest.activation(activation_id)
    assert record["activationId"] == activation_id
    assert record["response"]["result"] == {"greeting": "hello eve"}
    result = guest.http.get(guest.activation_url(activation_id, "result")).json()
    assert result == {"result": {"greeting": "hello eve"}, "size": record["response"]["size"],
                      "success": True, "status": "success"}  # fmt: skip

    # Logs arrive once both streams' sentinels are read: "<time, 30 wide> stdout: <line>".
    def logged() -> list[str] | None:
        logs = guest.http.get(guest.activation_url(activation_id, "logs")).json()["logs"]
        return logs or None

    logs = eventually(logged, timeout_s=20)
    assert len(logs) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s* stdout: hello eve", logs[0]), logs
    assert logs[0][30:] == " stdout: hello eve"
    assert guest.activation(activation_id)["logs"] == logs


def test_blocking_invoke_past_its_wait_is_202(guest: Wsk, hello: str) -> None:
    """A blocking invoke still running when `timeout` ms have passed answers 202 {activationId}, never
    408 (PrimitiveActions.scala L657-658); the activation completes and is stored."""
    name = hello
    started = time.monotonic()
    response = guest.invoke(name, {"sleep_s": 3}, blocking="true", timeout="500")
    waited = time.monotonic() - started
    assert response.status_code == 202 and set(response.json()) == {"activationId"}
    assert response.headers["x-openwhisk-activation-id"] == response.json()["activationId"]
    assert 0.5 <= waited < 2.5
    record = guest.activation(response.json()["activationId"])
    assert record["response"]["result"] == {"greeting": "hello stranger"} and record["duration"] >= 3000
    # With result=true the answer is the same 202 (there is no result yet).
    again = guest.invoke(name, {"sleep_s": 2}, blocking="true", result="true", timeout="200")
    assert again.status_code == 202 and set(again.json()) == {"activationId"}
    # Within the wait the result comes back as usual.
    quick = guest.invoke(name, {"sleep_s": 0.5}, blocking="true", result="true", timeout="20000")
    assert quick.status_code == 200 and quick.json() == {"greeting": "hello stranger"}


def test_timeout_values(guest: Wsk, hello: str) -> None:
    message = (
        "The query parameter 'timeout' was malformed:\n"
        f"Timeout must be number of milliseconds up to {BLOCKING_WAIT_MS}."
    )
    for value in ("0", "-5", str(BLOCKING_WAIT_MS + 1), "soon", "1.5"):
        assert_error(guest.invoke(hello, blocking="true", timeout=value), 400, message)
    ok = guest.invoke(hello, blocking="true", timeout=str(BLOCKING_WAIT_MS))
    assert ok.status_code == 200


def test_payload_over_1_mib_is_413(guest: Wsk, hello: str) -> None:
    """The limit is on Content-Length, inclusive (Entities.scala L44-62, L119-126)."""
    header = {"Content-Type": "application/json"}
    envelope = len(b'{"blob":""}')
    exactly = b'{"blob":"' + b"x" * (PAYLOAD_MAX - envelope) + b'"}'
    assert len(exactly) == PAYLOAD_MAX
    accepted = guest.http.post(guest.action_url(hello), data=exactly, headers=header)
    assert accepted.status_code == 202
    over = exactly[:-2] + b'x"}'
    response = guest.http.post(guest.action_url(hello), data=over, headers=header)
    assert_error(response, 413, f"Request larger than allowed: {PAYLOAD_MAX + 1} > {PAYLOAD_MAX} bytes.")
    assert "x-openwhisk-activation-id" not in response.headers  # errors carry no activation id


def test_invoke_errors(guest: Wsk, hello: str) -> None:
    missing = guest.invoke(unique("nothing"), blocking="true")
    assert_error(missing, 404, NOT_FOUND)
    assert "x-openwhisk-activation-id" not in missing.headers
    header = {"Content-Type": "application/json"}
    bad_json = guest.http.post(guest.action_url(hello), data=b"{nope", headers=header)
    assert_error(bad_json, 400, re.compile(r"The request content was malformed:\n.+", re.S))
    # The payload is a JSON object or nothing (spray-json's asJsObject).
    for payload in (b"[1, 2]", b'"text"', b"3"):
        response = guest.http.post(guest.action_url(hello), data=payload, headers=header)
        assert_error(response, 400, "The request content was malformed:\nJSON object expected")
    empty = guest.http.post(guest.action_url(hello), params={"blocking": "true", "result": "true"})
    assert empty.status_code == 200 and empty.json() == {"greeting": "hello stranger"}


def test_final_parameters_cannot_be_overridden(guest: Wsk) -> None:
    """With annotation `final: true`, a payload may not set a parameter that has a value
    (Actions.scala L260-270; WhiskAction.scala immutableParameters)."""
    name = unique("final")
    guest.create(
        name,
        parameters=[{"key": "name", "value": "fixed"}, {"key": "unset", "value": None}],
        annotations=[{"key": "final", "value": True}],
    )
    refused = guest.invoke(name, {"name": "mallory"}, blocking="true")
    assert_error(refused, 400, "Request defines parameters that are not allowed (e.g., reserved properties).")
    allowed = guest.invoke(name, {"unset": 1, "other": 2}, blocking="true", result="true")
    assert allowed.status_code == 200 and allowed.json() == {"greeting": "hello fixed"}
    # Only a JSON true makes it final (getAs[Boolean]).
    guest.http.put(
        guest.action_url(name),
        params={"overwrite": "true"},
        json={"annotations": [{"key": "final", "value": "yes"}]},
    )
    overridden = guest.invoke(name, {"name": "mallory"}, blocking="true", result="true")
    assert overridden.status_code == 200 and overridden.json() == {"greeting": "hello mallory"}


def test_init_parameters_reach_init_not_run(guest: Wsk) -> None:
    """`init: true` parameters go to /init's env (strings as is, others as JSON) and never to
    /run's value (ContainerProxy.partitionArguments; WhiskAction.scala L295-313)."""
    name = unique("init")
    created = guest.create(
        name,
        parameters=[
            {"key": "SECRET", "value": "s3cret", "init": True},
            {"key": "COUNT", "value": {"n": 5}, "init": True},
            {"key": "PLAIN", "value": "visible"},
        ],
    )
    assert created["parameters"][0] == {"key": "SECRET", "value": "s3cret", "init": True}
    for _ in range(2):  # cold, then warm: the env stays, /run never gets them
        response = guest.invoke(name, {"env": True}, blocking="true")
        assert response.status_code == 200, response.text
        result = response.json()["response"]["result"]
        assert result["args"] == {"PLAIN": "visible", "env": True}
        assert result["env"]["SECRET"] == "s3cret" and json.loads(result["env"]["COUNT"]) == {"n": 5}
        assert result["env"]["PLAIN"] is None
        # The activation's context (__OW_*), as ContainerProxy gives it.
        assert result["env"]["__OW_ACTIVATION_ID"] == response.json()["activationId"]
        assert result["env"]["__OW_ACTION_NAME"] == f"/guest/{name}"
        assert result["env"]["__OW_NAMESPACE"] == "guest"
    # Overriding an init parameter from the payload is permitted, and it still stays out of /run.
    overriding = guest.invoke(name, {"SECRET": "other", "env": True}, blocking="true", result="true").json()
    assert "SECRET" not in overriding["args"] and overriding["env"]["SECRET"] == "s3cret"


# -- activations -------------------------------------------------------------------------------------------
def test_activation_ids_are_validated(guest: Wsk) -> None:
    """ActivationId.parse: 32 lowercase hex, before any lookup (Activations.scala L101-107)."""
    for part in ("", "result", "logs"):
        assert_error(
            guest.http.get(guest.activation_url("abc", part)),
            400,
            "Activation id length is 3 but must be 32.",
        )
        for invalid in ("A" * 32, "g" * 32, "0123456789abcdef0123456789abcdeZ"):
            assert_error(
                guest.http.get(guest.activation_url(invalid, part)), 400, "The activation id is not valid."
            )
        assert_error(guest.http.get(guest.activation_url("0" * 32, part)), 404, NOT_FOUND)
    # Validation comes before rights: another namespace's path still says why the id is wrong.
    assert_error(
        guest.http.get(guest.activation_url("x" * 33, namespace="other")),
        400,
        "Activation id length is 33 but must be 32.",
    )


def test_activation_list_filters(guest: Wsk, hello: str) -> None:
    first, second = unique("acta"), hello
    guest.create(first)
    ids = []
    for name in (first, second, first):
        response = guest.invoke(name, {"name": name}, blocking="true")
        assert response.status_code == 200
        ids.append(response.json()["activationId"])
        time.sleep(0.01)  # distinct start stamps
    records = [guest.activation(i) for i in ids]
    url = f"{guest.base}/namespaces/_/activations"

    mine = guest.http.get(url, params={"name": first}).json()
    assert [a["activationId"] for a in mine] == [ids[2], ids[0]]  # newest first
    # Summaries: no response, no logs; statusCode at the top (WhiskActivation.summaryAsJson).
    assert "response" not in mine[0] and "logs" not in mine[0] and mine[0]["statusCode"] == 0
    assert mine[0]["start"] == records[2]["start"] and mine[0]["duration"] == records[2]["duration"]
    assert [a["activationId"] for a in guest.http.get(url, params={"name": first, "limit": 1}).json()] == [
        ids[2]
    ]
    assert [a["activationId"] for a in guest.http.get(url, params={"name": first, "skip": 1}).json()] == [
        ids[0]
    ]
    assert [a["activationId"] for a in guest.http.get(url, params={"limit": 3}).json()] == ids[::-1]
    # since / upto: epoch milliseconds, inclusive.
    window = {"since": records[1]["start"], "upto": records[2]["start"]}
    assert [a["activationId"] for a in guest.http.get(url, params={**window, "limit": 200}).json()] == ids[
        :0:-1
    ]
    early = guest.http.get(url, params={"name": first, "upto": records[1]["start"]}).json()
    assert [a["activationId"] for a in early] == [ids[0]]
    # count, with the same filters; docs=true lists full records.
    assert guest.http.get(url, params={"name": first, "count": "true"}).json() == {"activations": 2}
    assert guest.http.get(url, params={"since": records[1]["start"], "count": "on"}).json() == {
        "activations": 2
    }
    assert guest.http.get(url, params={"name": first, "count": "true", "skip": 1}).json() == {
        "activations": 1
    }
    docs = guest.http.get(url, params={"name": first, "docs": "true"}).json()
    assert [d["response"]["result"] for d in docs] == [{"greeting": f"hello {first}"}] * 2
    assert_error(
        guest.http.get(url, params={"count": "true", "docs": "true"}),
        400,
        "The parameter 'docs' is not permitted with 'count'.",
    )
    # The name filter: `action` or `package/action` (EntityPath: empty segments dropped); an empty
    # value is no filter (Activations.scala L45-53).
    assert [a["activationId"] for a in guest.http.get(url, params={"name": "/" + first}).json()] == [
        ids[2],
        ids[0],
    ]
    assert len(guest.http.get(url, params={"name": "", "limit": 3}).json()) == 3
    assert guest.http.get(url, params={"name": unique("none")}).json() == []
    # `package/action` names a packaged action (the filter view's key): none here has one.
    assert guest.http.get(url, params={"name": f"pkg/{first}"}).json() == []
    assert guest.http.get(url, params={"name": f"pkg/{first}", "count": "true"}).json() == {"activations": 0}
    filter_text = (
        "The query parameter 'name' was malformed:\n"
        "Parameter may be a 'simple' name or 'package-name/simple' name: {}"
    )
    for bad in ("a/b/c", "a$b", "-x"):
        assert_error(guest.http.get(url, params={"name": bad}), 400, filter_text.format(bad))
    for name in ("since", "upto"):
        assert_error(
            guest.http.get(url, params={name: "yesterday"}),
            400,
            f"The query parameter '{name}' was malformed:\n"
            "Parameter is not a valid value for epoch seconds: yesterday",
        )


# -- headers and error envelopes ---------------------------------------------------------------------------
def test_request_id_is_reused_unless_a_system_one(guest: Wsk, hello: str) -> None:
    """X-Request-ID names the transaction: reused from the request unless it starts with `sid_`
    (BasicHttpService.scala L104-116); error bodies carry it as `code`."""
    reused = guest.http.get(guest.action_url(hello), headers={"X-Request-ID": "trace-123"})
    assert reused.headers["X-Request-ID"] == "trace-123"
    failed = guest.http.get(guest.action_url(unique("none")), headers={"X-Request-ID": "trace-456"})
    assert failed.headers["X-Request-ID"] == "trace-456" and failed.json()["code"] == "trace-456"
    system = guest.http.get(guest.action_url(hello), headers={"X-Request-ID": "sid_invoker"})
    assert GENERATED_TID.fullmatch(system.headers["X-Request-ID"])
    fresh = {guest.http.get(guest.action_url(hello)).headers["X-Request-ID"] for _ in range(3)}
    assert len(fresh) == 3 and all(GENERATED_TID.fullmatch(t) for t in fresh)


def test_cors_headers(devstack: RunningStack, guest: Wsk, hello: str) -> None:
    """CORS on the API's answers (RestAPIs.scala L153-155, CorsSettings.scala); OPTIONS on any
    /api/v1 path is 200 without a key (RestAPIs.scala L220-224)."""
    for response in (
        guest.http.get(guest.action_url(hello)),
        guest.http.get(f"{guest.base}/namespaces/_/activations"),
        guest.invoke(hello),
        guest.http.get(guest.action_url(unique("none"))),  # a 404 the route answers
    ):
        assert {k: response.headers.get(k) for k in CORS} == CORS
    # OPTIONS is not in the swagger: checked here.
    for path in ("/namespaces/_/actions/x", "/namespaces/guest/activations", ""):
        options = requests.options(devstack.base + path, timeout=10)
        assert options.status_code == 200
        assert {k: options.headers.get(k) for k in CORS} == CORS
        assert "X-Request-ID" in options.headers


def test_errors_off_the_swagger_are_json_too(devstack: RunningStack) -> None:
    """Routes and methods the swagger does not have still answer OpenWhisk's JSON error. Under
    /api/v1 the OPTIONS route matches every path, so an unknown one is 405 naming OPTIONS, as
    pekko ranks the options route's method rejection (RestAPIs.scala L220-224); outside it, 404."""
    session = requests.Session()
    session.auth = devstack.auth("guest")
    unknown = session.get(f"{devstack.base}/namespaces/_/nothing-here", timeout=10)
    assert_error(unknown, 405, "HTTP method not allowed, supported methods: OPTIONS")
    assert unknown.headers["Allow"] == "OPTIONS"
    outside = session.get(f"{devstack.api_host}/nothing-here", timeout=10)
    assert_error(outside, 404, "The requested resource could not be found.")
    patched = session.patch(f"{devstack.base}/namespaces/_/actions/x", json={}, timeout=10)
    assert_error(patched, 405, re.compile(r"HTTP method not allowed, supported methods: [A-Z, ]+"))
    named = set(patched.json()["error"].split(": ")[1].split(", "))
    assert {"PUT", "GET", "DELETE", "POST", "OPTIONS"} <= named
    assert set(patched.headers["Allow"].split(", ")) == named
