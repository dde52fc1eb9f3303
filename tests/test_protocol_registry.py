"""The registry and slot routing: `RedisRegistry` against a real password-protected redis-server,
and `InMemoryRegistry` held to the same behaviour (every test taking `registry` runs on both)."""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_harness import RedisProcess, free_loopback_port
from warmwhisk_protocol.keys import DURATION_SAMPLES, RedisKeys
from warmwhisk_protocol.memory import InMemoryRegistry
from warmwhisk_protocol.records import HostRecord, Slot
from warmwhisk_protocol.registry import RedisRegistry, Registry, RegistryError, connect_redis

KEYS = RedisKeys("test").namespace("guest")
ACTION = "/guest/embed"
OTHER = "/guest/classify"


def host(host_id: str, limit: int = 4, **changes: Any) -> HostRecord:
    fields: dict[str, Any] = {
        "host_id": host_id,
        "address": f"127.0.0.1:{9000 + sum(map(ord, host_id)) % 1000}",
        "namespace": "guest",
        "actions": (ACTION,),
        "models": ("minilm",),
        "state": "warm",
        "limit": limit,
    }
    fields.update(changes)
    return HostRecord(**fields)


@pytest.fixture(params=["redis", "memory"])
def registry(request: pytest.FixtureRequest) -> Registry:
    if request.param == "memory":
        return InMemoryRegistry(heartbeat_ttl_s=3.0)
    server = request.getfixturevalue("redis_server")
    return RedisRegistry(connect_redis(server.url), KEYS, heartbeat_ttl_s=3.0)


def in_use(registry: Registry) -> dict[str, int]:
    return {record.host_id: record.slots_in_use for record in registry.hosts()}


def test_packing_takes_the_fullest_host_with_room_ties_to_lowest_id(registry: Registry) -> None:
    for host_id in ("h2", "h1", "h3"):
        registry.heartbeat(host(host_id, limit=2))
    picks = [registry.acquire(ACTION) for _ in range(6)]
    assert [slot.host_id for slot in picks if slot] == ["h1", "h1", "h2", "h2", "h3", "h3"]
    assert [slot.in_use for slot in picks if slot] == [1, 2, 1, 2, 1, 2]
    assert registry.acquire(ACTION) is None
    # A slot freed on h2 makes h2 the only host with room; then h1 (fuller than h3) is preferred.
    registry.release(picks[2])
    assert registry.acquire(ACTION).host_id == "h2"  # type: ignore[union-attr]
    registry.release(picks[1])
    registry.release(picks[4])
    registry.release(picks[5])
    assert in_use(registry) == {"h1": 1, "h2": 2, "h3": 0}
    assert registry.acquire(ACTION).host_id == "h1"  # type: ignore[union-attr]


def test_only_live_warm_hosts_serving_the_action_are_routed(registry: Registry) -> None:
    registry.heartbeat(host("a", state="starting"))
    registry.heartbeat(host("b", state="draining"))
    registry.heartbeat(host("c", actions=(OTHER,)))
    assert registry.acquire(ACTION) is None
    registry.heartbeat(host("a"))  # now warm
    assert registry.acquire(ACTION).host_id == "a"  # type: ignore[union-attr]
    registry.heartbeat(host("a", actions=(OTHER,)))  # no longer serves ACTION
    assert registry.acquire(ACTION) is None
    if isinstance(registry, RedisRegistry):  # the index was pruned on the way (not just skipped)
        assert registry.redis.smembers(registry.keys.action_hosts(ACTION)) == {b"b"}
    assert registry.acquire(OTHER).host_id == "a"  # type: ignore[union-attr]
    assert registry.pool_stats(ACTION).rejected == 2


def test_sixty_four_concurrent_acquirers_never_exceed_the_limit(registry: Registry) -> None:
    limits = {"h1": 3, "h2": 5, "h3": 4}
    for host_id, limit in limits.items():
        registry.heartbeat(host(host_id, limit=limit))
    lock = threading.Lock()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    errors: list[str] = []
    start = threading.Barrier(64)

    def worker() -> None:
        start.wait()
        for _ in range(40):
            slot = registry.acquire(ACTION)
            if slot is None:
                continue
            with lock:
                running[slot.host_id] += 1
                peak[slot.host_id] = max(peak[slot.host_id], running[slot.host_id])
                if slot.in_use > limits[slot.host_id]:
                    errors.append(f"{slot.host_id} in use {slot.in_use}")
            time.sleep(0.0005)
            with lock:
                running[slot.host_id] -= 1
            registry.release(slot, duration_s=0.0005)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(peak[host_id] <= limit for host_id, limit in limits.items()), peak
    assert sum(peak.values()) > 0
    assert in_use(registry) == {"h1": 0, "h2": 0, "h3": 0}
    stats = registry.pool_stats(ACTION)
    assert stats.acquired == stats.completed == stats.timed > 0
    assert stats.acquired + stats.rejected == 64 * 40


def test_release_never_goes_below_zero_and_records_completions(registry: Registry) -> None:
    registry.heartbeat(host("h1"))
    slot = registry.acquire(ACTION)
    assert slot is not None
    assert registry.release(slot, duration_s=0.25) is True
    assert registry.release(slot, duration_s=0.5) is False
    assert registry.release(Slot("ghost", "127.0.0.1:1", ACTION, 1)) is False
    assert in_use(registry) == {"h1": 0}
    if isinstance(registry, RedisRegistry):  # Redis's own bookkeeping
        assert registry.redis.hget(registry.keys.slots, "ghost") is None  # not recreated
    stats = registry.pool_stats(ACTION)
    assert (stats.acquired, stats.completed, stats.timed) == (1, 3, 2)
    assert stats.duration_ms_sum == pytest.approx(750.0)
    assert stats.recent_ms == (500.0, 250.0)


def test_recent_durations_are_capped(registry: Registry) -> None:
    registry.heartbeat(host("h1"))
    for i in range(DURATION_SAMPLES + 10):
        registry.release(Slot("h1", "x", ACTION, 0), duration_s=i / 1000)
    recent = registry.pool_stats(ACTION).recent_ms
    assert len(recent) == DURATION_SAMPLES
    assert recent[0] == pytest.approx(DURATION_SAMPLES + 9)


def test_expired_heartbeat_drops_the_host_and_routes_elsewhere(redis_server: RedisProcess) -> None:
    # A generous TTL against heartbeats every 50 ms: robust on a loaded machine.
    registry = RedisRegistry(connect_redis(redis_server.url), KEYS, heartbeat_ttl_s=1.5)
    registry.heartbeat(host("h1", limit=4))
    registry.heartbeat(host("h2", limit=4))
    first = registry.acquire(ACTION)
    assert first is not None and first.host_id == "h1"
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # only h2 keeps heartbeating
        registry.heartbeat(host("h2", limit=4))
        time.sleep(0.05)
    assert [record.host_id for record in registry.hosts()] == ["h2"]
    second = registry.acquire(ACTION)
    assert second is not None and second.host_id == "h2"
    keys = registry.keys
    assert registry.redis.smembers(keys.action_hosts(ACTION)) == {b"h2"}
    assert registry.redis.smembers(keys.hosts) == {b"h2"}
    assert registry.redis.hkeys(keys.slots) == [b"h2"]
    assert registry.release(first) is False  # late completion of work on the dropped host


def test_heartbeat_keeps_slot_counter_and_scaler_limit(registry: Registry) -> None:
    registry.heartbeat(host("h1", limit=8, reported_in_flight=0))
    assert registry.set_limit("h1", 2) is True
    assert registry.set_limit("unknown", 2) is False
    if isinstance(registry, RedisRegistry):  # Redis's own bookkeeping
        assert registry.redis.hget(registry.keys.limits, "unknown") is None
    assert registry.acquire(ACTION) is not None
    registry.heartbeat(host("h1", limit=8, reported_in_flight=0))  # must not reset the counter
    assert registry.acquire(ACTION) is not None
    registry.heartbeat(host("h1", limit=8, reported_in_flight=1))  # nor undo the scaler's limit
    assert registry.acquire(ACTION) is None
    (record,) = registry.hosts()
    assert (record.limit, record.scaler_limit, record.routing_limit, record.slots_in_use) == (8, 2, 2, 2)
    registry.set_limit("h1", 20)  # capped by the host's own limit
    assert registry.host("h1").routing_limit == 8  # type: ignore[union-attr]
    registry.set_limit("h1", 0)  # drain
    assert registry.acquire(ACTION) is None


def test_new_host_counter_is_seeded_from_reported_in_flight(registry: Registry) -> None:
    registry.heartbeat(host("h1", limit=3, reported_in_flight=2))
    slot = registry.acquire(ACTION)
    assert slot is not None and slot.in_use == 3
    assert registry.acquire(ACTION) is None


def test_remove_host_forgets_it_and_ignores_a_late_heartbeat(registry: Registry) -> None:
    registry.heartbeat(host("h1", actions=(ACTION, OTHER)))
    registry.set_limit("h1", 2)
    registry.acquire(ACTION)
    assert registry.remove_host("h1") is True
    assert registry.heartbeat(host("h1")) is False
    assert registry.hosts() == []
    assert registry.acquire(ACTION) is None
    assert registry.limited_hosts() == set()
    if isinstance(registry, RedisRegistry):  # Redis's own bookkeeping
        keys = registry.keys
        for key in (keys.action_hosts(ACTION), keys.action_hosts(OTHER), keys.hosts, keys.slots, keys.limits):
            assert registry.redis.exists(key) == 0, key
    assert registry.remove_host("h1") is False


def test_redis_restart_rebuilds_the_registry_from_heartbeats(redis_server: RedisProcess) -> None:
    registry = RedisRegistry(connect_redis(redis_server.url), KEYS, heartbeat_ttl_s=3.0)
    fleet = [host("h1", limit=2), host("h2", limit=2)]
    for record in fleet:
        registry.heartbeat(record)
    epoch = registry.epoch()
    assert registry.epoch() == epoch
    held = [registry.acquire(ACTION), registry.acquire(ACTION)]
    assert [slot.host_id for slot in held if slot] == ["h1", "h1"]

    redis_server.restart()  # no persistence: every key and the script cache are gone

    assert registry.epoch() != epoch
    assert registry.hosts() == []
    assert registry.acquire(ACTION) is None  # callers retry until hosts heartbeat again
    for record in fleet:  # the next heartbeats; h1 reports the two activations still running
        in_flight = 2 if record.host_id == "h1" else 0
        registry.heartbeat(replace(record, reported_in_flight=in_flight))
        registry.heartbeat(replace(record, reported_in_flight=in_flight))
    assert [record.host_id for record in registry.hosts()] == ["h1", "h2"]
    assert registry.redis.smembers(registry.keys.action_hosts(ACTION)) == {b"h1", b"h2"}
    assert in_use(registry) == {"h1": 2, "h2": 0}
    slot = registry.acquire(ACTION)
    assert slot is not None and slot.host_id == "h2"
    for old in held:
        assert registry.release(old)  # type: ignore[arg-type]
    assert in_use(registry) == {"h1": 0, "h2": 1}


def test_hot_path_survives_script_flush_close_and_thread_exit(redis_server: RedisProcess) -> None:
    registry = RedisRegistry(connect_redis(redis_server.url), KEYS, heartbeat_ttl_s=3.0)
    registry.heartbeat(host("h1"))
    baseline = len(registry.redis.client_list())
    registry.redis.script_flush()  # acquire/release reload their script
    slot = registry.acquire(ACTION)
    assert slot is not None and registry.release(slot)
    registry.close()  # pinned connections reopen on next use
    slot = registry.acquire(ACTION)
    assert slot is not None and registry.release(slot)

    def route_one() -> None:
        taken = registry.acquire(ACTION)
        assert taken is not None
        registry.release(taken)

    threads = [threading.Thread(target=route_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    del threads
    deadline = time.monotonic() + 5
    while len(registry.redis.client_list()) > baseline + 1:  # + this thread's pinned connection
        assert time.monotonic() < deadline, "connections of finished threads were not closed"
        gc.collect()
        time.sleep(0.02)
    assert in_use(registry) == {"h1": 0}


def test_wrong_or_missing_password_is_a_clear_error(redis_server: RedisProcess) -> None:
    base = f"redis://{redis_server.host}:{redis_server.port}/0"
    with pytest.raises(RegistryError, match="rejected the credentials") as wrong:
        connect_redis(f"redis://:not-the-password@{redis_server.host}:{redis_server.port}/0")
    assert "not-the-password" not in str(wrong.value)
    with pytest.raises(RegistryError, match="rejected the credentials"):
        connect_redis(base)
    with pytest.raises(RegistryError, match="cannot reach Redis"):
        connect_redis(f"redis://:x@127.0.0.1:{free_loopback_port()}/0", timeout_s=0.5)
    unauthenticated = redis.Redis(host=redis_server.host, port=redis_server.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):  # a client made without connect_redis
        RedisRegistry(unauthenticated, KEYS).hosts()


def test_action_registration_round_trips(registry: Registry) -> None:
    spec = {"namespace": "guest", "name": "embed", "models": ["minilm"], "digest": "sha256:ab"}
    assert registry.action_spec(ACTION) is None
    registry.register_action(ACTION, spec)
    assert registry.action_spec(ACTION) == spec
    assert registry.registered_actions() == [ACTION]
    registry.unregister_action(ACTION)
    assert registry.action_spec(ACTION) is None and registry.registered_actions() == []


def test_heartbeat_rejects_bad_records(registry: Registry) -> None:
    with pytest.raises(ValueError, match="state"):
        registry.heartbeat(host("h1", state="hot"))
    with pytest.raises(ValueError):
        registry.heartbeat(host("h1", limit=-1))
    with pytest.raises(ValueError):
        registry.heartbeat(host("h1", actions=("",)))
    assert registry.hosts() == []


_ids = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


@given(a=_ids, b=_ids, ns_a=_ids, ns_b=_ids)
def test_keys_never_collide_across_kinds_ids_or_namespaces(a: str, b: str, ns_a: str, ns_b: str) -> None:
    root = RedisKeys()

    def all_keys(namespace: str, name: str) -> set[str]:
        k = root.namespace(namespace)
        return {k.host(name), k.action_hosts(name), k.removed(name), k.unreachable(name), k.action(name),
                k.stats(name), k.durations(name), k.waiting(name)}  # fmt: skip

    def fixed(namespace: str) -> set[str]:
        k = root.namespace(namespace)
        return {k.hosts, k.slots, k.limits, k.actions}

    scaler = {root.leader, root.decisions, root.epoch, root.namespaces}
    assert len(all_keys(ns_a, a)) == 8 and not all_keys(ns_a, a) & (fixed(ns_a) | scaler)
    if (ns_a, a) != (ns_b, b):
        assert not all_keys(ns_a, a) & all_keys(ns_b, b)
    if ns_a != ns_b:  # a namespace's keys never fall under another namespace's ACL patterns
        assert not any(key.startswith(root.namespace(ns_b).prefix + ":") for key in all_keys(ns_a, a))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
    ops=st.lists(st.one_of(st.just("acquire"), st.integers(min_value=0, max_value=20)), max_size=40),
)
def test_acquire_release_match_a_pure_model(
    redis_server: RedisProcess, limits: list[int], ops: list[str | int]
) -> None:
    """Against a model of the rule: fullest host with room, ties to the lowest id; int = release."""
    client = redis_server.client()
    client.flushdb()
    registry = RedisRegistry(client, KEYS)
    ids = [f"h{i}" for i in range(len(limits))]
    for host_id, limit in zip(ids, limits, strict=True):
        registry.heartbeat(host(host_id, limit=limit))
    used = dict.fromkeys(ids, 0)
    held: list[Slot] = []
    for op in ops:
        if op == "acquire":
            room = [h for h, limit in zip(ids, limits, strict=True) if used[h] < limit]
            expected = min(room, key=lambda h: (-used[h], h)) if room else None
            slot = registry.acquire(ACTION)
            assert (slot.host_id if slot else None) == expected
            if slot:
                used[slot.host_id] += 1
                held.append(slot)
        elif held:
            slot = held.pop(int(op) % len(held))
            assert registry.release(slot) is True
            used[slot.host_id] -= 1
    assert in_use(registry) == used
