"""Serving the runtime: gunicorn, one worker process, many threads.

One process, so every activation in the container shares one copy of the action's state (and,
later, of its models); threads, so activations overlap. The worker builds the runtime after
the fork (`Service.build`), which is also where it installs per-activation isolation and starts
the metrics port and the mode's background work; gunicorn's `worker_exit` hook stops them
(`Service.close`).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from gunicorn.app.base import BaseApplication

from warmwhisk_protocol.host import PROC_NAME

from .app import ActionApp
from .config import RuntimeConfig
from .contract import ACTIVATION_CONTEXT_KEYS, env_name
from .hosting import Heartbeat, HostedActions, HostIdentity, HostState
from .invocation import ActionLoader
from .isolation import ActivationEnviron, LogSink, install
from .metrics import MetricsServer, RuntimeMetrics
from .models import ModelProvider
from .modes import DirectMode, HostMode, Mode, RoutedMode, hosted_loader
from .procmem import IdleHeapTrimmer, own_pss_bytes
from .router import Router
from .runner import DeadlineRunner
from .runtime import Runtime
from .store import ModelStore


@dataclass
class Service:
    """The runtime of one worker process and what runs beside it, with its life cycle."""

    runtime: Runtime
    app: ActionApp
    metrics_server: MetricsServer | None = None
    preload: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, config: RuntimeConfig) -> Service:
        """Wire the runtime's parts together in this process (nothing started yet)."""
        sink = LogSink(sys.stdout, sys.stderr)
        environ = ActivationEnviron(os.environ, masked={env_name(key) for key in ACTIVATION_CONTEXT_KEYS})
        install(sink, environ)
        metrics = RuntimeMetrics()
        store = ModelStore(config.model_memory_bytes)
        metrics.watch_models(lambda: store.used_bytes, lambda: store.loads)
        provider = ModelProvider(store, config.model_cache_dir, config.torch_threads)
        runner = DeadlineRunner()
        activity = IdleHeapTrimmer()
        loader = ActionLoader(config, provider, runner, metrics.batch_size.observe)
        mode = _mode(config, loader, environ, runner, store, activity)
        runtime = Runtime(config, sink, metrics, store, runner, mode, activity)
        service = cls(runtime, ActionApp(runtime, config.max_body_bytes))
        if config.preload:
            service.preload = threading.Thread(
                target=provider.preload, args=(config.preload, service._stopping), name="preload", daemon=True
            )
        if config.metrics_port:
            service.metrics_server = MetricsServer(
                config.metrics_host, config.metrics_port, metrics, runtime.health
            )
        return service

    def start(self) -> None:
        self.runtime.mode.start()
        if self.preload is not None:
            self.preload.start()
        if self.metrics_server is not None:
            self.metrics_server.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the background work: the mode's (heartbeat, loading), preloading, the metrics port."""
        self._stopping.set()
        self.runtime.mode.stop()
        if self.preload is not None and self.preload.is_alive():
            self.preload.join(timeout_s)
        if self.metrics_server is not None:
            self.metrics_server.stop()


def _mode(
    config: RuntimeConfig,
    loader: ActionLoader,
    environ: ActivationEnviron,
    runner: DeadlineRunner,
    store: ModelStore,
    activity: IdleHeapTrimmer,
) -> Mode:
    if config.mode == "direct":
        return DirectMode(loader, environ, runner)
    # The registry client is imported only here: direct mode needs no Redis.
    from warmwhisk_protocol.keys import RedisKeys
    from warmwhisk_protocol.registry import RedisRegistry, connect_redis

    assert config.router_url is not None
    keys = RedisKeys(config.redis_prefix)
    registry = RedisRegistry(connect_redis(config.router_url), keys, heartbeat_ttl_s=config.heartbeat_ttl_s)
    if config.mode == "routed":
        return RoutedMode(Router(registry))
    hosted = HostedActions(registry, config.namespace, hosted_loader(loader, environ))

    def state() -> HostState:
        models = store.snapshot()
        return HostState(
            actions=hosted.keys(),
            models=[m["name"] for m in models if m["ready"]],
            in_flight=activity.running,
            memory_bytes=own_pss_bytes() or 0,  # 0: not reported (the registry's "unknown")
            model_load_s=max((m["load_seconds"] for m in models), default=None),
        )

    identity = HostIdentity(
        host_id=config.host_id,
        address=config.advertise,
        namespace=config.namespace,
        limit=config.max_concurrent,
        actions=config.host_actions,
        keepalive_s=config.keepalive_s,
    )
    heartbeat = Heartbeat(registry, identity, state, config.heartbeat_s)
    return HostMode(hosted, heartbeat, config.host_actions, retry_s=config.heartbeat_s)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RuntimeServer(BaseApplication):
    def __init__(self, config: RuntimeConfig) -> None:
        self._config = config
        self._service: Service | None = None
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
            "proc_name": PROC_NAME,
            "worker_exit": self._worker_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> ActionApp:
        self._service = Service.build(self._config)
        self._service.start()
        return self._service.app

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
