"""Answers checked against OpenWhisk's own API description, `fixtures/openwhisk/apiv1swagger.master.json`
(the controller's `apiv1swagger.json`, verbatim; SOURCES.md has its commit and hash).

`SwaggerChecker.check` takes one request and its answer and returns what does not fit:

1. the operation (method and path template under `basePath`) must be in the swagger;
2. the status must be one the swagger lists for it, and never one OpenWhisk's code does not answer
   (`NEVER`: 408 on invoke);
3. a body must be JSON with `Content-Type: application/json` (the swagger's `produces`);
4. the body must fit the response's schema. Swagger 2.0 schemas are JSON Schema draft 4 plus
   `$ref` into the document, so each is validated with jsonschema's `Draft4Validator` and a
   `referencing` registry holding the whole document. Stricter than plain JSON Schema: every
   definition that lists `properties` is checked as if it had `additionalProperties: false`, so
   a field the swagger does not name (a misspelling, an invented field) is an error. OpenWhisk's
   own validator is as strict: its `SwaggerValidator.scala` has to whitelist the message "Object
   instance has properties which are not allowed by the schema" for invoke payloads;
5. where the swagger gives no schema, or a wrong one, for a body OpenWhisk's code does answer,
   `BODIES` says which schema applies and why (the blocking invoke's activation record, the
   deleted action, `count=true`, `docs=true`);
6. an error (status 400 or more, other than an invoke's activation record) must be OpenWhisk's
   `ErrorMessage` `{"error", "code"}` with `code` equal to the `X-Request-ID` header.

`ALLOWANCES` is the whitelist, as small as `SwaggerValidator.scala`'s: places where the swagger
disagrees with OpenWhisk's code, each with the reason and the code it follows
(`../shared/reference/ow-rest-api.md` §9 lists the mismatches). `tests/test_devstack_swagger.py`
shows each entry is needed (the verbatim swagger rejects a real answer without it) and that the
checker finds what it should.

Requests are not checked: the tests send what the swagger does not describe on purpose (the
boolean parameters are typed as the strings "true"/"false" there; the code also takes
yes/no/on/off/1/0).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from jsonschema import Draft4Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

from warmwhisk_invoker_patch.manifest import ML_KIND

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "openwhisk" / "apiv1swagger.master.json"
DOC_URI = "urn:openwhisk:apiv1swagger"
# The kinds of the stack's runtimes manifest (its python:3-ml entry, from the invoker patch).
KNOWN_KINDS = frozenset({"blackbox", ML_KIND})
# pekko-http's Boolean query values (PredefinedFromStringUnmarshallers.scala).
_TRUE = frozenset({"true", "yes", "on", "1"})

ACTION = "/namespaces/{namespace}/actions/{actionName}"
ACTIONS = "/namespaces/{namespace}/actions"
ACTIVATIONS = "/namespaces/{namespace}/activations"
ACTIVATION = "/namespaces/{namespace}/activations/{activationid}"
ACTIVATION_LOGS = ACTIVATION + "/logs"
ACTIVATION_RESULT = ACTIVATION + "/result"
NAMESPACES = "/namespaces"


@dataclass(frozen=True)
class Exchange:
    """One request and its answer: what the checker reads of them."""

    method: str
    path: str  # the request's path, "/api/v1/...", still percent-encoded
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, response: requests.Response) -> Exchange:
        url = urlsplit(str(response.request.url))
        return cls(
            method=str(response.request.method).upper(),
            path=url.path,
            status=response.status_code,
            body=response.content,
            headers={k.lower(): v for k, v in response.headers.items()},
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
        )

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in _TRUE

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Problem:
    """One way an answer does not fit. `validator`, `where`, `instance` and `schema` come from
    jsonschema for schema problems."""

    what: str  # "operation", "status", "content-type", "json", "schema", "error-code"
    message: str
    validator: str | None = None
    where: tuple[str | int, ...] = ()
    instance: Any = None
    schema: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        where = "/".join(str(p) for p in self.where)
        return f"{self.what}{' at ' + where if where else ''}: {self.message}"


@dataclass(frozen=True)
class Allowance:
    """A whitelist entry: problems it matches are not reported."""

    name: str
    why: str
    matches: Callable[[str | None, Exchange, Problem], bool]  # (path template, exchange, problem)


@dataclass(frozen=True)
class Body:
    """A schema OpenWhisk's code answers where the swagger has none or a wrong one."""

    name: str
    why: str
    applies: Callable[[str, Exchange], bool]
    schema: Mapping[str, Any]


def _ref(definition: str) -> dict[str, str]:
    return {"$ref": f"{DOC_URI}#/definitions/{definition}"}


def _count_schema(collection: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [collection],
        "properties": {collection: {"type": "integer", "minimum": 0}},
        "additionalProperties": False,
    }


def _blocking_record(template: str, exchange: Exchange) -> bool:
    return (
        template == ACTION
        and exchange.method == "POST"
        and exchange.flag("blocking")
        and exchange.status in (200, 500, 502)
    )


def _has_activation_id(exchange: Exchange) -> bool:
    """A 200 or 502 is always a record; a 500 is one only when it names its activation."""
    if exchange.status != 500:
        return True
    try:
        body = exchange.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "activationId" in body


def _result_only(exchange: Exchange) -> bool:
    """`result=true`, or a JSON array result, which comes back bare whatever `result` says."""
    if exchange.flag("result"):
        return True
    try:
        return isinstance(exchange.json(), list)
    except ValueError:
        return False


BODIES: tuple[Body, ...] = (
    Body(
        "blocking invoke: the result alone",
        "With `result=true`, or when the result is a JSON array, a blocking invoke answers the "
        "action's result, any JSON (Actions.scala L293-299); the swagger gives 200 no schema.",
        lambda t, e: _blocking_record(t, e) and _result_only(e),
        {},
    ),
    Body(
        "blocking invoke: the activation record",
        "A blocking invoke that completed answers `activation.toExtendedJson()` with 200 (success), "
        "502 (application or developer error) or 500 (whisk error) (Actions.scala L293-315); the "
        "swagger gives 200 and 502 no schema and 500 `ErrorMessage`. (A 500 without an "
        "activation id is the invoke's own failure, an `ErrorMessage`: Actions.scala L326-328.)",
        lambda t, e: _blocking_record(t, e) and not _result_only(e) and _has_activation_id(e),
        _ref("Activation"),
    ),
    Body(
        "DELETE answers the deleted action",
        "`require-response-payload` is on by default, so DELETE answers 200 with the deleted "
        "document (ApiUtils.scala L403-406, application.conf L614); the swagger's `DeletedItem` "
        "has no schema.",
        lambda t, e: t == ACTION and e.method == "DELETE" and e.status == 200,
        _ref("Action"),
    ),
    Body(
        "count=true on actions",
        '`count=true` answers `{"actions": N}` (Actions.scala L429-432, WhiskStore.scala '
        "L189-203); the swagger does not document `count`.",
        lambda t, e: t == ACTIONS and e.method == "GET" and e.status == 200 and e.flag("count"),
        _count_schema("actions"),
    ),
    Body(
        "count=true on activations",
        '`count=true` answers `{"activations": N}` (Activations.scala L163-165, '
        "ArtifactActivationStore.scala L73-85); the swagger does not document `count`.",
        lambda t, e: t == ACTIVATIONS and e.method == "GET" and e.status == 200 and e.flag("count"),
        _count_schema("activations"),
    ),
    Body(
        "docs=true lists full records",
        "`docs=true` lists `toExtendedJson()` records (Activations.scala L173-179), which have "
        "`subject`, `response` and `logs`; the swagger gives every list item `ActivationBrief`.",
        lambda t, e: t == ACTIVATIONS and e.method == "GET" and e.status == 200 and e.flag("docs"),
        {"type": "array", "items": _ref("Activation")},
    ),
)


def _enum_kind(_template: str | None, _exchange: Exchange, problem: Problem) -> bool:
    return (
        problem.validator == "enum"
        and problem.where[-2:] == ("exec", "kind")
        and problem.instance in KNOWN_KINDS
    )


def _status_code_3(_template: str | None, _exchange: Exchange, problem: Problem) -> bool:
    return problem.validator == "enum" and problem.where[-1:] == ("statusCode",) and problem.instance == 3


def _parameter_flags(_template: str | None, _exchange: Exchange, problem: Problem) -> bool:
    if problem.validator != "additionalProperties" or not isinstance(problem.instance, dict):
        return False
    named = set((problem.schema or {}).get("properties", {}))
    return named == {"key", "value"} and set(problem.instance) - named <= {"init", "encryption"}


def _status(statuses: Mapping[str | None, frozenset[int]]) -> Callable[[str | None, Exchange, Problem], bool]:
    """Matches an undocumented status of one of `statuses`' operations (None: any operation)."""

    def matches(template: str | None, exchange: Exchange, problem: Problem) -> bool:
        if problem.what != "status":
            return False
        allowed = statuses.get(template, frozenset()) | statuses.get(None, frozenset())
        return exchange.status in allowed

    return matches


ALLOWANCES: tuple[Allowance, ...] = (
    Allowance(
        "kinds beyond the swagger's enum",
        "`ActionExec.kind` is a fixed enum that lags the runtimes manifest (it still lists "
        "nodejs:16, which ansible/files/runtimes.json no longer has) and cannot name a "
        "deployment's own kinds; OpenWhisk's SwaggerValidator.scala whitelists 'Ignore invalid "
        "action kinds' for the same reason. Only the kinds of this stack's manifest pass.",
        _enum_kind,
    ),
    Allowance(
        "statusCode 3 in activation summaries",
        "`ActivationBrief.statusCode` (and `Activation.statusCode`) is an enum [0, 1, 2], but a "
        "whisk internal error is 3 (ActivationResult.scala L63-76), and list summaries carry it "
        "(WhiskActivation.scala summaryAsJson L78-96).",
        _status_code_3,
    ),
    Allowance(
        "init and encryption of parameters",
        "`KeyValue` names only `key` and `value`, but a parameter is written with `init: true` "
        "and `encryption` when set (Parameter.scala L88-95); only those two extra names pass.",
        _parameter_flags,
    ),
    Allowance(
        "400 on every operation",
        "pekko-http rejects a malformed query parameter, path segment or body with 400 before the "
        "operation runs (RestAPIs.scala L115-140 `limit`/`skip`, Actions.scala L768-779 "
        "`timeout`, Activations.scala L45-62 and L101-107, Entities.scala L148-160 names; "
        "RejectionHandler.scala L197-209); the swagger lists 400 only on PUT and DELETE.",
        _status({None: frozenset({400})}),
    ),
    Allowance(
        "403 on lists and activations of another namespace",
        "Every collection checks the caller's rights on the path's namespace and answers 403 "
        "(AuthorizedRouteDispatcher.scala L77-85, Entitlement.scala L334-350); the swagger "
        "lists 403 only on single actions.",
        _status(
            {
                t: frozenset({403})
                for t in (ACTIONS, ACTIVATIONS, ACTIVATION, ACTIVATION_LOGS, ACTIVATION_RESULT)
            }
        ),
    ),
    Allowance(
        "413 on invoke",
        "An invoke payload over `whisk.activation.payload.max` is 413 (Entities.scala L119-126, "
        "ActionsApiTests.scala L969-979); the swagger lists 413 only on PUT.",
        _status({ACTION: frozenset({413})}),
    ),
    Allowance(
        "415 on a body that is not JSON",
        "PUT and POST take `application/json` only; another Content-Type is pekko's 415 "
        "(RejectionHandler.scala L284-293); the swagger does not list 415.",
        _status({ACTION: frozenset({415})}),
    ),
)

# Statuses the swagger lists that OpenWhisk's code never answers: a stack answering one is wrong.
NEVER: Mapping[tuple[str, str], Mapping[int, str]] = {
    ("POST", ACTION): {
        408: "a blocking invoke that runs past its wait answers 202 {activationId} "
        "(PrimitiveActions.scala L657-658, Actions.scala L288-292), never 408",
    },
}


class SwaggerChecker:
    """Checks exchanges against the swagger; `hook` plugs it into a `requests.Session`."""

    def __init__(
        self,
        path: Path = FIXTURE,
        allowances: tuple[Allowance, ...] = ALLOWANCES,
        bodies: tuple[Body, ...] = BODIES,
    ) -> None:
        self.document: dict[str, Any] = json.loads(path.read_text())
        self.allowances = allowances
        self.bodies = bodies
        self.base_path: str = self.document["basePath"]
        self._strict = _closed(self.document)
        self._registry: Registry[Any] = Registry().with_resource(
            DOC_URI, DRAFT4.create_resource(self._strict)
        )
        self.checked: list[tuple[str, str, int]] = []  # (method, template, status) of each answer

    # -- lookup ------------------------------------------------------------------------------------
    def template(self, path: str) -> str | None:
        """The swagger's path template for a request path (the most literal one), or None."""
        if not path.startswith(self.base_path):
            return None
        segments = path[len(self.base_path) :].rstrip("/").split("/")
        best: tuple[int, str] | None = None
        for template in self.document["paths"]:
            parts = template.split("/")
            if len(parts) != len(segments):
                continue
            if all(p.startswith("{") or p == s for p, s in zip(parts, segments, strict=True)):
                literal = sum(not p.startswith("{") for p in parts)
                if best is None or literal > best[0]:
                    best = (literal, template)
        return best[1] if best else None

    def response_schema(self, template: str, method: str, status: int) -> Mapping[str, Any] | None:
        """The swagger's schema of one answer (None: the swagger gives none)."""
        response = self.document["paths"][template][method.lower()]["responses"].get(str(status))
        if response is None:
            return None
        if "$ref" in response:
            response = self._pointer(response["$ref"])
        schema = response.get("schema")
        return _absolute(schema) if schema is not None else None

    def _pointer(self, ref: str) -> Any:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    # -- checking ----------------------------------------------------------------------------------
    def check(self, exchange: Exchange) -> list[Problem]:
        """What does not fit, less what the allowances excuse."""
        template = self.template(exchange.path)
        found = list(self._problems(template, exchange))
        return [p for p in found if not any(a.matches(template, exchange, p) for a in self.allowances)]

    def _problems(self, template: str | None, exchange: Exchange) -> Iterator[Problem]:
        method = exchange.method.lower()
        operation = self.document["paths"].get(template or "", {}).get(method)
        if template is None or operation is None:
            yield Problem("operation", f"{exchange.method} {exchange.path} is not in OpenWhisk's swagger")
            return
        never = NEVER.get((exchange.method, template), {}).get(exchange.status)
        if never:
            yield Problem("status", f"{exchange.status}: {never}")
        elif str(exchange.status) not in operation["responses"]:
            listed = ", ".join(operation["responses"])
            yield Problem(
                "status", f"{exchange.status} is not listed for {exchange.method} {template} ({listed})"
            )
        if not exchange.body:
            return
        content_type = exchange.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            yield Problem("content-type", f"{content_type or 'none'} instead of application/json")
        try:
            body = exchange.json()
        except ValueError as exc:
            yield Problem("json", f"the body is not JSON ({exc}): {exchange.body[:200]!r}")
            return
        schema, is_error = self._schema(template, exchange)
        if schema is not None:
            validator = Draft4Validator(schema, registry=self._registry)
            for error in validator.iter_errors(body):
                yield Problem(
                    "schema", error.message, str(error.validator), tuple(error.absolute_path),
                    error.instance, error.schema if isinstance(error.schema, Mapping) else None,
                )  # fmt: skip
        if is_error and isinstance(body, dict) and body.get("code") != exchange.headers.get("x-request-id"):
            yield Problem("error-code", f"code {body.get('code')!r} is not the X-Request-ID header")

    def _schema(self, template: str, exchange: Exchange) -> tuple[Mapping[str, Any] | None, bool]:
        """(schema of the body, whether it is an error body)."""
        for body in self.bodies:
            if body.applies(template, exchange):
                return body.schema, False
        if exchange.status >= 400:
            return _ref("ErrorMessage"), True
        return self.response_schema(template, exchange.method, exchange.status), False

    def hook(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> requests.Response:
        """A `requests` response hook: raises AssertionError on an answer that does not fit."""
        exchange = Exchange.of(response)
        problems = self.check(exchange)
        if problems:
            listed = "\n  ".join(str(p) for p in problems)
            raise AssertionError(
                f"{exchange.method} {response.request.url} -> {exchange.status} does not fit OpenWhisk's "
                f"swagger:\n  {listed}\nbody: {exchange.body[:1000]!r}"
            )
        self.checked.append((exchange.method, self.template(exchange.path) or "", exchange.status))
        return response

    def session(self, auth: tuple[str, str] | None = None) -> requests.Session:
        """A session whose every answer is checked (`auth`: Basic credentials, or none)."""
        session = requests.Session()
        session.auth = auth
        session.hooks["response"].append(self.hook)
        return session


def _absolute(schema: Any) -> Any:
    """A copy of a schema taken out of the document with its `#/...` refs made absolute."""
    if isinstance(schema, dict):
        return {
            k: (DOC_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else _absolute(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_absolute(v) for v in schema]
    return schema


def _closed(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with `additionalProperties: false` on every definition that lists properties
    and says nothing about others (the file itself stays verbatim)."""
    strict = copy.deepcopy(dict(document))
    for definition in strict["definitions"].values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return strict
