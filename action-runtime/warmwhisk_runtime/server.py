"""Serving the runtime: gunicorn, one worker process with an event loop and activation threads.

One process, so every activation in the container shares one copy of the action's state (and
of its models); an event loop for HTTP (`worker.ActionWorker`, `protocol.py`) and a thread per
running activation, so activations overlap. The worker builds the runtime after the fork
(`Service.build`), which is also where it installs per-activation isolation and starts the
metrics port and the mode's background work; gunicorn's `worker_exit` hook stops them
(`Service.close`).
"""

from __future__ import annotations

import os
import signal
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
from .modes import DirectMode, HostMode, Mode, RoutedMode
from .procmem import IdleHeapTrimmer, own_pss_bytes
from .protocol import ActionServer, Limits
from .runner import DeadlineRunner
from .runtime import Runtime
from .store import ModelStore
from .worker import ActionWorker


@dataclass
class Service:
    """The runtime of one worker process and what runs beside it, with its life cycle."""

    runtime: Runtime
    app: ActionApp
    server: ActionServer
    metrics_server: MetricsServer | None = None
    preload: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, config: RuntimeConfig) -> Service:
        """Wire the runtime's parts together in this process (nothing started yet)."""
        sink = LogSink(sys.stdout, sys.stderr, tag_sentinels=config.log_activation_ids)
        environ = ActivationEnviron(os.environ, masked={env_name(key) for key in ACTIVATION_CONTEXT_KEYS})
        install(sink, environ)
        metrics = RuntimeMetrics()
        store = ModelStore(config.model_memory_bytes)
        metrics.watch_models(lambda: store.used_bytes, lambda: store.loads)
        provider = ModelProvider(store, config.model_cache_dir, config.torch_threads)
        runner = DeadlineRunner()
        activity = IdleHeapTrimmer()
        loader = ActionLoader(config, provider, runner, metrics.batch_size.observe)
        mode = _mode(config, loader, runner, store, activity)
        runtime = Runtime(config, sink, metrics, store, runner, mode, activity)
        app = ActionApp(runtime, runner)
        limits = Limits(
            max_body_bytes=config.max_body_bytes,
            keepalive_s=config.keepalive_s,
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
            max_connections=config.max_connections,
        )
        service = cls(runtime, app, ActionServer(app, limits))
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
    runner: DeadlineRunner,
    store: ModelStore,
    activity: IdleHeapTrimmer,
) -> Mode:
    if config.mode == "direct":
        return DirectMode(loader, runner)
    # The registry client is imported only here: direct mode needs no Redis.
    from warmwhisk_protocol.credentials import NamespaceCredential, with_credential
    from warmwhisk_protocol.keys import RedisKeys
    from warmwhisk_protocol.registry import RedisRegistry, connect_redis

    keys = RedisKeys(config.redis_prefix)

    def connect(
        namespace: str, credential: NamespaceCredential | None, url: str | None = None
    ) -> RedisRegistry:
        url = url or config.router_url
        assert url is not None
        if credential is not None:
            url = with_credential(url, credential)
        client = connect_redis(url)
        return RedisRegistry(client, keys.namespace(namespace), heartbeat_ttl_s=config.heartbeat_ttl_s)

    if config.mode == "routed":
        return RoutedMode(connect, runner)
    assert config.secrets is not None  # config refuses host mode without them
    registry = connect(config.namespace, None, config.secrets.registry_url)
    hosted = HostedActions(registry, config.namespace, loader.load_registered)

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
        token=config.secrets.token,
    )
    heartbeat = Heartbeat(registry, identity, state, config.heartbeat_s)
    return HostMode(hosted, heartbeat, config.host_actions, config.heartbeat_s, config.secrets.token)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The server's exit status when its worker died while it was serving (see RuntimeServer).
WORKER_LOST_EXIT = 1


class RuntimeServer(BaseApplication):
    """gunicorn: an arbiter and one worker process, which holds the action and its models.

    The arbiter never replaces that worker. /init happens once per container and its result
    lives in the worker, so a new worker would be an uninitialized runtime inside a container
    OpenWhisk has already initialized: it would accept a second /init (the init-once rule) or
    answer every /run "not initialized". So when the worker exits while the server still listens
    (`os._exit` in action code or at import, SIGKILL or the OOM killer, SIGBUS on a truncated
    model file, a failed boot, the worker retiring itself when too many activations are stuck),
    the whole process exits with WORKER_LOST_EXIT and Docker and OpenWhisk replace the container.
    Activations in flight in a dead worker see their connection close. SIGTERM (docker stop)
    stays a graceful stop with status 0: gunicorn's `Arbiter.stop` closes the listeners before it
    signals the worker, so that exit is expected.
    """

    def __init__(self, config: RuntimeConfig) -> None:
        self._config = config
        self._service: Service | None = None
        super().__init__()

    def load_config(self) -> None:
        settings: dict[str, Any] = {
            "bind": [_bind(self._config.host, self._config.port)],
            "workers": 1,
            # An event loop for HTTP, the runtime's own threads for activations (worker.py); its
            # connection limits and time-outs come from RuntimeConfig (protocol.Limits).
            "worker_class": f"{ActionWorker.__module__}.{ActionWorker.__qualname__}",
            # The worker's loop heartbeats every second, whatever the activations do.
            "timeout": 120,
            # On SIGTERM (docker stop) running activations get this long to finish.
            "graceful_timeout": 30,
            # Nothing at start-up: stdout and stderr belong to activation logs (contract §5).
            "loglevel": "warning",
            "accesslog": None,
            "errorlog": "-",
            "proc_name": PROC_NAME,
            # No control socket: nothing in the container may steer the server (and /action is
            # read-only in a hardened container).
            "control_socket_disable": True,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> ActionServer:
        self._service = Service.build(self._config)
        self._service.runtime.retire = self._retire_worker
        self._service.start()
        return self._service.server

    @staticmethod
    def _retire_worker() -> None:
        """In the worker, when the runtime gave up serving (too many stuck activations) and has
        no admitted activation left: a graceful stop of this worker (answers being written still
        go out), after which `_child_exit` stops the server with a non-zero status."""
        os.kill(os.getpid(), signal.SIGTERM)

    def _child_exit(self, server: Any, worker: Any) -> None:
        """In the arbiter, after a worker exited: unless the server is stopping, stop it too."""
        if not server.LISTENERS:
            return  # Arbiter.stop (SIGTERM, SIGINT, SIGQUIT) emptied them before stopping the worker
        server.halt(
            reason=f"the worker (pid {worker.pid}) exited while serving; a new one would not hold "
            "the initialized action, so the runtime stops and its container must be replaced",
            exit_status=WORKER_LOST_EXIT,
        )

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
