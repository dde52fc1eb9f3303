"""Serving the runtime: gunicorn, one worker process, many threads.

One process, so every activation in the container shares one copy of the action's state (and,
later, of its models); threads, so activations overlap. The worker builds the runtime after
the fork, which is also where it installs per-activation isolation and starts the metrics port.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication

from .app import ActionApp
from .config import RuntimeConfig
from .contract import ACTIVATION_CONTEXT_KEYS, env_name
from .isolation import ActivationEnviron, LogSink, install
from .metrics import MetricsServer, RuntimeMetrics
from .models import ModelProvider
from .routing import Heartbeat, HostedActions, HostIdentity, HostingError, Router
from .runtime import Runtime
from .store import ModelStore


def build_app(config: RuntimeConfig) -> ActionApp:
    """Wire the runtime's parts together in this process; returns the WSGI application."""
    sink = LogSink(sys.stdout, sys.stderr)
    environ = ActivationEnviron(os.environ, masked={env_name(key) for key in ACTIVATION_CONTEXT_KEYS})
    install(sink, environ)
    metrics = RuntimeMetrics()
    store = ModelStore(config.model_memory_bytes)
    metrics.watch_models(lambda: store.used_bytes, lambda: store.loads)
    provider = ModelProvider(store, config.model_cache_dir, config.torch_threads)
    router, hosted = _routing(config)
    runtime = Runtime(config, sink, environ, metrics, provider, router, hosted)
    if hosted is not None:
        _start_host(config, runtime, hosted)
    if config.preload:
        threading.Thread(target=provider.preload, args=(config.preload,), name="preload", daemon=True).start()
    if config.metrics_port:
        MetricsServer(config.metrics_host, config.metrics_port, metrics, runtime.health).start()
    return ActionApp(runtime, config.max_body_bytes)


def _routing(config: RuntimeConfig) -> tuple[Router | None, HostedActions | None]:
    """The registry client for routed and host modes (imported only there: direct mode needs
    neither Redis nor the scaler's package)."""
    if config.mode == "direct":
        return None, None
    from warmwhisk_scaler.keys import RedisKeys
    from warmwhisk_scaler.registry import Registry, connect_redis

    assert config.router_url is not None
    registry = Registry(
        connect_redis(config.router_url),
        RedisKeys(config.redis_prefix),
        heartbeat_ttl_s=3 * config.heartbeat_s,
    )
    if config.mode == "routed":
        return Router(registry), None
    return None, HostedActions(registry, config.namespace)


def _start_host(config: RuntimeConfig, runtime: Runtime, hosted: HostedActions) -> None:
    """Host mode: load the assigned actions in the background and heartbeat from now on."""
    from warmwhisk_scaler.registry import HostRecord

    identity = HostIdentity(
        host_id=config.host_id,
        address=config.advertise,
        namespace=config.namespace,
        limit=config.max_concurrent,
        actions=config.host_actions,
        keepalive_s=config.keepalive_s,
    )
    Heartbeat(hosted.registry, identity, runtime.host_state, config.heartbeat_s, HostRecord).start()

    def load_assigned() -> None:
        # Until every assigned action is loaded: its registration may come later (a router puts
        # it back after Redis lost it), and a failed load is tried again each heartbeat period.
        pending = list(config.host_actions)
        while pending:
            for key in list(pending):
                try:
                    hosted.get(key)
                    pending.remove(key)
                except HostingError as exc:
                    sys.stderr.write(f"warmwhisk host: {exc}; trying again\n")
            if pending:
                time.sleep(config.heartbeat_s)

    threading.Thread(target=load_assigned, name="host-actions", daemon=True).start()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RuntimeServer(BaseApplication):
    def __init__(self, config: RuntimeConfig) -> None:
        self._config = config
        super().__init__()

    def load_config(self) -> None:
        settings: dict[str, Any] = {
            "bind": [_bind(self._config.host, self._config.port)],
            "workers": 1,
            "worker_class": "gthread",
            "threads": self._config.server_threads,
            "keepalive": self._config.keepalive_s,
            # The worker's main loop heartbeats even while every thread runs a long activation.
            "timeout": 120,
            # On SIGTERM (docker stop) running activations get this long to finish.
            "graceful_timeout": 30,
            # Nothing at start-up: stdout and stderr belong to activation logs (contract §5).
            "loglevel": "warning",
            "accesslog": None,
            "errorlog": "-",
            "proc_name": "warmwhisk-runtime",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> ActionApp:
        return build_app(self._config)
