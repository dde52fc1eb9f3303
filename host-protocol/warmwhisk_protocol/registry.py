"""The registry of model hosts in Redis, and slot routing over it.

Model hosts heartbeat their record (``Registry.heartbeat``, every ``heartbeat_ttl_s / 3``: one
heartbeat interval); a record lives for ``heartbeat_ttl_s`` unless refreshed, so a host that stops
heartbeating drops out of routing by itself (its index entries, slot counter and scaler limit are
dropped lazily by ``acquire`` and ``hosts``). Routing is two atomic Lua scripts: ``acquire`` picks,
among live warm hosts serving the action whose slots in use are below their limit, the fullest one
(packing, so idle hosts can be reclaimed) and takes a slot; ``release`` gives the slot back and
records the completion for the action's pool.

Who owns what:

* The **host** owns its record: address, actions, models, state, its own concurrency cap
  (``HostRecord.limit``, e.g. the runtime's ``limits.concurrency``), in-flight, memory, load time.
  Each heartbeat replaces the record.
* The **scaler** owns the routing limit (``Registry.set_limit``), stored apart from the record so a
  heartbeat never undoes it. Routing uses ``min(scaler limit, host cap)``; without a scaler limit,
  the host cap. ``set_limit(h, 0)`` drains a host (no new slots) before it is removed.
* **acquire/release** own the slot counters, stored apart from the record so a heartbeat never
  overwrites them. A heartbeat only *seeds* a missing counter with the host's reported in-flight.

Redis restarted without persistence: every key is gone. Hosts are back in the registry with their
next heartbeat (within one heartbeat interval); until then ``acquire`` finds no host and returns
None (callers retry or queue). Slot counters restart from the hosts' reported in-flight, which may
lag by up to one heartbeat interval, so a host can be briefly over-admitted by the activations
started in that interval; hosts still enforce their own cap. Scaler limits are gone too: routing
falls back to the host caps until the scaler sets them again. ``Registry.epoch`` changes on such a
restart, so the scaler can tell "Redis lost its state" from "hosts died" and wait two heartbeat
intervals for the registry to rebuild before starting new hosts (no duplicate containers).

Known limit: a caller that dies between ``acquire`` and ``release`` leaks its slot until the host is
removed or its record expires (the counter is not reconciled with the reported in-flight, which
lags behind acquires). The same holds for the rare connection that breaks after Redis ran
``acquire`` but before its reply arrived: the retry takes a second slot. Timeouts are not retried.

Lua scripts are registered with ``redis.Redis.register_script`` (EVALSHA; reloaded automatically
when Redis lost its script cache, e.g. after a restart). ``acquire`` and ``release``, on every routed
activation's path, send their EVALSHA on a connection pinned to the calling thread (made from the
client's own connection settings: address, password, timeouts), skipping redis-py's per-command
pool checkout and hooks, which cost more than the scripts on loopback (``bench/bench_registry.py``).
A broken pinned connection (e.g. Redis restarted) is reopened and the command sent once more.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from .keys import DURATION_SAMPLES, NamespaceKeys
from .records import HostRecord, PoolStats, Slot, check_heartbeat

_LUA = Path(__file__).with_name("lua")


class Registry(Protocol):
    """What hosts, routers and the scaler do with the registry: ``RedisRegistry`` in production,
    ``warmwhisk_protocol.memory.InMemoryRegistry`` in tests (same behaviour, no Redis)."""

    heartbeat_ttl_s: float

    # Hosts (host mode heartbeats; the scaler reads, limits and removes).
    def heartbeat(self, record: HostRecord) -> bool: ...
    def hosts(self) -> list[HostRecord]: ...
    def host(self, host_id: str) -> HostRecord | None: ...
    def remove_host(self, host_id: str) -> bool: ...
    def report_unreachable(self, host_id: str) -> None: ...
    def set_limit(self, host_id: str, limit: int) -> bool: ...
    def preset_limit(self, host_id: str, limit: int) -> None: ...
    def limited_hosts(self) -> set[str]: ...

    # Routing (routed mode).
    def acquire(self, action: str, avoid: Iterable[str] = ()) -> Slot | None: ...
    def release(self, slot: Slot, duration_s: float | None = None) -> bool: ...
    def start_waiting(self, action: str, wait_id: str, until: float) -> None: ...
    def stop_waiting(self, action: str, wait_id: str) -> None: ...

    # Pools (the scaler).
    def pool_stats(self, action: str) -> PoolStats: ...
    def waiting(self, action: str) -> int: ...

    # Actions (routers register, hosts load).
    def register_action(self, action: str, spec: Mapping[str, Any]) -> None: ...
    def action_spec(self, action: str) -> dict[str, Any] | None: ...
    def registered_actions(self) -> list[str]: ...
    def unregister_action(self, action: str) -> None: ...

    def epoch(self) -> str: ...
    def close(self) -> None: ...


class RegistryError(RuntimeError):
    """Redis cannot be used as the registry (unreachable, wrong or missing password)."""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _script(client: redis.Redis, name: str) -> Any:
    return client.register_script((_LUA / f"{name}.lua").read_text())


SCRIPTS = ("acquire", "release", "heartbeat", "remove_host", "prune_hosts", "set_limit")


def load_script(client: redis.Redis, script: Any) -> None:
    """SCRIPT LOAD, which only the scaler's user may run (a namespace's user gets EVALSHA alone:
    arbitrary Lua could hold Redis for every tenant). For the others the scaler reloads the scripts
    on its next tick after Redis lost them."""
    try:
        client.script_load(script.script)
    except redis.exceptions.NoPermissionError as exc:
        raise RegistryError(
            "the registry's scripts are not loaded in Redis (restarted?) and this user may not load "
            "them; the scaler loads them within a tick"
        ) from exc


def load_scripts(client: redis.Redis) -> int:
    """Load every registry script Redis lacks (the scaler, each tick: one SCRIPT EXISTS call).
    Returns how many were loaded."""
    scripts = [_script(client, name) for name in SCRIPTS]
    present = client.script_exists(*(script.sha for script in scripts))
    missing = [script for script, there in zip(scripts, present, strict=True) if not there]
    for script in missing:
        client.script_load(script.script)
    return len(missing)


def connect_redis(url: str, timeout_s: float = 2.0, retries: int = 3) -> redis.Redis:
    """A client for ``url`` (``redis://:password@host:port/db``), checked with one PING first.

    Raises ``RegistryError`` with a message naming the address (never the password) when Redis is
    unreachable or rejects the credentials. The client retries a command up to ``retries`` times
    on a connection error (e.g. Redis restarting), with a short jittered backoff; not on a timeout,
    after which a script may have run. (``acquire``/``release`` use their own pinned connections
    with the same address, password and timeouts: see ``_PinnedEvalsha``.)
    """
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port}"
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    probe = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)  # type: ignore[arg-type]
    try:
        probe.ping()
    except redis.AuthenticationError as exc:  # a ConnectionError subclass: test it first
        raise RegistryError(
            f"Redis at {where} rejected the credentials ({exc}); check the password in the Redis URL"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RegistryError(f"cannot reach Redis at {where}: {exc}") from exc
    finally:
        probe.close()
    retry = Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.01), retries, (redis.ConnectionError,))
    return redis.Redis.from_url(url, retry=retry, **timeouts)  # type: ignore[arg-type]


class _PinnedEvalsha:
    """EVALSHA on one connection per thread, made from ``client``'s pool settings.

    Errors: NOSCRIPT loads the script and retries; a connection error reconnects and retries once
    (a restarted Redis never ran the first attempt); anything else, a timeout included, closes the
    connection (its protocol state is unknown) and propagates.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def _connection(self) -> Any:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # first use in this thread, or after a fork
            pool = self._client.connection_pool
            local.conn = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
            self._all.add(local.conn)
        return local.conn

    def __call__(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        conn = self._connection()
        reconnected = loaded = False
        while True:
            try:
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
                loaded = True
                load_script(self._client, script)
            except redis.ConnectionError:
                conn.disconnect()
                if reconnected:
                    raise
                reconnected = True
            except BaseException:
                conn.disconnect()
                raise

    def close(self) -> None:
        for conn in list(self._all):
            conn.disconnect()


class RedisRegistry:
    """One namespace's host records, slot routing, action registrations and pool stats, in Redis.

    ``client`` may be the namespace's own ACL user (hosts, routers) or the scaler's admin user
    (which keeps one registry per namespace)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: NamespaceKeys,
        heartbeat_ttl_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if heartbeat_ttl_s <= 0:
            raise ValueError("heartbeat_ttl_s must be positive")
        self.redis = client
        self.keys = keys
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._clock = clock
        self._acquire = _script(client, "acquire")
        self._release = _script(client, "release")
        self._heartbeat = _script(client, "heartbeat")
        self._remove = _script(client, "remove_host")
        self._prune = _script(client, "prune_hosts")
        self._set_limit = _script(client, "set_limit")
        self._evalsha = _PinnedEvalsha(client)

    # Hosts.
    def heartbeat(self, record: HostRecord) -> bool:
        """Upsert ``record`` for ``heartbeat_ttl_s`` and index it under its actions.

        Leaves the slot counter and the scaler's limit alone. Returns False (and writes nothing)
        when the host was removed within the last two TTLs.
        """
        check_heartbeat(record)
        k = self.keys
        actions = json.dumps(list(record.actions))
        fields: dict[str, str] = {
            "address": record.address,
            "namespace": record.namespace,
            "actions": actions,
            "models": json.dumps(list(record.models)),
            "state": record.state,
            "limit": str(record.limit),
            "reported_in_flight": str(record.reported_in_flight),
            "memory_bytes": str(record.memory_bytes),
            "model_load_s": "" if record.model_load_s is None else repr(record.model_load_s),
            "keepalive_s": repr(float(record.keepalive_s)),
            "token": record.token,
            "heartbeat_at": repr(self._clock()),
        }
        fields.update({k.serves_field(action): "1" for action in record.actions})
        pairs = [item for pair in fields.items() for item in pair]
        keys = [k.host(record.host_id), k.hosts, k.slots]
        ttl_ms = max(1, round(self.heartbeat_ttl_s * 1000))
        argv = [record.host_id, ttl_ms, k.action_hosts_prefix, actions, record.reported_in_flight,
                k.removed(record.host_id)]  # fmt: skip
        return bool(self._heartbeat(keys=keys, args=[*argv, *pairs]))

    def hosts(self) -> list[HostRecord]:
        """Live hosts (record not expired), sorted by id; expired ones are pruned on the way."""
        k = self.keys
        ids = sorted(_text(member) or "" for member in self.redis.smembers(k.hosts))
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for host_id in ids:
            pipe.hgetall(k.host(host_id))
        pipe.hmget(k.slots, ids)
        pipe.hmget(k.limits, ids)
        for host_id in ids:
            pipe.exists(k.unreachable(host_id))
        results = pipe.execute()
        n = len(ids)
        records, slots, limits, flags = results[:n], results[n], results[n + 1], results[n + 2 :]
        live: list[HostRecord] = []
        expired: list[str] = []
        for host_id, raw, used, limit, flagged in zip(ids, records, slots, limits, flags, strict=True):
            if not raw:
                expired.append(host_id)
                continue
            scaler_limit = None if limit is None else int(limit)
            live.append(self._decode(host_id, raw, used, scaler_limit, bool(flagged)))
        if expired:
            self._prune(keys=[k.hosts, k.slots, k.limits], args=[k.host_prefix, *expired])
        return live

    def host(self, host_id: str) -> HostRecord | None:
        """One live host, or None."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.host(host_id))
        pipe.hget(k.slots, host_id)
        pipe.hget(k.limits, host_id)
        pipe.exists(k.unreachable(host_id))
        raw, used, scaler_limit, flagged = pipe.execute()
        if not raw:
            return None
        limit = None if scaler_limit is None else int(scaler_limit)
        return self._decode(host_id, raw, used, limit, bool(flagged))

    @staticmethod
    def _decode(
        host_id: str, raw: Mapping[Any, Any], used: Any, scaler_limit: int | None, unreachable: bool = False
    ) -> HostRecord:
        f = {_text(key): _text(value) or "" for key, value in raw.items()}
        return HostRecord(
            host_id=host_id,
            address=f["address"],
            namespace=f["namespace"],
            actions=tuple(json.loads(f["actions"])),
            models=tuple(json.loads(f["models"])),
            state=f["state"],  # type: ignore[arg-type]  # written from HostState only
            limit=int(f["limit"]),
            reported_in_flight=int(f["reported_in_flight"]),
            memory_bytes=int(f["memory_bytes"]),
            model_load_s=float(f["model_load_s"]) if f["model_load_s"] else None,
            keepalive_s=float(f.get("keepalive_s") or 0.0),
            token=f.get("token", ""),
            heartbeat_at=float(f["heartbeat_at"]),
            slots_in_use=int(used or 0),
            scaler_limit=scaler_limit,
            unreachable=unreachable,
        )

    def remove_host(self, host_id: str) -> bool:
        """Forget a host (record, index, slots, scaler limit). Heartbeats it sends during the next
        two TTLs are ignored, so a host being stopped cannot come back. True if it was live."""
        k = self.keys
        keys = [k.host(host_id), k.hosts, k.slots, k.limits, k.removed(host_id)]
        ttl_ms = max(1, round(2 * self.heartbeat_ttl_s * 1000))
        return bool(self._remove(keys=keys, args=[host_id, k.action_hosts_prefix, ttl_ms]))

    def report_unreachable(self, host_id: str) -> None:
        """A router could not reach the host on a fresh connection, or lost it mid-request: routing
        skips it (for every router) for two heartbeat TTLs, and the scaler replaces it. A host
        that is in fact fine rejoins when the report expires."""
        ttl_ms = max(1, round(2 * self.heartbeat_ttl_s * 1000))
        self.redis.set(self.keys.unreachable(host_id), "1", px=ttl_ms)

    def set_limit(self, host_id: str, limit: int) -> bool:
        """The scaler's concurrency limit for a live host (kept across heartbeats; capped by the
        host's own limit when routing). False when the host has no live record."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        k = self.keys
        return bool(self._set_limit(keys=[k.host(host_id), k.limits], args=[host_id, limit]))

    def preset_limit(self, host_id: str, limit: int) -> None:
        """The limit of a host that is starting and has not heartbeated yet, so its first warm
        heartbeat does not open it at its own cap. Whoever starts hosts removes it
        (``remove_host``) if the host never comes up."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.redis.hset(self.keys.limits, host_id, limit)

    def limited_hosts(self) -> set[str]:
        """Hosts the scaler has a limit for (live or not): limits outlive a late heartbeat."""
        return {_text(member) or "" for member in self.redis.hkeys(self.keys.limits)}

    # Routing.
    def acquire(self, action: str, avoid: Iterable[str] = ()) -> Slot | None:
        """Take a slot on the fullest live warm host serving ``action`` with room, other than the
        hosts in ``avoid``; None if none."""
        k = self.keys
        found = self._evalsha(
            self._acquire,
            [k.action_hosts(action), k.slots, k.stats(action), k.action(action)],
            [k.host_prefix, k.serves_field(action), k.unreachable_prefix, k.limits, *avoid],
        )
        if not found:
            return None
        host_id, address, in_use, keepalive, registered, token = found
        return Slot(
            _text(host_id) or "", _text(address) or "", action, int(in_use),
            keepalive_s=float(_text(keepalive) or 0.0), registered=bool(registered),
            token=_text(token) or None,
        )  # fmt: skip

    def release(self, slot: Slot, duration_s: float | None = None) -> bool:
        """Give ``slot`` back (never below 0) and count the completion, with its duration if given,
        in the action's pool stats. False when there was no slot to give back (e.g. the host was
        dropped meanwhile, or Redis restarted)."""
        k = self.keys
        duration = "" if duration_s is None else repr(duration_s * 1000.0)
        return bool(
            self._evalsha(
                self._release,
                [k.slots, k.stats(slot.action), k.durations(slot.action)],
                [slot.host_id, duration, DURATION_SAMPLES],
            )
        )

    def pool_stats(self, action: str) -> PoolStats:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.stats(action))
        pipe.lrange(self.keys.durations(action), 0, -1)
        raw, recent = pipe.execute()
        f = {_text(key): _text(value) for key, value in raw.items()}
        return PoolStats(
            action=action,
            acquired=int(f.get("acquired") or 0),
            rejected=int(f.get("rejected") or 0),
            completed=int(f.get("completed") or 0),
            timed=int(f.get("timed") or 0),
            duration_ms_sum=float(f.get("duration_ms_sum") or 0.0),
            recent_ms=tuple(float(value) for value in recent),
        )

    # Demand that found no slot.
    def start_waiting(self, action: str, wait_id: str, until: float) -> None:
        """An activation waits for a slot (until the unix time ``until`` at the latest)."""
        self.redis.zadd(self.keys.waiting(action), {wait_id: until})

    def stop_waiting(self, action: str, wait_id: str) -> None:
        self.redis.zrem(self.keys.waiting(action), wait_id)

    def waiting(self, action: str) -> int:
        """Activations waiting for a slot now; waits whose router died expire by their deadline."""
        key = self.keys.waiting(action)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", self._clock())
        pipe.zcard(key)
        return int(pipe.execute()[1])

    # Actions.
    def register_action(self, action: str, spec: Mapping[str, Any]) -> None:
        """Store the action's spec (namespace, name, models, code digest, ...) as JSON."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.action(action), json.dumps(dict(spec), sort_keys=True))
        pipe.sadd(self.keys.actions, action)
        pipe.execute()

    def action_spec(self, action: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.action(action))
        return None if raw is None else json.loads(raw)

    def registered_actions(self) -> list[str]:
        return sorted(_text(member) or "" for member in self.redis.smembers(self.keys.actions))

    def unregister_action(self, action: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.action(action))
        pipe.srem(self.keys.actions, action)
        pipe.execute()

    def close(self) -> None:
        """Close the connections pinned to threads by ``acquire``/``release`` (not ``self.redis``)."""
        self._evalsha.close()

    # Redis state.
    def epoch(self) -> str:
        """A token that stays the same as long as Redis keeps its state; a new value after Redis
        restarted without persistence (or the keys were flushed)."""
        fresh = secrets.token_hex(8)
        previous = self.redis.set(self.keys.epoch, fresh, nx=True, get=True)
        return _text(previous) or fresh
