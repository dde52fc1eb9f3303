"""OpenWhisk's REST API v1, the subset users and clients touch, as an aiohttp application.

Paths, methods, query parameters, status codes, bodies and headers follow the controller
(apache/openwhisk 1fae641a2; `../shared/reference/ow-rest-api.md` cites each rule):

======  ====================================================  =====================================
GET     /api/v1                                               API info (no auth)
GET     /api/v1/namespaces                                    ``["<caller's namespace>"]``
GET     /api/v1/namespaces/{ns}/actions                       list: ``limit``, ``skip``, ``count``
PUT     /api/v1/namespaces/{ns}/actions/{name}                create; ``overwrite=true`` updates
GET     /api/v1/namespaces/{ns}/actions/{name}                the action (``code=false``: no code)
DELETE  /api/v1/namespaces/{ns}/actions/{name}                the deleted action
POST    /api/v1/namespaces/{ns}/actions/{name}                invoke: ``blocking``, ``result``, ``timeout``
GET     /api/v1/namespaces/{ns}/activations                   list: ``name``, ``limit``, ``skip``,
                                                              ``since``, ``upto``, ``docs``, ``count``
GET     /api/v1/namespaces/{ns}/activations/{id}[/result|/logs]
======  ====================================================  =====================================

Every answer is JSON with ``X-Request-ID`` (reused from the request unless it starts with
``sid_``) and the CORS headers; every error is ``{"error": ..., "code": <request id>}``. Invoke
answers carry ``x-openwhisk-activation-id``. ``{ns}`` may be ``_`` (the caller's own). Not here:
packages, triggers, rules, sequences, web actions, per-minute throttling (a bound on activations
in flight per namespace answers 429 instead).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import actions, activations, messages, wire
from .actions import ActionRules
from .invoker import Invoker
from .store import Store
from .wire import ApiError

REQUEST_ID = "X-Request-ID"
ACTIVATION_ID_HEADER = "x-openwhisk-activation-id"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
    ),
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
}
_TID_CHARS = string.ascii_letters + string.digits
# The HTTP server's own cap on any body (pekko's max-content-length: 50m).
MAX_BODY_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class ApiSettings:
    payload_max_bytes: int = 1024 * 1024  # whisk.activation.payload.max
    blocking_wait_ms: int = 60_000  # max-wait-for-blocking-activation
    max_in_flight: int = 500  # activations running or waiting per namespace (OpenWhisk: 429)
    build: str = "warmwhisk-devstack"


def _tid(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID, "")
    if given and not given.startswith("sid_") and len(given) <= 256:
        return given
    return "".join(secrets.choice(_TID_CHARS) for _ in range(32))


def _skipped(count: int, skip: int) -> int:
    """A count with `skip`: what a list would hold without its limit (CouchDbRestStore.count
    L343-347: `count - skip`, at least 0)."""
    return max(0, count - skip)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class Api:
    def __init__(self, store: Store, invoker: Invoker, rules: ActionRules, settings: ApiSettings) -> None:
        self.store = store
        self.invoker = invoker
        self.rules = rules
        self.settings = settings
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- application ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._envelope], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/api/v1", self.info)
        app.router.add_get("/api/v1/namespaces", self._authed(self.namespaces))
        base = "/api/v1/namespaces/{ns}"
        app.router.add_get(base + "/actions", self._authed(self.list_actions))
        app.router.add_get(base + "/actions/", self._authed(self.list_actions))
        app.router.add_put(base + "/actions/{name}", self._authed(self.put_action))
        app.router.add_get(base + "/actions/{name}", self._authed(self.get_action))
        app.router.add_delete(base + "/actions/{name}", self._authed(self.delete_action))
        app.router.add_post(base + "/actions/{name}", self._authed(self.invoke))
        app.router.add_get(base + "/activations", self._authed(self.list_activations))
        app.router.add_get(base + "/activations/", self._authed(self.list_activations))
        app.router.add_get(base + "/activations/{id}", self._authed(self.get_activation))
        app.router.add_get(base + "/activations/{id}/{part:result|logs}", self._authed(self.get_activation))
        app.router.add_route("OPTIONS", "/api/v1{tail:.*}", self.options)
        app.on_shutdown.append(self._drain)
        return app

    async def _drain(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @web.middleware
    async def _envelope(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Request id, CORS, and OpenWhisk's JSON error body for every failure."""
        tid = _tid(request)
        request["tid"] = tid
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _json({"error": exc.message, "code": tid}, exc.status, exc.headers)
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            # pekko's MethodRejection answer carries `Allow` too (RejectionHandler.scala L179-183).
            response = _json(
                {"error": messages.METHOD_NOT_ALLOWED.format(methods=allowed), "code": tid},
                405,
                {"Allow": allowed},
            )
        except web.HTTPNotFound:
            response = _json({"error": messages.ROUTE_NOT_FOUND, "code": tid}, 404)
        except web.HTTPRequestEntityTooLarge as exc:
            text = messages.request_too_large(exc.actual_size or 0, exc.max_size or MAX_BODY_BYTES)
            response = _json({"error": text, "code": tid}, 413)
        response.headers[REQUEST_ID] = tid
        if request.path.startswith("/api/v1"):
            response.headers.update(CORS)
        return response

    async def info(self, _request: web.Request) -> web.Response:
        return _json({
            "description": "OpenWhisk API (warmwhisk development stack)", "api_version": "1.0.0",
            "api_version_path": "v1", "build": self.settings.build, "buildno": "dev",
            "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
        })  # fmt: skip

    async def options(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    # -- auth ----------------------------------------------------------------------------------------
    def _authed(
        self, handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def authed(request: web.Request) -> web.StreamResponse:
            return await handler(request, self._caller(request))

        return authed

    def _caller(self, request: web.Request) -> str:
        challenge = {"WWW-Authenticate": messages.AUTH_CHALLENGE}
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise ApiError(401, messages.AUTH_MISSING, challenge)
        try:
            user, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, messages.AUTH_INVALID, challenge) from None
        namespace = self.store.namespace_of(user, secret) if sep else None
        if namespace is None:
            raise ApiError(401, messages.AUTH_INVALID, challenge)
        return namespace

    @staticmethod
    def _namespace(request: web.Request, caller: str, entity: str | None = None) -> str:
        """The path's namespace (`_` is the caller's); another one is 403."""
        path_ns = request.match_info["ns"]
        if path_ns in ("_", caller):
            return caller
        wire.check_name(path_ns)
        fqname = f"{path_ns}/{entity}" if entity else path_ns
        raise ApiError(403, messages.not_authorized(fqname))

    # -- bodies --------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: web.Request, limit: int | None = None) -> Any:
        """The JSON body (None when empty); 413 over `limit`, 415 for another content type."""
        if limit is not None and request.content_length is not None and request.content_length > limit:
            raise ApiError(413, messages.request_too_large(request.content_length, limit))
        raw = await request.read()
        if limit is not None and len(raw) > limit:
            raise ApiError(413, messages.request_too_large(len(raw), limit))
        if not raw.strip():
            return None
        if (
            request.content_type not in ("application/json", "application/octet-stream")
            and request.content_type
        ):
            raise ApiError(415, messages.unsupported_content_type(request.headers.get("Content-Type", "")))
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, messages.malformed_content(str(exc))) from None

    def _action(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.store.action(namespace, wire.check_name(name))
        if found is None:
            raise ApiError(404, messages.NOT_FOUND)
        return found

    # -- namespaces and actions ----------------------------------------------------------------------
    async def namespaces(self, _request: web.Request, caller: str) -> web.Response:
        return _json([caller])

    async def list_actions(self, request: web.Request, caller: str) -> web.Response:
        namespace = self._namespace(request, caller)
        query = request.query
        # OpenWhisk parses all three before it answers either way (Actions.scala L417-435).
        limit = wire.parse_limit(query.get("limit"), "actions")
        skip = wire.parse_skip(query.get("skip"), "actions")
        if wire.parse_bool("count", query.get("count")):
            return _json({"actions": _skipped(self.store.count_actions(namespace), skip)})
        return _json([actions.action_summary(doc) for doc in self.store.actions(namespace, skip, limit)])

    async def put_action(self, request: web.Request, caller: str) -> web.Response:
        name = wire.check_name(request.match_info["name"])
        namespace = self._namespace(request, caller, name)
        overwrite = wire.parse_bool("overwrite", request.query.get("overwrite"))
        body = await self._body(request)
        if body is None:
            raise ApiError(400, "Request entity expected but not supplied")
        doc = actions.put_action(
            self.store.action(namespace, name),
            body,
            namespace,
            name,
            overwrite,
            self.rules,
            round(time.time() * 1000),
        )
        self.store.put_action(doc)
        return _json(doc)

    async def get_action(self, request: web.Request, caller: str) -> web.Response:
        name = request.match_info["name"]
        namespace = self._namespace(request, caller, name)
        code = wire.parse_bool("code", request.query.get("code"), default=True)
        return _json(actions.action_view(self._action(namespace, name), code))

    async def delete_action(self, request: web.Request, caller: str) -> web.Response:
        name = request.match_info["name"]
        namespace = self._namespace(request, caller, name)
        doc = self._action(namespace, name)
        self.store.delete_action(namespace, name)
        return _json(doc)

    # -- invoke --------------------------------------------------------------------------------------
    async def invoke(self, request: web.Request, caller: str) -> web.Response:
        received = time.time()
        name = request.match_info["name"]
        namespace = self._namespace(request, caller, name)
        query = request.query
        blocking = wire.parse_bool("blocking", query.get("blocking"))
        result_only = wire.parse_bool("result", query.get("result"))
        wait_ms = wire.parse_timeout(query.get("timeout"), self.settings.blocking_wait_ms)
        payload = await self._body(request, self.settings.payload_max_bytes)
        action = self._action(namespace, name)
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            # spray-json's JsValue.asJsObject, reading `Option[JsObject]` (Actions.scala L251).
            raise ApiError(400, messages.malformed_content(messages.JSON_OBJECT_EXPECTED))
        if self.rules.is_deprecated(action["exec"]["kind"]):
            raise ApiError(400, messages.deprecated_kind(action["exec"]["kind"]))
        if actions.overrides_final(action, payload):
            raise ApiError(400, messages.RESERVED_PARAMETERS)
        if self._in_flight[namespace] >= self.settings.max_in_flight:
            count, allowed = self._in_flight[namespace] + 1, self.settings.max_in_flight
            raise ApiError(
                429, f"Too many concurrent requests in flight (count: {count}, allowed: {allowed})."
            )
        activation_id = activations.new_activation_id()
        task = self._start(action, namespace, payload, activation_id, received)
        header = {ACTIVATION_ID_HEADER: activation_id}
        if not blocking:
            return _json({"activationId": activation_id}, 202, header)
        try:
            stored = await asyncio.wait_for(asyncio.shield(task), wait_ms / 1000)
        except TimeoutError:
            return _json({"activationId": activation_id}, 202, header)
        view = activations.extended(stored)
        status = activations.HTTP_STATUS[stored["response"]["statusCode"]]
        result = view["response"]["result"]
        if result_only or isinstance(result, list):  # an array result comes back bare (Actions.scala)
            return _json(result, status, header)
        return _json(view, status, header)

    def _start(
        self,
        action: dict[str, Any],
        namespace: str,
        payload: dict[str, Any],
        activation_id: str,
        received: float,
    ) -> asyncio.Task[dict[str, Any]]:
        self._in_flight[namespace] += 1
        task = asyncio.ensure_future(self.invoker.run(action, namespace, payload, activation_id, received))
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            self._in_flight[namespace] -= 1
            if not finished.cancelled() and finished.exception() is not None:
                # A bug, not an action's failure: keep the activation answerable as a whisk error.
                exc = finished.exception()
                stored = activations.record(
                    activation_id=activation_id, namespace=namespace, action=action,
                    outcome=activations.Outcome(activations.WHISK_ERROR, {"error": messages.INTERNAL_ERROR}),
                    start_ms=round(received * 1000), end_ms=round(time.time() * 1000), wait_ms=0,
                    init_ms=None, logs=[f"internal error: {type(exc).__name__}"],
                )  # fmt: skip
                self.store.add_activation(stored)

        task.add_done_callback(done)
        return task

    # -- activations ---------------------------------------------------------------------------------
    async def list_activations(self, request: web.Request, caller: str) -> web.Response:
        namespace = self._namespace(request, caller)
        query = request.query
        name = wire.parse_name_filter(query.get("name"))
        since = wire.parse_epoch_ms("since", query.get("since"))
        upto = wire.parse_epoch_ms("upto", query.get("upto"))
        count = wire.parse_bool("count", query.get("count"))
        docs = wire.parse_bool("docs", query.get("docs"))
        # OpenWhisk parses every parameter before it answers either way (Activations.scala L152-182).
        limit = wire.parse_limit(query.get("limit"), "activations")
        skip = wire.parse_skip(query.get("skip"), "activations")
        if count and docs:
            raise ApiError(400, messages.DOCS_WITH_COUNT)
        if count:
            counted = self.store.count_activations(namespace, name=name, since=since, upto=upto)
            return _json({"activations": _skipped(counted, skip)})
        found = self.store.activations(namespace, name=name, since=since, upto=upto, skip=skip, limit=limit)
        view = activations.extended if docs else activations.summary
        return _json([view(doc) for doc in found])

    async def get_activation(self, request: web.Request, caller: str) -> web.Response:
        activation_id = wire.parse_activation_id(request.match_info["id"])
        namespace = self._namespace(request, caller, activation_id)
        stored = self.store.activation(namespace, activation_id)
        if stored is None:
            raise ApiError(404, messages.NOT_FOUND)
        part = request.match_info.get("part")
        if part == "result":
            return _json(activations.result_view(stored))
        if part == "logs":
            return _json({"logs": stored["logs"]})
        return _json(activations.extended(stored))
