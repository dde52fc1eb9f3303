"""The scaler's HTTP API: a Flask app factory over one ``Service``.

Every endpoint but ``GET /healthz`` needs ``Authorization: Bearer <token>`` (``--token-file``).
Bodies and answers are JSON; every error is ``{"error": "..."}`` with a 4xx status (503 while
Redis is unavailable), whatever the input: a body over 64 KiB, with a Content-Length or sent
chunked, is 413; a body that is not UTF-8, not JSON, not an object or nested deeper than
``MAX_JSON_DEPTH`` is 400. Any replica answers reads from Redis; writes (``/scale``, pool
configuration) go to Redis too, and the replica holding the lease applies them on its next tick.

======  =========================  =================================================================
GET     /healthz                   ``{"status": "ok", "redis": bool}`` (no token; 200 while serving)
GET     /status                    replica, leader, epoch, host cap (``max_hosts``), pools, controller
GET     /hosts                     live hosts from the registry (heartbeat records, no token)
GET     /actions                   registered actions: spec without code (``code_bytes``) and with
                                   parameter names only (``env_names``), stats
GET     /decisions?limit=N         decision log, newest first (N 1..1000, default 100)
POST    /scale                     ``{"pool": key, "hosts": N | null}``: pin a pool's host count
POST    /namespaces/<ns>/credential  the namespace's registry credential for its ML actions' init
                                   parameter ``WARMWHISK_CREDENTIAL`` (``{"rotate": true}``: a new one)
                                   (N from 0 to the host cap)
GET     /pools/<pool>/config       the pool's policy, knobs and manual host count
PUT     /pools/<pool>/config       replace them (``pool_config.parse``: types and bounds)
GET     /metrics                   Prometheus exposition, read from Redis at scrape time
======  =========================  =================================================================

``<pool>`` is the action key as is, leading slash included: ``/pools//guest/echo@1a2b/config``
(or percent-encoded: ``/pools/%2Fguest%2Fecho%401a2b/config``).
"""

from __future__ import annotations

import hmac
import json
import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from warmwhisk_protocol.records import HOST_STATES
from warmwhisk_protocol.registry import RegistryError

from .pool_config import PoolConfig, PoolConfigError
from .service import Service
from .state import DECISION_LOG_LENGTH

MAX_BODY_BYTES = 64 * 1024
# OpenWhisk's entity names (EntityName's regex): word characters, then also @ . - and spaces.
NAMESPACE_NAME = re.compile(r"\w|\w[\w@ .-]{0,254}[\w@.-]")
# Deepest nesting of arrays and objects a body may have: far beyond any real request, far below
# Python's recursion limit (which json.loads and anything that walks the value recursively share).
MAX_JSON_DEPTH = 512
DEFAULT_DECISIONS = 100
# Endpoints (view names) served without a token.
PUBLIC_ENDPOINTS = frozenset({"healthz"})
AUTH_REALM = 'Bearer realm="warmwhisk-scaler"'


class PoolConverter(PathConverter):
    """An action key in a path: any characters, slashes (a leading one too) included."""

    regex = ".+?"
    part_isolating = False


def create_app(service: Service) -> Flask:
    app = Flask(__name__)
    # One byte more than a body may have: werkzeug stops reading a chunked body (no Content-Length)
    # at this limit without an error, so only a body that reaches it is known to be too large
    # (``_json_body``). A declared Content-Length above it is refused before anything is read.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.url_map.merge_slashes = False  # "/pools//guest/echo@.../config": the key's own slash
    app.url_map.converters["pool"] = PoolConverter
    token = service.settings.token.encode()
    metrics = CollectorRegistry()
    metrics.register(PoolCollector(service))
    metrics.register(ReplicaCollector(service))

    @app.before_request
    def authenticate() -> Response | None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        return _unauthorized(request.headers.get("Authorization"), token)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "redis": service.redis_ok()}

    @app.get("/status")
    def status() -> Any:
        return service.status()

    @app.get("/hosts")
    def hosts() -> Any:
        return {"hosts": service.hosts()}

    @app.get("/actions")
    def actions() -> Any:
        return {"actions": service.actions()}

    @app.post("/namespaces/<namespace>/credential")
    def namespace_credential(namespace: str) -> Any:
        body = _json_body() if request.get_data() else {}
        rotate = body.get("rotate", False)
        if not isinstance(rotate, bool) or set(body) - {"rotate"}:
            raise BadRequest('the body is optional: {"rotate": true|false}')
        if not NAMESPACE_NAME.fullmatch(namespace):
            raise BadRequest(f"{namespace!r} is not an OpenWhisk namespace name")
        return service.namespace_credential(namespace, rotate)

    @app.get("/decisions")
    def decisions() -> Any:
        limit = _int_arg("limit", DEFAULT_DECISIONS, 1, DECISION_LOG_LENGTH)
        return {"decisions": service.decisions(limit)}

    @app.post("/scale")
    def scale() -> Any:
        pool, hosts = _scale_request(_json_body())
        _known_pool(service, pool)
        return _config_answer(service, pool, service.scale(pool, hosts))

    @app.get("/pools/<pool:pool>/config")
    def get_pool_config(pool: str) -> Any:
        _known_pool(service, pool)
        return _config_answer(service, pool, service.pool_config(pool))

    @app.put("/pools/<pool:pool>/config")
    def put_pool_config(pool: str) -> Any:
        body = _json_body()
        _known_pool(service, pool)
        return _config_answer(service, pool, service.set_pool_config(pool, body))

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics), mimetype=CONTENT_TYPE_LATEST)

    _register_error_handlers(app)
    return app


# -- requests ------------------------------------------------------------------------------------


def _unauthorized(header: str | None, token: bytes) -> Response | None:
    """None when ``header`` carries the bearer token; else the 401 answer."""
    scheme, _, given = (header or "").partition(" ")
    if not header:
        return _error(401, "missing Authorization header: send 'Authorization: Bearer <token>'", AUTH_REALM)
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        return _error(401, "invalid bearer token", f'{AUTH_REALM}, error="invalid_token"')
    return None


def _json_body() -> dict[str, Any]:
    """The request body as a JSON object in UTF-8 (any Content-Type); 413 over ``MAX_BODY_BYTES``,
    400 otherwise."""
    data = request.get_data(cache=False)
    if len(data) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    try:
        text = data.decode("utf-8")  # json.loads would also guess UTF-16 and UTF-32
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the body must be a JSON object in UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise BadRequest(f"the body must be a JSON object: {exc}") from None
    except RecursionError:
        body = None  # nested deeper than the interpreter can parse
    if body is None or _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BadRequest(f"the body must be a JSON object nested at most {MAX_JSON_DEPTH} levels deep")
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _depth(value: Any, limit: int) -> int:
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), without recursion; stops
    counting once past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {text!r}")
    return value


def _scale_request(body: dict[str, Any]) -> tuple[str, Any]:
    """The pool and the raw host count (``Service.scale`` checks it against the host cap)."""
    unknown = set(body) - {"pool", "hosts"}
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}; expected pool, hosts")
    pool = body.get("pool")
    if not isinstance(pool, str) or not pool:
        raise BadRequest("pool must be a non-empty string: an action key, e.g. /guest/echo@1a2b")
    if "hosts" not in body:
        raise BadRequest("hosts is required: a whole number >= 0, or null to return the pool to its policy")
    return pool, body["hosts"]


def _known_pool(service: Service, pool: str) -> None:
    if not service.is_pool(pool):
        raise NotFound(f"unknown pool {pool!r}: no registered action and no live host serves it")


def _config_answer(service: Service, pool: str, config: PoolConfig) -> dict[str, Any]:
    return {
        "pool": pool,
        "config": config.to_json(),
        "effective_policy": config.policy or service.settings.policy,
    }


# -- errors --------------------------------------------------------------------------------------


def _error(status: int, message: str, authenticate: str | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    if authenticate:
        response.headers["WWW-Authenticate"] = authenticate
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            message = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif isinstance(exc, NotFound) and request.url_rule is None:
            message = f"no endpoint {request.path}"
        elif isinstance(exc, RequestEntityTooLarge):
            message = f"the body is larger than {MAX_BODY_BYTES} bytes"
        else:
            message = exc.description or exc.name
        response = exc.get_response()  # keeps the exception's headers (Allow, ...)
        response.set_data(json.dumps({"error": message}))
        response.mimetype = "application/json"
        return response

    @app.errorhandler(PoolConfigError)
    def pool_config_error(exc: PoolConfigError) -> Response:
        return _error(400, str(exc))

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(RegistryError)
    def redis_error(exc: Exception) -> Response:
        return _error(503, f"Redis is unavailable: {type(exc).__name__}: {exc}")

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        traceback.print_exception(exc, file=sys.stderr)
        return _error(500, f"internal error: {type(exc).__name__}")


# -- metrics -------------------------------------------------------------------------------------


class PoolCollector:
    """Per-pool gauges and counters, read from Redis at every scrape (any replica gives the same)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        try:
            summaries = self.service.pool_summaries()
        except (redis.RedisError, RegistryError):
            return  # ReplicaCollector reports warmwhisk_scaler_redis_up 0
        hosts = GaugeMetricFamily(
            "warmwhisk_scaler_hosts", "Live model hosts of the pool, by state.", labels=["pool", "state"]
        )
        slots = GaugeMetricFamily(
            "warmwhisk_scaler_slots_in_use", "Slots taken on the pool's hosts.", labels=["pool"]
        )
        waiting = GaugeMetricFamily(
            "warmwhisk_scaler_waiting", "Activations waiting at routers for a slot.", labels=["pool"]
        )
        manual = GaugeMetricFamily(
            "warmwhisk_scaler_manual_hosts",
            "Host count pinned by an operator (absent while the policy decides).",
            labels=["pool"],
        )
        completions = CounterMetricFamily(
            "warmwhisk_scaler_completions", "Activations completed on the pool's hosts.", labels=["pool"]
        )
        acquired = CounterMetricFamily(
            "warmwhisk_scaler_acquired", "Slots acquired for the pool.", labels=["pool"]
        )
        rejected = CounterMetricFamily(
            "warmwhisk_scaler_rejected", "Acquires that found no free slot.", labels=["pool"]
        )
        for summary in summaries:
            pool = summary.pool
            for state in HOST_STATES:
                hosts.add_metric([pool, state], summary.hosts.get(state, 0))
            slots.add_metric([pool], summary.slots_in_use)
            waiting.add_metric([pool], summary.waiting)
            if summary.manual_hosts is not None:
                manual.add_metric([pool], summary.manual_hosts)
            completions.add_metric([pool], summary.completions)
            acquired.add_metric([pool], summary.acquired)
            rejected.add_metric([pool], summary.rejected)
        yield from (hosts, slots, waiting, manual, completions, acquired, rejected)


class ReplicaCollector:
    """This replica: whether Redis answers and whether it holds the control loop's lease."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("warmwhisk_scaler_redis_up", "Whether Redis answered this scrape.")
        leader = GaugeMetricFamily(
            "warmwhisk_scaler_is_leader",
            "1 when this replica holds the lease (runs the control loop).",
            labels=["replica"],
        )
        try:
            is_leader = self.service.is_leader()
        except (redis.RedisError, RegistryError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        leader.add_metric([self.service.replica_id], 1 if is_leader else 0)
        yield from (up, leader)
