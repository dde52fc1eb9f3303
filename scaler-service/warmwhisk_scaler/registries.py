"""The scaler's view of every namespace's registry, over its admin connection.

Hosts and routers each see their own namespace's registry (`warmwhisk_protocol.registry`); the
scaler serves every namespace that has a credential (`credentials.NamespaceCredentials`), so it
keeps one registry per namespace, loads the registry's Lua scripts (namespace users may not), and
re-applies the namespace users whenever Redis lost them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Protocol

import redis

from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.memory import InMemoryRegistry
from warmwhisk_protocol.registry import RedisRegistry, Registry, load_scripts

from .credentials import InMemoryCredentials, NamespaceCredentials


class Registries(Protocol):
    credentials: NamespaceCredentials | InMemoryCredentials

    def namespaces(self) -> list[str]: ...
    def registry(self, namespace: str) -> Registry: ...
    def epoch(self) -> str:
        """A token that changes when Redis lost its state (restart without persistence)."""
        ...

    def maintain(self) -> None:
        """Each tick, before anything else: what Redis may have lost that the scaler restores."""
        ...


class RedisRegistries:
    def __init__(self, client: redis.Redis, keys: RedisKeys, credentials: NamespaceCredentials,
                 heartbeat_ttl_s: float) -> None:  # fmt: skip
        self.redis = client
        self.keys = keys
        self.credentials = credentials
        self._heartbeat_ttl_s = heartbeat_ttl_s
        self._registries: dict[str, RedisRegistry] = {}

    def namespaces(self) -> list[str]:
        return self.credentials.namespaces()

    def registry(self, namespace: str) -> RedisRegistry:
        registry = self._registries.get(namespace)
        if registry is None:
            registry = RedisRegistry(self.redis, self.keys.namespace(namespace), self._heartbeat_ttl_s)
            self._registries[namespace] = registry
        return registry

    def epoch(self) -> str:
        fresh = secrets.token_hex(8)
        previous = self.redis.set(self.keys.epoch, fresh, nx=True, get=True)
        return (previous.decode() if isinstance(previous, bytes) else previous) or fresh

    def maintain(self) -> None:
        load_scripts(self.redis)
        self.credentials.enforce()

    def close(self) -> None:
        for registry in self._registries.values():
            registry.close()


class InMemoryRegistries:
    """Namespaces' in-memory registries sharing one clock and epoch, for tick-by-tick tests."""

    def __init__(self, registries: Mapping[str, InMemoryRegistry]) -> None:
        self._registries = dict(registries)
        self.credentials = InMemoryCredentials(list(registries))
        self._epoch = secrets.token_hex(8)

    def namespaces(self) -> list[str]:
        return sorted(self._registries)

    def registry(self, namespace: str) -> InMemoryRegistry:
        return self._registries[namespace]

    def epoch(self) -> str:
        return self._epoch

    def lose_state(self) -> None:
        """Redis restarted without persistence: every registry empty, a new epoch."""
        for registry in self._registries.values():
            registry.lose_state()
        self._epoch = secrets.token_hex(8)

    def maintain(self) -> None:
        pass
