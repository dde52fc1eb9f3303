"""The whole stack, assembled: state, keys, Redis and the scaler (warmwhisk mode), the invoker and
the API server; `Stack.stop` removes every container and process it started.

Modes:

* "warmwhisk": action containers get the invoker patch's settings
  (`warmwhisk_invoker_patch.ContainerConfig`, routed mode, concurrency on) and forward to warm
  model hosts that a real scaler (with a private Redis) starts; ML actions' /init carries their
  namespace's registry credential, as an operator following ansible/README.md attaches it.
* "stock": OpenWhisk's own settings (`__OW_ALLOW_CONCURRENT=false`, concurrency limit 1), the
  action and its model in the container (direct mode): one activation per container.

Both mount the model folders read-only at /models (the invoker patch's volume) and keep
`python:3-ml`'s stem cells (its manifest entry from the invoker patch) prewarmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import docker
from aiohttp import web

from warmwhisk_invoker_patch import ContainerConfig, Limits
from warmwhisk_invoker_patch.grammar import parse_byte_size
from warmwhisk_invoker_patch.manifest import ML_FAMILY, ML_KIND, ml_runtime_entry
from warmwhisk_protocol.credentials import without_credential

from .actions import ActionRules, LimitRange
from .api import Api, ApiSettings
from .containers import LABEL, LOG_ACTIVATION_IDS, Engine
from .invoker import Invoker, InvokerSettings
from .pool import Pool, StemCell
from .services import RedisProcess, ScalerProcess
from .store import Store

Mode = Literal["warmwhisk", "stock"]
ALLOW_CONCURRENT = "__OW_ALLOW_CONCURRENT"
MIB = 1024 * 1024


@dataclass(frozen=True)
class StackOptions:
    port: int = 3233
    state_dir: Path = Path("build/devstack")
    wskprops: Path | None = Path("build/wskprops")
    mode: Mode = "warmwhisk"
    image: str = "warmwhisk/runtime:dev"
    models_dir: Path = Path("build/models")
    user_memory_mb: int = 8192
    host_memory_mb: int = 2048  # each model host's memory limit (warmwhisk mode)
    idle_timeout_s: float = 600.0
    namespaces: tuple[str, ...] = ("guest",)
    prewarm: bool = True
    max_in_flight: int = 500
    labels: Mapping[str, str] = field(default_factory=dict)


def stack_id(state_dir: Path) -> str:
    """A stable id per state folder: a restarted stack finds (and removes) what it left."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]


def rules_for(mode: Mode, limits: Limits, manifest: Mapping[str, object]) -> ActionRules:
    """Limit ranges: OpenWhisk's minima and defaults, the invoker patch's maxima; concurrency
    above 1 only with the patch (stock OpenWhisk's maximum is 1)."""
    concurrency_max = limits.concurrency_max if mode == "warmwhisk" else 1
    return ActionRules(
        manifest=manifest,
        limits={
            "timeout": LimitRange(100, limits.time_max_s * 1000, 60_000),
            "memory": LimitRange(128, limits.memory_max_mb, 256),
            "logs": LimitRange(0, 10, 10),
            "concurrency": LimitRange(1, concurrency_max, 1),
        },
    )


def _mb(size: str) -> int:
    return parse_byte_size(size) // MIB


def image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.id = stack_id(options.state_dir)
        self.keys: dict[str, tuple[str, str]] = {}
        self.redis: RedisProcess | None = None
        self.scaler: ScalerProcess | None = None
        self.invoker: Invoker | None = None
        self._runner: web.AppRunner | None = None
        self._store: Store | None = None
        self._docker: docker.DockerClient | None = None
        self._credentials: dict[str, str] = {}

    @property
    def api_host(self) -> str:
        return f"http://127.0.0.1:{self.options.port}"

    @property
    def label(self) -> str:
        return f"{LABEL}={self.id}"

    async def start(self) -> Stack:
        options = self.options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self._docker = docker.from_env()
        self._remove_leftovers()
        self._store = Store(options.state_dir / "stack.db")
        for namespace in options.namespaces:
            self.keys[namespace] = self._store.ensure_namespace(namespace)
        self._write_keys()

        entry = ml_runtime_entry(tag=image_tag(options.image))
        manifest = {"runtimes": {ML_FAMILY: [entry]}, "blackboxes": []}
        models = str(options.models_dir.resolve())
        if options.mode == "warmwhisk":
            self.redis = RedisProcess().start()
            # The Redis is new on every start, so the prefix needs no salt; a fixed one lets tools
            # (the benchmark) find the stack's keys with the scaler's URL file.
            prefix = f"devstack-{self.id}"
            self.scaler = ScalerProcess(
                self.redis.url,
                options.state_dir,
                image=options.image,
                model_dir=options.models_dir.resolve(),
                prefix=prefix,
                host_memory_mb=options.host_memory_mb,
            )
            await asyncio.to_thread(self.scaler.start)
            config = ContainerConfig(
                registry_address=without_credential(self.redis.url), models_dir=models, prefix=prefix
            )
            env = {**config.environment(), LOG_ACTIVATION_IDS: "true"}
        else:
            config = ContainerConfig(mode="direct", models_dir=models)
            # OpenWhisk's own extraEnvVars_0
            env = {**config.environment(), ALLOW_CONCURRENT: "false", LOG_ACTIVATION_IDS: "true"}
        volumes = {}
        for value in config.docker_args().get("volume", []):
            source, target, mode = value.split(":")
            volumes[source] = {"bind": target, "mode": mode}
        settings = InvokerSettings(
            env=env, volumes=volumes, images={ML_KIND: options.image},
            credential_kinds=frozenset({ML_KIND}) if options.mode == "warmwhisk" else frozenset(),
            idle_timeout_s=options.idle_timeout_s, labels={**options.labels, LABEL: self.id},
        )  # fmt: skip
        cells = tuple(
            StemCell(ML_KIND, _mb(cell["memory"]), cell.get("initialCount") or cell["count"])
            for cell in entry.get("stemCells", [])
        ) if options.prewarm else ()  # fmt: skip
        engine = Engine(self._docker, api_host=self.api_host)
        self.invoker = Invoker(
            engine, Pool(options.user_memory_mb, cells), self._store, settings, self._credential
        )
        self.invoker.start()
        api = Api(self._store, self.invoker, rules_for(options.mode, Limits(), manifest),
                  ApiSettings(max_in_flight=options.max_in_flight))  # fmt: skip
        self._runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", options.port).start()
        return self

    async def _credential(self, namespace: str) -> str:
        if namespace not in self._credentials:
            assert self.scaler is not None
            self._credentials[namespace] = await asyncio.to_thread(self.scaler.credential, namespace)
        return self._credentials[namespace]

    def _write_keys(self) -> None:
        """`build/wskprops` for the first namespace (wsk's .wskprops format) and one 0600 file per
        namespace under the state folder (`auth/<namespace>`: `uuid:key`)."""
        auth_dir = self.options.state_dir / "auth"
        auth_dir.mkdir(mode=0o700, exist_ok=True)
        for namespace, (key_uuid, secret) in self.keys.items():
            path = auth_dir / namespace
            path.write_text(f"{key_uuid}:{secret}\n")
            path.chmod(0o600)
        if self.options.wskprops is not None:
            key_uuid, secret = self.keys[self.options.namespaces[0]]
            self.options.wskprops.parent.mkdir(parents=True, exist_ok=True)
            self.options.wskprops.write_text(
                f"APIHOST={self.api_host}\nAUTH={key_uuid}:{secret}\nNAMESPACE=_\n"
            )
            self.options.wskprops.chmod(0o600)

    def _remove_leftovers(self) -> None:
        """Containers a killed stack of the same state folder left behind."""
        assert self._docker is not None
        for handle in self._docker.containers.list(all=True, filters={"label": self.label}):
            with contextlib.suppress(docker.errors.DockerException):
                handle.remove(force=True)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.invoker is not None:
            await self.invoker.stop()
        if self.scaler is not None:
            await asyncio.to_thread(self.scaler.stop)
            await asyncio.to_thread(self._remove_hosts, self.scaler.owner_label)
        if self.redis is not None:
            self.redis.close()
        if self._docker is not None:
            await asyncio.to_thread(self._remove_leftovers)
            self._docker.close()
        if self._store is not None:
            self._store.close()

    def _remove_hosts(self, owner_label: str) -> None:
        assert self._docker is not None
        for handle in self._docker.containers.list(all=True, filters={"label": owner_label}):
            with contextlib.suppress(docker.errors.DockerException):
                handle.remove(force=True)
