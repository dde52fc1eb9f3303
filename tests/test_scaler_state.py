"""The scaler's own records: the lease (Redis and in-memory), the decision log, pool configurations."""

from __future__ import annotations

import threading
import time

from redis_harness import RedisProcess
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import connect_redis
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_scaler.state import InMemoryLease, InMemoryScalerStore, RedisLease, RedisScalerStore


def test_leader_lease_one_holder_expiry_and_release(redis_server: RedisProcess) -> None:
    client = connect_redis(redis_server.url)
    keys = RedisKeys("test")
    a = RedisLease(client, keys, "replica-a", ttl_s=0.6)
    b = RedisLease(client, keys, "replica-b", ttl_s=0.6)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    time.sleep(0.3)
    assert a.try_acquire_or_renew() is True  # renewed: still a's after the first TTL
    time.sleep(0.4)
    assert b.try_acquire_or_renew() is False
    assert a.holder() == "replica-a"
    time.sleep(0.8)  # a stops renewing
    assert b.try_acquire_or_renew() is True
    assert a.try_acquire_or_renew() is False
    assert a.release() is False  # cannot release b's lease
    assert b.release() is True
    assert a.try_acquire_or_renew() is True


def test_leader_lease_has_exactly_one_winner_among_racers(redis_server: RedisProcess) -> None:
    client = connect_redis(redis_server.url)
    leases = [RedisLease(client, RedisKeys("race"), f"replica-{i}", ttl_s=5.0) for i in range(16)]
    start = threading.Barrier(len(leases))
    won: list[str] = []

    def contend(lease: RedisLease) -> None:
        start.wait()
        if lease.try_acquire_or_renew():
            won.append(lease.holder_id)

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and leases[0].holder() == won[0]


def test_in_memory_lease_follows_the_same_rules() -> None:
    now = [0.0]
    slot = InMemoryLease.Slot()
    a = InMemoryLease(slot, "replica-a", ttl_s=10, clock=lambda: now[0])
    b = InMemoryLease(slot, "replica-b", ttl_s=10, clock=lambda: now[0])
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    now[0] = 9.0
    assert a.try_acquire_or_renew()  # renewed until 19
    now[0] = 15.0
    assert not b.try_acquire_or_renew() and a.holder() == "replica-a"
    now[0] = 30.0  # a stopped renewing
    assert a.holder() is None and b.try_acquire_or_renew()
    assert not a.release() and b.release() and a.try_acquire_or_renew()


def test_decision_log_is_newest_first_and_capped(redis_server: RedisProcess) -> None:
    for store in (RedisScalerStore(redis_server.client(), RedisKeys("t")), InMemoryScalerStore()):
        store.log_decisions([{"n": i} for i in range(3)])
        store.log_decisions([{"n": 3}])
        assert store.decisions(2) == [{"n": 3}, {"n": 2}]
        store.log_decisions([{"n": i} for i in range(4, 1100)])
        assert len(store.decisions(5000)) == 1000 and store.decisions(1) == [{"n": 1099}]


def test_a_pool_config_is_validated_against_the_scalers_default_policy(redis_server: RedisProcess) -> None:
    """The bug the restructuring found: a stored config was read back against "hybrid", so under
    `--policy kpa` every knob of KPA (and the manual host count with it) was silently dropped."""
    for store in (RedisScalerStore(redis_server.client(), RedisKeys("t")), InMemoryScalerStore()):
        config = PoolConfig(knobs={"container_concurrency": 8, "target_percentage": 50.0}, manual_hosts=2)
        store.save_pool_config("/guest/a@1", config)
        assert store.pool_config("/guest/a@1", "kpa") == config
        # Read against a policy whose knobs it does not fit, it falls back to the defaults.
        assert store.pool_config("/guest/a@1", "hybrid") == PoolConfig()
        assert store.pool_config("/guest/unknown@1", "kpa") == PoolConfig()
