"""Model hosts for the scaler benchmarks: a private Redis and one scaler replica (a Controller
ticking in its own thread, with a Redis lease and store) that starts hosts through a backend."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from lib.targets import IMAGE, DockerEngine, redis_server
from warmwhisk_protocol.credentials import with_credential
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.records import HostRecord
from warmwhisk_protocol.registry import connect_redis
from warmwhisk_scaler.backends import HostBackend
from warmwhisk_scaler.controller import Controller, ControlLoop
from warmwhisk_scaler.credentials import NamespaceCredentials
from warmwhisk_scaler.pool_config import PoolConfig, parse
from warmwhisk_scaler.registries import RedisRegistries
from warmwhisk_scaler.settings import ScalerSettings
from warmwhisk_scaler.state import RedisLease, RedisScalerStore

NAMESPACE = "guest"  # the benchmarks' actions are /guest/<name>


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """The first truthy value of `predicate` (polled every 50 ms); raises after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def docker_backend(engine: DockerEngine, owner: str) -> HostBackend:
    """The scaler's DockerBackend on this run's engine: its containers carry the run's labels too."""
    from warmwhisk_scaler.backends.docker_backend import DockerBackend

    return DockerBackend(engine.client, IMAGE, owner=owner, extra_labels=engine.labels, stop_timeout_s=2)


class ScalerRig:
    """A started redis-server, the registry and scaler store on it, and (after `start`) a control
    loop driving `backend`. `close` stops the loop, removes the hosts and stops Redis."""

    def __init__(self, **settings: Any) -> None:
        self.redis = redis_server()
        try:
            url = self.redis.url
            self.settings = ScalerSettings(redis_url=url, host_redis_url=url, token="bench", **settings)
            self.client = connect_redis(url)
            self.keys = RedisKeys(self.settings.prefix)
            self.credentials = NamespaceCredentials(self.client, self.keys)
            self.registries = RedisRegistries(
                self.client, self.keys, self.credentials, self.settings.heartbeat_ttl_s
            )
            self.registries.maintain()
            self.credential = self.credentials.issue(NAMESPACE)
            self.registry = self.registries.registry(NAMESPACE)
            self.store = RedisScalerStore(self.client, self.keys)
        except BaseException:
            self.redis.close()
            raise
        self.loop: ControlLoop | None = None
        self.remove_hosts: Callable[[], Any] = lambda: None

    @property
    def url(self) -> str:
        """The registry as routers of the namespace log in to it: its ACL user, not the admin."""
        return with_credential(self.redis.url, self.credential)

    def pool_key(self) -> str:
        """The one action registered so far (a routed runtime's /init registers it)."""
        (key,) = self.registry.registered_actions()
        return key

    def configure(self, key: str, config: PoolConfig) -> None:
        """Store the pool's configuration; raises if its knobs do not fit the policy (the scaler
        would fall back to the defaults)."""
        parse(config.to_json(), self.settings.policy)
        self.store.save_pool_config(key, config)

    def start(
        self, backend: HostBackend, holder_id: str, remove_hosts: Callable[[], Any] | None = None
    ) -> None:
        """Run a Controller over `backend` in its own thread; `remove_hosts` (default: the backend
        reconciles every host away) runs at `close`."""
        lease = RedisLease(self.client, self.keys, holder_id, self.settings.lease_ttl_s)
        self.remove_hosts = remove_hosts or (lambda: backend.reconcile(lambda host: False))
        self.loop = ControlLoop(Controller(self.registries, backend, self.settings, lease, self.store))

    @property
    def controller(self) -> Controller:
        assert self.loop is not None
        return self.loop.controller

    def warm_hosts(self, key: str, count: int, limit: int | None = None) -> list[HostRecord]:
        """The warm hosts serving `key` (with this scaler limit), if there are `count` of them."""
        hosts = [h for h in self.registry.hosts() if key in h.actions and h.state == "warm"]
        if limit is not None:
            hosts = [h for h in hosts if h.scaler_limit == limit]
        return hosts if len(hosts) >= count else []

    def wait_warm(self, key: str, count: int, timeout_s: float, what: str, limit: int | None = None) -> list:
        return wait_until(lambda: self.warm_hosts(key, count, limit), timeout_s, what)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        try:
            with contextlib.suppress(Exception):
                self.remove_hosts()
            with contextlib.suppress(Exception):
                self.registries.close()
                self.client.close()
        finally:
            self.redis.close()

    def __enter__(self) -> ScalerRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch_waits(
    registry: Any,
    actions: Callable[[], Iterable[str]],
    waits: dict[bytes, list[float]],
    warm_at: dict[str, float],
    stop: threading.Event,
    clock: Callable[[], float],
    poll_s: float,
) -> None:
    """Until `stop`: every `poll_s`, the routers' waiting activations of `actions()` (each wait id's
    first and last time seen, by `clock`) and, every fourth poll, when each host turned warm."""
    polls = 0
    while not stop.is_set():
        now = clock()
        with contextlib.suppress(Exception):  # Redis going away ends nothing: the run reports it
            for action in actions():
                for member in registry.redis.zrange(registry.keys.waiting(action), 0, -1):
                    waits.setdefault(member, [now, now])[1] = now
            if polls % 4 == 0:
                for record in registry.hosts():
                    if record.state == "warm":
                        warm_at.setdefault(record.host_id, now)
        polls += 1
        stop.wait(poll_s)
