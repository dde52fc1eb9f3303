"""One scaler replica, wired: Redis registry, host backend, controller and its control-loop thread.

``build(settings)`` connects and assembles the parts; ``Service.start()`` runs the control loop in a
background thread (it ticks every ``settings.tick_s`` and acts only while it holds the Redis lease);
``Service.stop()`` ends the loop, gives the lease up and closes the Redis connections. The reads
and the few writes the API offers (pool summaries, the decision log, per-pool configuration) are
methods here too, so the HTTP layer (``api.py``) only translates requests and responses.

``build`` also refuses a Redis that answers anyone (no password) unless ``--insecure-no-auth``,
and fixes the server-wide host cap (``settings.max_hosts``, sized from the backend's memory when
not given): the ``Service`` and its ``Controller`` get settings with the cap filled in. Reads never
show secrets: action specs list their parameters' names only, host records lose their token.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER
from warmwhisk_protocol.forwarding import namespace_of
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.records import HOST_STATES, HostRecord
from warmwhisk_protocol.registry import RedisRegistry, connect_redis

from . import pool_config
from .backends import BackendError, HostBackend, ProcessBackend
from .backends.base import DEFAULT_OWNER
from .controller import Controller, ControlLoop
from .credentials import NamespaceCredentials
from .pool_config import PoolConfig
from .registries import RedisRegistries
from .settings import DEFAULT_HOST_MEMORY_BYTES, MAX_HOSTS_CEILING, ScalerSettings
from .state import RedisLease, RedisScalerStore

# How long ``stop`` waits for the loop's current tick to finish (a tick may be stopping hosts).
STOP_TIMEOUT_S = 20.0
# Fields of an action spec ``/actions`` shows as they are; ``code`` becomes ``code_bytes`` and
# ``env`` (init parameters, often secrets) ``env_names``; anything else is left out, since a spec
# is whatever a router registered.
SHOWN_SPEC_FIELDS = ("namespace", "name", "main", "binary")
# Host record fields ``/hosts`` never shows: what a router must send the host to be let in.
SECRET_HOST_FIELDS = frozenset({"token"})


class InsecureRedisError(RuntimeError):
    """Redis answers commands without a password and ``--insecure-no-auth`` was not given."""


def backend_owner(settings: ScalerSettings) -> str:
    """The owner label of the hosts this deployment starts: every replica of one deployment (one
    key prefix) shares it, so a new leader adopts the hosts another replica started."""
    return f"{DEFAULT_OWNER}.{settings.prefix}"


def make_backend(settings: ScalerSettings) -> HostBackend:
    if settings.backend == "docker":
        from .backends.docker_backend import DockerBackend  # the docker SDK only where it is used

        return DockerBackend.from_env(
            settings.image, owner=backend_owner(settings), secrets_dir=settings.host_secrets_dir,
            bind_host=settings.host_bind,
        )  # fmt: skip
    if settings.backend == "process":
        return ProcessBackend(state_dir=settings.state_dir, owner=backend_owner(settings))
    raise ValueError(f"unknown backend {settings.backend!r}; expected 'docker' or 'process'")


def build(settings: ScalerSettings) -> Service:
    """Connect to Redis (raises ``RegistryError``; ``InsecureRedisError`` when it answers anyone)
    and the backend (``BackendError``), and fix the host cap; nothing runs yet."""
    client = connect_redis(settings.redis_url)
    try:
        check_redis_auth(settings)
        keys = RedisKeys(settings.prefix)
        credentials = NamespaceCredentials(client, keys, settings.credential_grace_s)
        registries = RedisRegistries(client, keys, credentials, settings.heartbeat_ttl_s)
        backend = make_backend(settings)
        settings = dataclasses.replace(settings, max_hosts=host_cap(settings, backend))
    except BaseException:
        client.close()
        raise
    store = RedisScalerStore(client, keys)
    lease = RedisLease(client, keys, f"scaler-{secrets.token_hex(4)}", settings.lease_ttl_s)
    controller = Controller(registries, backend, settings, lease, store)
    return Service(settings, registries, backend, controller, store, client)


def redis_answers_anyone(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the Redis at ``url``'s address answers PING from a client that sends no username
    and no password (it has no ``requirepass`` and its default user is on, without a password)."""
    options = redis.connection.parse_url(url)
    options.pop("username", None)
    options.pop("password", None)
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s, protocol=2,
            retry=Retry(NoBackoff(), 0), **options,
        )
    )  # fmt: skip
    try:
        return probe.ping() is True
    except redis.RedisError:  # NOAUTH, or anything else: it did not answer an anonymous client
        return False
    finally:
        probe.close()
        probe.connection_pool.disconnect()


def check_redis_auth(settings: ScalerSettings) -> None:
    """Refuse (``InsecureRedisError``) a Redis that answers anyone: whoever reaches its port could
    read every host's token and registration and steer activations. With ``--insecure-no-auth``,
    start anyway and say so on stderr."""
    if not redis_answers_anyone(settings.redis_url):
        return
    where = redis_address(settings.redis_url)
    if settings.insecure_no_auth:
        sys.stderr.write(
            f"warmwhisk scaler: WARNING: Redis at {where} answers commands without a password "
            "(--insecure-no-auth): anyone who can reach it can read and change the registry\n"
        )
        return
    raise InsecureRedisError(
        f"Redis at {where} answers commands without a password, so anyone who can reach it can read "
        "and change the registry; refusing to start. Set one (requirepass in redis.conf, or ACL users "
        "with the default user off) and give the URL with it in a file: --redis-url-file FILE holding "
        "redis://:PASSWORD@HOST:PORT/0. To run against it anyway (a throwaway test), add --insecure-no-auth."
    )


def redis_address(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, without its credentials."""
    options = redis.connection.parse_url(url)
    return options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"


def host_cap(settings: ScalerSettings, backend: HostBackend) -> int:
    """The most hosts this scaler runs: ``settings.max_hosts``, else the backend's memory over
    the memory of one host (``host_memory_bytes``, or 1 GiB), between 1 and ``MAX_HOSTS_CEILING``."""
    if settings.max_hosts is not None:
        return settings.max_hosts
    per_host = settings.host_memory_bytes or DEFAULT_HOST_MEMORY_BYTES
    return max(1, min(MAX_HOSTS_CEILING, backend_memory_bytes(settings, backend) // per_host))


def backend_memory_bytes(settings: ScalerSettings, backend: HostBackend) -> int:
    """Memory the hosts share: the Docker engine's (``docker info``'s MemTotal), or this machine's
    for the process backend; BackendError when the engine does not say."""
    if settings.backend != "docker":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import docker.errors  # the docker SDK only where it is used
    import requests

    try:
        info = backend.client.info()  # type: ignore[attr-defined]
        return int(info["MemTotal"])
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BackendError(f"reading the Docker engine's memory (docker info): {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"the Docker engine reports no MemTotal ({exc!r}); give the host cap: --max-hosts N"
        ) from exc


@dataclass(frozen=True)
class PoolSummary:
    """One pool (an action key) as every replica can read it from Redis."""

    pool: str
    # Live hosts serving the pool by state; a host the scaler set to limit 0 counts as draining.
    hosts: dict[str, int]
    # Slots taken on those hosts (acquired, not released yet).
    slots_in_use: int
    # Activations waiting at routers for a slot.
    waiting: int
    acquired: int
    rejected: int
    completions: int
    # The policy in force: the pool's own, else the scaler's default.
    policy: str
    knobs: dict[str, Any]
    manual_hosts: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Service:
    settings: ScalerSettings
    registries: RedisRegistries
    backend: HostBackend
    controller: Controller
    store: RedisScalerStore
    redis: redis.Redis
    _loop: ControlLoop | None = field(default=None, init=False, repr=False)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the control loop in a background thread (once)."""
        if self._loop is None:
            self._loop = ControlLoop(self.controller)

    def stop(self) -> None:
        """End the loop (after its current tick), release the lease if held, close Redis."""
        if self._loop is not None and not self._loop.stop(STOP_TIMEOUT_S):
            sys.stderr.write("warmwhisk scaler: the control loop did not stop in time\n")
        try:
            self.controller.lease.release()  # a no-op unless this replica holds it
        except redis.RedisError as exc:
            sys.stderr.write(f"warmwhisk scaler: releasing the lease: {exc}\n")
        self.controller.is_leader = False
        self.registries.close()
        self.redis.close()

    @property
    def replica_id(self) -> str:
        return self.controller.holder_id

    @property
    def max_hosts(self) -> int:
        """The server-wide host cap (``build`` fills ``settings.max_hosts`` in)."""
        return MAX_HOSTS_CEILING if self.settings.max_hosts is None else self.settings.max_hosts

    # -- reads -------------------------------------------------------------------------------------
    def redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def epoch(self) -> str | None:
        """Redis's state token (``Registry.epoch``), read without creating it."""
        return self.store.epoch()

    def is_leader(self) -> bool:
        """Whether this replica holds the lease in Redis now."""
        return self.controller.lease.holder() == self.replica_id

    def _records(self) -> list[HostRecord]:
        """Every namespace's live hosts."""
        return [r for ns in self.registries.namespaces() for r in self.registries.registry(ns).hosts()]

    def _registered(self) -> list[str]:
        """Every namespace's registered actions."""
        registries = self.registries
        return [a for ns in registries.namespaces() for a in registries.registry(ns).registered_actions()]

    def _registry(self, pool: str) -> RedisRegistry:
        return self.registries.registry(namespace_of(pool))

    def pools(self, records: list[HostRecord] | None = None) -> list[str]:
        """Every pool the scaler knows: registered actions and actions that live hosts serve."""
        records = self._records() if records is None else records
        return sorted(set(self._registered()) | {a for r in records for a in r.actions})

    def is_pool(self, pool: str) -> bool:
        return pool in self.pools()

    def pool_summaries(self) -> list[PoolSummary]:
        records = self._records()
        return [self._summary(pool, records) for pool in self.pools(records)]

    def _summary(self, pool: str, records: list[HostRecord]) -> PoolSummary:
        serving = [r for r in records if pool in r.actions]
        states = Counter("draining" if r.scaler_limit == 0 else r.state for r in serving)
        stats = self._registry(pool).pool_stats(pool)
        config = self.pool_config(pool)
        return PoolSummary(
            pool=pool,
            hosts={state: states.get(state, 0) for state in HOST_STATES},
            slots_in_use=sum(r.slots_in_use for r in serving),
            waiting=self._registry(pool).waiting(pool),
            acquired=stats.acquired,
            rejected=stats.rejected,
            completions=stats.completed,
            policy=config.policy or self.settings.policy,
            knobs=dict(config.knobs),
            manual_hosts=config.manual_hosts,
        )

    def status(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "leader": self.controller.lease.holder(),
            "is_leader": self.is_leader(),
            "epoch": self.epoch(),
            "backend": self.settings.backend,
            "default_policy": self.settings.policy,
            "max_hosts": self.max_hosts,
            "pools": [summary.to_json() for summary in self.pool_summaries()],
            "controller": self.controller.status(),
        }

    def hosts(self) -> list[dict[str, Any]]:
        """Live host records, without their secrets (``SECRET_HOST_FIELDS``)."""
        return [
            {
                **{k: v for k, v in dataclasses.asdict(r).items() if k not in SECRET_HOST_FIELDS},
                "routing_limit": r.routing_limit,
            }
            for r in self._records()
        ]

    def actions(self) -> list[dict[str, Any]]:
        """Registered actions: their spec as ``shown_spec`` shows it, stats and waiting."""
        listed = []
        for action in self._registered():
            registry = self._registry(action)
            spec = registry.action_spec(action) or {}
            stats = registry.pool_stats(action)
            listed.append(
                {
                    "action": action,
                    "spec": shown_spec(spec),
                    "stats": {
                        "acquired": stats.acquired,
                        "rejected": stats.rejected,
                        "completed": stats.completed,
                        "timed": stats.timed,
                        "mean_duration_ms": stats.duration_ms_sum / stats.timed if stats.timed else None,
                    },
                    "waiting": registry.waiting(action),
                }
            )
        return listed

    def namespace_credential(self, namespace: str, rotate: bool = False) -> dict[str, Any]:
        """The namespace's registry credential (created on first use; `rotate`: a new password, the
        old one valid for the grace period): the init parameter its ML actions carry."""
        credentials = self.registries.credentials
        credential = credentials.rotate(namespace) if rotate else credentials.issue(namespace)
        return {"namespace": namespace, "parameter": CREDENTIAL_PARAMETER, "credential": credential.encode(),
                "user": credential.user}  # fmt: skip

    def decisions(self, limit: int) -> list[Any]:
        """The newest ``limit`` entries of the decision log, newest first."""
        return self.store.decisions(limit)

    # -- per-pool configuration ---------------------------------------------------------------------
    def pool_config(self, pool: str) -> PoolConfig:
        return self.store.pool_config(pool, self.settings.policy)

    def set_pool_config(self, pool: str, body: Any) -> PoolConfig:
        """Validate (``PoolConfigError``) and store a pool's configuration for every replica."""
        config = pool_config.parse(body, self.settings.policy, self.max_hosts)
        self.store.save_pool_config(pool, config)
        return config

    def scale(self, pool: str, hosts: Any) -> PoolConfig:
        """Pin the pool to ``hosts`` hosts (None: back to its policy); the leader applies it.
        ``PoolConfigError`` unless a whole number from 0 to the host cap, or None."""
        count = pool_config.host_count("hosts", hosts, self.max_hosts, nullable=True)
        config = dataclasses.replace(self.pool_config(pool), manual_hosts=count)
        self.store.save_pool_config(pool, config)
        return config


def shown_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """An action spec as the API shows it: ``SHOWN_SPEC_FIELDS``, the code's size in bytes
    (``code_bytes``) and the names of its init parameters (``env_names``), never their values."""
    shown = {key: spec[key] for key in SHOWN_SPEC_FIELDS if key in spec}
    code = spec.get("code")
    if isinstance(code, str):
        shown["code_bytes"] = len(code.encode())
    env = spec.get("env")
    shown["env_names"] = sorted(str(name) for name in env) if isinstance(env, Mapping) else []
    return shown
