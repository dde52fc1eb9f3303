"""`warmwhisk-scaler --redis-url-file FILE --token-file FILE [--backend docker|process]`.

(`python -m warmwhisk_scaler` is the same.) The secrets are read from files so that they never show
in `ps`; `settings.py` lists every flag.

Serves the API (``api.py``) under gunicorn: one worker process, threads. The worker builds the
service (Redis, backend, controller) after the fork and starts its control loop; the
``worker_exit`` hook stops the loop and releases the leader lease, so on SIGTERM another replica
takes over at once instead of after the lease's TTL.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from warmwhisk_protocol.registry import RegistryError

from .api import create_app
from .backends import BackendError
from .service import InsecureRedisError, Service, build
from .settings import ScalerSettings, load_settings


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ScalerServer(BaseApplication):
    def __init__(self, settings: ScalerSettings) -> None:
        self._settings = settings
        self._service: Service | None = None
        super().__init__()

    def load_config(self) -> None:
        settings: dict[str, Any] = {
            "bind": [_bind(self._settings.host, self._settings.port)],
            "workers": 1,  # one control loop per replica; more replicas are more processes
            "worker_class": "gthread",
            "threads": 8,
            "timeout": 60,
            # On SIGTERM: in-flight requests and the loop's current tick get this long.
            "graceful_timeout": 30,
            "loglevel": "warning",
            "accesslog": None,
            "errorlog": "-",
            "proc_name": "warmwhisk-scaler",
            "control_socket_disable": True,  # nothing to steer it but signals
            "worker_exit": self._worker_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """In the worker: build and start the service; a Redis or engine failure, or a Redis open to
        anyone, stops the server (exit status 3)."""
        try:
            self._service = build(self._settings)
        except (RegistryError, BackendError, InsecureRedisError) as exc:
            sys.stderr.write(f"warmwhisk scaler: {exc}\n")
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # the master halts instead of respawning
        self._service.start()
        return create_app(self._service)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None


def main() -> None:
    ScalerServer(load_settings(sys.argv[1:], os.environ)).run()


if __name__ == "__main__":
    main()
