"""Prometheus metrics and the /healthz + /metrics server, on a port of their own.

The action server on :8080 serves only /init and /run, so nothing here is reachable through
an action's routes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Activation durations, in seconds: from a trivial action (sub-millisecond) to a long inference.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._by_outcome: dict[str, Any] = {}
        self._by_kind: dict[str, Any] = {}
        self.activations = Counter(
            "warmwhisk_activations", "Activations that ran, by outcome.", ["outcome"], registry=self.registry
        )
        self.errors = Counter(
            "warmwhisk_errors",
            "Errors by kind: init, exception, timeout, exit, result, refused.",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge("warmwhisk_in_flight", "Activations running now.", registry=self.registry)
        self.duration = Histogram(
            "warmwhisk_activation_seconds",
            "Time from admission to result, per activation.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "warmwhisk_batch_size",
            "Activations per micro-batch (batched actions only).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.init_seconds = Gauge(
            "warmwhisk_init_seconds", "Duration of the successful /init.", registry=self.registry
        )

    def count_activation(self, failure: str | None) -> None:
        """One activation ran: a success, or a failure of the given kind."""
        self._activation_counter("success" if failure is None else "error").inc()
        if failure is not None:
            self.count_error(failure)

    def count_error(self, kind: str) -> None:
        self._error_counter(kind).inc()

    def _activation_counter(self, outcome: str) -> Any:
        counter = self._by_outcome.get(outcome)
        if counter is None:  # labels() costs microseconds per call: resolve each child once
            counter = self._by_outcome[outcome] = self.activations.labels(outcome=outcome)
        return counter

    def _error_counter(self, kind: str) -> Any:
        counter = self._by_kind.get(kind)
        if counter is None:
            counter = self._by_kind[kind] = self.errors.labels(kind=kind)
        return counter

    def watch_models(self, used_bytes: Callable[[], float], loads: Callable[[], float]) -> None:
        """Gauges read from the model store at scrape time."""
        Gauge(
            "warmwhisk_model_resident_bytes", "Bytes of resident models.", registry=self.registry
        ).set_function(used_bytes)
        Gauge(
            "warmwhisk_model_loads", "Model loads completed by this process.", registry=self.registry
        ).set_function(loads)

    def watch_stuck(self, stuck: Callable[[], float]) -> None:
        """Activations still running past their deadline (read at scrape time): each holds a
        thread Python cannot kill; past WARMWHISK_MAX_STUCK the container drains and exits."""
        Gauge(
            "warmwhisk_stuck_activations",
            "Activations still running past their deadline.",
            registry=self.registry,
        ).set_function(stuck)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """A small threaded HTTP server: GET /healthz (JSON) and GET /metrics (Prometheus text)."""

    def __init__(
        self, host: str, port: int, metrics: RuntimeMetrics, health: Callable[[], dict[str, Any]]
    ) -> None:
        handler = _handler_class(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(
    metrics: RuntimeMetrics, health: Callable[[], dict[str, Any]]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                state = health()
                # 503 when unhealthy, so that a probe that reads only the status sees it too.
                status = 200 if state.get("status") == "ok" else 503
                self._send(status, "application/json", json.dumps(state).encode())
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            else:
                self._send(404, "application/json", b'{"error": "not found: try /healthz or /metrics"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # stdout/stderr belong to activation logs; scrapes are not logged

    return Handler
