"""The HTTP floors the runtime is judged against: a ten-line WSGI function and a Flask app, each
under gunicorn as the runtime ran before its event loop (`RuntimeServer.load_config`'s bind,
time-outs and logging, then gunicorn's gthread worker: 1 process, one thread per admitted
activation plus 4, the same keep-alive), i.e. the card's stack: bare gunicorn + Flask."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.report import logger
from lib.targets import LocalProcess, child_env, free_port, stopped_on_error

ENTRY = Path(__file__).resolve().parent.parent / "bench_runtime.py"
FLOOR_NAMES = {"wsgi": "wsgi", "flask": "bare"}
log = logger("bench", clock=False)


def _wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The least a JSON-in, JSON-out WSGI app can do: read, parse, answer the value."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length))
    out = json.dumps(body.get("value", body)).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def _flask_echo() -> Any:
    from flask import Flask, jsonify, request

    flask_app = Flask("bare")

    @flask_app.post("/run")
    def run() -> Any:
        body = request.get_json()
        return jsonify(body.get("value", body))

    return flask_app


def serve(kind: str, port: int) -> None:
    """`bench_runtime.py --serve-floor {flask,wsgi} PORT`: one floor app, served until SIGTERM."""
    from warmwhisk_runtime.config import load_config
    from warmwhisk_runtime.server import RuntimeServer

    app = _flask_echo() if kind == "flask" else _wsgi_echo

    class FloorServer(RuntimeServer):
        def load_config(self) -> None:
            super().load_config()
            # WSGI apps: gunicorn's thread-per-request worker, sized as the runtime's was.
            for key, value in {
                "worker_class": "gthread",
                "threads": config.server_threads,
                "keepalive": config.keepalive_s,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    config = load_config(["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"], os.environ)
    log(f"{kind} floor: threads={config.server_threads} keepalive={config.keepalive_s}s")
    FloorServer(config).run()


def start_floor(kind: str, logdir: Path) -> LocalProcess:
    """A floor app in its own process; returns once it listens."""
    port = free_port()
    argv = [sys.executable, str(ENTRY), "--serve-floor", kind, str(port)]
    # The same environment as the runtime, so load_config() gives the same thread count.
    server = LocalProcess(FLOOR_NAMES[kind], argv, child_env({"__OW_ALLOW_CONCURRENT": "true"}), port, logdir)
    with stopped_on_error(server):
        server.wait_port(30.0)
    return server
