"""The scaler's own records, besides the registry: the control loop's lease, the decision log and
per-pool configuration. A Redis implementation shared by every replica, and an in-memory one for
tests that drive the controller tick by tick. All Redis access of the scaler is here and in the
registry (`warmwhisk_protocol.registry`)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis

from warmwhisk_protocol.keys import RedisKeys

from .pool_config import PoolConfig, PoolConfigError, parse

DECISION_LOG_LENGTH = 1000
_LUA = Path(__file__).with_name("lua")


class Lease(Protocol):
    """At most one scaler replica holds it at a time (the control loop's leader). Call
    ``try_acquire_or_renew`` more often than its TTL; when it returns False, stop deciding."""

    holder_id: str

    def try_acquire_or_renew(self) -> bool: ...
    def release(self) -> bool: ...
    def holder(self) -> str | None: ...


class ScalerStore(Protocol):
    def log_decisions(self, entries: list[dict[str, Any]]) -> None:
        """Append entries to the decision log (newest last in `entries`; capped)."""
        ...

    def decisions(self, limit: int) -> list[Any]:
        """The newest `limit` entries, newest first."""
        ...

    def pool_config(self, pool: str, default_policy: str) -> PoolConfig:
        """The pool's stored configuration, validated against the policy it runs with (its own,
        or `default_policy`); the defaults when none is stored or it no longer validates."""
        ...

    def save_pool_config(self, pool: str, config: PoolConfig) -> None: ...

    def epoch(self) -> str | None:
        """The registry's state token, read without creating it (None after Redis lost it)."""
        ...


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _stored_config(raw: bytes | str | None, default_policy: str) -> PoolConfig:
    if raw is None:
        return PoolConfig()
    try:
        return parse(json.loads(raw), default_policy)
    except (ValueError, PoolConfigError):
        return PoolConfig()  # written by an older version: fall back to the defaults


class RedisLease:
    """The lease as one Redis key with a TTL; take-or-renew and release are Lua scripts."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, holder_id: str, ttl_s: float) -> None:
        if ttl_s <= 0 or not holder_id:
            raise ValueError("holder_id must be non-empty and ttl_s positive")
        self._redis = client
        self._key = keys.leader
        self.holder_id = holder_id
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._acquire = client.register_script((_LUA / "lease_acquire.lua").read_text())
        self._release = client.register_script((_LUA / "lease_release.lua").read_text())

    def try_acquire_or_renew(self) -> bool:
        return bool(self._acquire(keys=[self._key], args=[self.holder_id, self._ttl_ms]))

    def release(self) -> bool:
        return bool(self._release(keys=[self._key], args=[self.holder_id]))

    def holder(self) -> str | None:
        return _text(self._redis.get(self._key))


class RedisScalerStore:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys

    def log_decisions(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(self._keys.decisions, *(json.dumps(e) for e in entries))
        pipe.ltrim(self._keys.decisions, 0, DECISION_LOG_LENGTH - 1)
        pipe.execute()

    def decisions(self, limit: int) -> list[Any]:
        limit = max(1, min(limit, DECISION_LOG_LENGTH))
        entries = []
        for item in self._redis.lrange(self._keys.decisions, 0, limit - 1):
            try:
                entries.append(json.loads(item))
            except ValueError:
                entries.append({"unreadable": item.decode(errors="replace")})
        return entries

    def pool_config(self, pool: str, default_policy: str) -> PoolConfig:
        return _stored_config(self._redis.get(self._keys.pool_config(pool)), default_policy)

    def save_pool_config(self, pool: str, config: PoolConfig) -> None:
        self._redis.set(self._keys.pool_config(pool), json.dumps(config.to_json(), sort_keys=True))

    def epoch(self) -> str | None:
        return _text(self._redis.get(self._keys.epoch))


class InMemoryLease:
    """The lease for tests: several replicas share one `InMemoryLease.Slot`."""

    class Slot:
        def __init__(self) -> None:
            self.holder: str | None = None
            self.until = 0.0
            self.lock = threading.Lock()

    def __init__(self, slot: InMemoryLease.Slot, holder_id: str, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._slot = slot
        self.holder_id = holder_id
        self._ttl_s = ttl_s
        self._clock = clock

    def try_acquire_or_renew(self) -> bool:
        with self._slot.lock:
            now = self._clock()
            if self._slot.holder in (None, self.holder_id) or self._slot.until <= now:
                self._slot.holder, self._slot.until = self.holder_id, now + self._ttl_s
                return True
            return False

    def release(self) -> bool:
        with self._slot.lock:
            if self._slot.holder == self.holder_id and self._slot.until > self._clock():
                self._slot.holder = None
                return True
            return False

    def holder(self) -> str | None:
        with self._slot.lock:
            return self._slot.holder if self._slot.until > self._clock() else None


class InMemoryScalerStore:
    def __init__(self, epoch: Callable[[], str | None] = lambda: None) -> None:
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISION_LOG_LENGTH)
        self._configs: dict[str, str] = {}
        self._epoch = epoch

    def log_decisions(self, entries: list[dict[str, Any]]) -> None:
        self._decisions.extendleft(json.loads(json.dumps(e)) for e in entries)

    def decisions(self, limit: int) -> list[Any]:
        return list(self._decisions)[: max(1, min(limit, DECISION_LOG_LENGTH))]

    def pool_config(self, pool: str, default_policy: str) -> PoolConfig:
        return _stored_config(self._configs.get(pool), default_policy)

    def save_pool_config(self, pool: str, config: PoolConfig) -> None:
        self._configs[pool] = json.dumps(config.to_json(), sort_keys=True)

    def epoch(self) -> str | None:
        return self._epoch()
