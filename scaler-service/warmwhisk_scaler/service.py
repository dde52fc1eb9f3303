"""One scaler replica, wired: Redis registry, host backend, controller and its control-loop thread.

``build(settings)`` connects and assembles the parts; ``Service.start()`` runs the control loop in a
background thread (it ticks every ``settings.tick_s`` and acts only while it holds the Redis lease);
``Service.stop()`` ends the loop, gives the lease up and closes the Redis connections. The reads
and the few writes the API offers (pool summaries, the decision log, per-pool configuration) are
methods here too, so the HTTP layer (``api.py``) only translates requests and responses.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.records import HOST_STATES, HostRecord
from warmwhisk_protocol.registry import RedisRegistry, connect_redis

from . import pool_config
from .backends import HostBackend, ProcessBackend
from .backends.base import DEFAULT_OWNER
from .controller import Controller, ControlLoop
from .pool_config import PoolConfig
from .settings import ScalerSettings
from .state import RedisLease, RedisScalerStore

# How long ``stop`` waits for the loop's current tick to finish (a tick may be stopping hosts).
STOP_TIMEOUT_S = 20.0


def backend_owner(settings: ScalerSettings) -> str:
    """The owner label of the hosts this deployment starts: every replica of one deployment (one
    key prefix) shares it, so a new leader adopts the hosts another replica started."""
    return f"{DEFAULT_OWNER}.{settings.prefix}"


def make_backend(settings: ScalerSettings) -> HostBackend:
    if settings.backend == "docker":
        from .backends.docker_backend import DockerBackend  # the docker SDK only where it is used

        return DockerBackend.from_env(settings.image, owner=backend_owner(settings))
    if settings.backend == "process":
        return ProcessBackend(state_dir=settings.state_dir, owner=backend_owner(settings))
    raise ValueError(f"unknown backend {settings.backend!r}; expected 'docker' or 'process'")


def build(settings: ScalerSettings) -> Service:
    """Connect to Redis (raises ``RegistryError``) and the backend (``BackendError``); nothing runs yet."""
    client = connect_redis(settings.redis_url)
    try:
        keys = RedisKeys(settings.prefix)
        registry = RedisRegistry(client, keys, heartbeat_ttl_s=settings.heartbeat_ttl_s)
        backend = make_backend(settings)
    except BaseException:
        client.close()
        raise
    store = RedisScalerStore(client, keys)
    lease = RedisLease(client, keys, f"scaler-{secrets.token_hex(4)}", settings.lease_ttl_s)
    controller = Controller(registry, backend, settings, lease, store)
    return Service(settings, registry, backend, controller, store, client)


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
    registry: RedisRegistry
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
        self.registry.close()
        self.redis.close()

    @property
    def replica_id(self) -> str:
        return self.controller.holder_id

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

    def pools(self, records: list[HostRecord] | None = None) -> list[str]:
        """Every pool the scaler knows: registered actions and actions that live hosts serve."""
        records = self.registry.hosts() if records is None else records
        return sorted(set(self.registry.registered_actions()) | {a for r in records for a in r.actions})

    def is_pool(self, pool: str) -> bool:
        return pool in self.pools()

    def pool_summaries(self) -> list[PoolSummary]:
        records = self.registry.hosts()
        return [self._summary(pool, records) for pool in self.pools(records)]

    def _summary(self, pool: str, records: list[HostRecord]) -> PoolSummary:
        serving = [r for r in records if pool in r.actions]
        states = Counter("draining" if r.scaler_limit == 0 else r.state for r in serving)
        stats = self.registry.pool_stats(pool)
        config = self.pool_config(pool)
        return PoolSummary(
            pool=pool,
            hosts={state: states.get(state, 0) for state in HOST_STATES},
            slots_in_use=sum(r.slots_in_use for r in serving),
            waiting=self.registry.waiting(pool),
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
            "pools": [summary.to_json() for summary in self.pool_summaries()],
            "controller": self.controller.status(),
        }

    def hosts(self) -> list[dict[str, Any]]:
        return [{**dataclasses.asdict(r), "routing_limit": r.routing_limit} for r in self.registry.hosts()]

    def actions(self) -> list[dict[str, Any]]:
        """Registered actions: their spec without the code (its size instead), stats and waiting."""
        listed = []
        for action in self.registry.registered_actions():
            spec = self.registry.action_spec(action) or {}
            stats = self.registry.pool_stats(action)
            listed.append(
                {
                    "action": action,
                    "spec": _without_code(spec),
                    "stats": {
                        "acquired": stats.acquired,
                        "rejected": stats.rejected,
                        "completed": stats.completed,
                        "timed": stats.timed,
                        "mean_duration_ms": stats.duration_ms_sum / stats.timed if stats.timed else None,
                    },
                    "waiting": self.registry.waiting(action),
                }
            )
        return listed

    def decisions(self, limit: int) -> list[Any]:
        """The newest ``limit`` entries of the decision log, newest first."""
        return self.store.decisions(limit)

    # -- per-pool configuration ---------------------------------------------------------------------
    def pool_config(self, pool: str) -> PoolConfig:
        return self.store.pool_config(pool, self.settings.policy)

    def set_pool_config(self, pool: str, body: Any) -> PoolConfig:
        """Validate (``PoolConfigError``) and store a pool's configuration for every replica."""
        config = pool_config.parse(body, self.settings.policy)
        self.store.save_pool_config(pool, config)
        return config

    def scale(self, pool: str, hosts: int | None) -> PoolConfig:
        """Pin the pool to ``hosts`` hosts (None: back to its policy); the leader applies it."""
        config = dataclasses.replace(self.pool_config(pool), manual_hosts=hosts)
        self.store.save_pool_config(pool, config)
        return config


def _without_code(spec: Mapping[str, Any]) -> dict[str, Any]:
    shown = {key: value for key, value in spec.items() if key != "code"}
    code = spec.get("code")
    if isinstance(code, str):
        shown["code_bytes"] = len(code.encode())
    return shown
