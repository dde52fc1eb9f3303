"""`warmwhisk_sim.engine`: many pools on a cluster of invoker nodes. Exact small cases (placement,
eviction, shared weights, node CPU, routed containers, cold starts), conservation, determinism,
and the quiet-pool skipping checked against ticking every pool every tick."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from test_sim_traces import TRACE
from warmwhisk_scaler.policy import POLICIES, HybridConfig, OpenWhiskConfig, make_policy
from warmwhisk_sim.engine import (
    Cluster,
    EngineSettings,
    HostModel,
    PoolSpec,
    RoutedTier,
    SimOutput,
    memory_horizon_s,
    simulate,
)
from warmwhisk_sim.traces import arrival_times, read_azure_trace, run_times

HOST = HostModel(cold_start_s=2.0, memory_mb=100.0, cores=2.0)


def pool(
    name: str, *pairs: tuple[float, float], host: HostModel = HOST, config: Any = None, **kw: Any
) -> PoolSpec:
    return PoolSpec(
        name,
        [a for a, _ in pairs],
        [d for _, d in pairs],
        host,
        config if config is not None else OpenWhiskConfig(),
        **kw,
    )


def run(pools: list[PoolSpec], policy: str = "openwhisk", horizon_s: float = 30.0, **kw: Any) -> SimOutput:
    cluster = kw.pop("cluster", Cluster())
    settings = kw.pop("settings", EngineSettings())
    return simulate(pools, make_policy(policy), horizon_s=horizon_s, cluster=cluster, settings=settings, **kw)


# --- exact small cases ---------------------------------------------------------------------------


def test_shared_weights_are_held_once_per_node_and_model() -> None:
    host = dataclasses.replace(HOST, memory_mb=100.0, shared_mb=300.0, model="m")
    # Two activations at once: OpenWhisk starts two hosts (one per activation), both on one node.
    out = run([pool("a", (0.0, 1.0), (0.0, 1.0), host=host)], horizon_s=10.0)
    assert len(out.hosts) == 2
    assert out.peak_memory_mb == pytest.approx(2 * 100 + 300)
    # Both alive from t=0 to the horizon (idle < 600 s): (2 x 100 + 300) MB x 10 s.
    assert out.memory_mb_s == pytest.approx(500 * 10.0)
    stock = run([pool("a", (0.0, 1.0), (0.0, 1.0), host=dataclasses.replace(HOST, memory_mb=400.0))])
    assert stock.peak_memory_mb == pytest.approx(800)


def test_a_host_goes_to_its_pools_home_node_then_the_next_with_room() -> None:
    cluster = Cluster(nodes=3, node_memory_mb=250.0)
    out = run([pool("a", *[(0.0, 1.0)] * 5)], cluster=cluster)
    nodes = [h.node for h in out.hosts]
    # Two hosts of 100 MB fit a node of 250 MB: home first, then stepping through the others.
    assert len(nodes) == 5 and len(set(nodes)) == 3
    assert nodes[0] == nodes[1] and all(nodes.count(n) <= 2 for n in set(nodes))


def test_without_room_openwhisk_evicts_idle_hosts_of_other_pools_least_recent_first() -> None:
    cluster = Cluster(nodes=1, node_memory_mb=250.0)
    pools = [
        pool("old", (0.0, 1.0)),
        pool("new", (1.0, 1.0)),
        pool("late", (10.0, 1.0)),
    ]
    out = run(pools, cluster=cluster, settings=EngineSettings(evict_idle=True))
    # At t=10 the node holds "old" (idle since 3 s) and "new" (idle since 4 s): "old" goes.
    evicted = [h for h in out.hosts if h.evicted]
    assert out.evictions == 1 and [out.pools[h.pool] for h in evicted] == ["old"]
    assert evicted[0].removed_at == pytest.approx(10.0)
    assert out.completed.all()
    # Without eviction (Kubernetes, warmwhisk's scaler) the start is refused until room frees up.
    waiting = run(pools, cluster=cluster, settings=EngineSettings(evict_idle=False))
    assert waiting.evictions == 0 and waiting.refused_starts >= 1


def test_busy_hosts_share_their_nodes_cores() -> None:
    pools = [pool("a", (0.0, 1.0)), pool("b", (0.0, 1.0))]
    alone = run(pools, cluster=Cluster(nodes=1, node_cores=math.inf), horizon_s=10)
    shared = run(pools, cluster=Cluster(nodes=1, node_cores=2.0), horizon_s=10)
    # Each host keeps 2 cores busy: on a 2-core node the two runs take twice as long.
    assert list(alone.latency) == pytest.approx([3.0, 3.0])  # 2 s cold start + 1 s
    assert list(shared.latency) == pytest.approx([4.0, 4.0])


def test_routed_containers_start_once_per_idle_period() -> None:
    tier = RoutedTier(start_s=0.5, memory_mb=50.0, idle_timeout_s=100.0)
    spec = pool("a", (0.0, 1.0), (5.0, 1.0), (200.0, 1.0), routed=tier)
    out = run([spec], horizon_s=300.0)
    assert out.routed_starts == 2
    assert list(out.routed_cold) == [True, False, True]
    # The routed cold start adds to that activation's latency.
    assert out.latency[0] == pytest.approx(2.0 + 1.0 + 0.5)
    # Routed memory: 50 MB from 0 to 105 s and from 200 s to the end (300 s).
    assert out.memory_mb_s == pytest.approx(100.0 * 300.0 + 50.0 * (105.0 + 100.0))


def test_a_cold_start_is_an_activation_that_waited_for_a_starting_host() -> None:
    config = HybridConfig(initial_limit=1, max_limit=1, keep_alive_s=1000.0)
    # t=0 starts a host (cold); t=3 finds it busy until 3.5 and waits without a host starting.
    spec = pool("a", (0.0, 1.5), (3.0, 1.0), config=config)
    out = run([spec], policy="hybrid", horizon_s=20.0)
    assert out.start[1] > out.arrival[1]
    cold = out.cold()
    assert cold[0]
    assert not cold[1] or len(out.hosts) > 1  # only a start it waited through makes it cold


def test_spread_routing_uses_the_least_busy_host() -> None:
    config = dataclasses.replace(POLICIES["rayserve"].config_type(), min_hosts=2, upscale_delay_s=0.0)
    work = [(3.0 + i * 0.01, 5.0) for i in range(4)]
    packed = run([pool("a", *work, config=config)], policy="rayserve")
    spread = run([pool("a", *work, config=config)], policy="rayserve", settings=EngineSettings(spread=True))
    # Two replicas warm at t=2 and 4 requests: packing fills one replica first (curve min(c, 2)
    # cores: 4 on one host take twice as long), spreading puts two on each.
    assert max(spread.latency) < max(packed.latency)


def test_ticks_only_waits_for_the_next_tick_at_zero_hosts() -> None:
    spec = pool("a", (0.5, 1.0), config=HybridConfig())
    between = run([spec], policy="hybrid")
    on_ticks = run([spec], policy="hybrid", settings=EngineSettings(ticks_only=True))
    assert between.latency[0] == pytest.approx(2.0 + 1.0)
    assert on_ticks.latency[0] == pytest.approx(0.5 + 2.0 + 1.0)  # the tick at t=1 starts the host


def test_at_most_max_starts_per_tick() -> None:
    spec = pool("a", *[(0.5, 10.0)] * 10)
    out = run([spec], settings=EngineSettings(ticks_only=True, max_starts_per_tick=4), horizon_s=30)
    started = sorted(h.started_at for h in out.hosts)
    assert started[:4] == [1.0] * 4 and started[4:8] == [2.0] * 4 and started[8:] == [3.0] * 2


def test_memory_horizon_is_the_longest_window_plus_two_ticks() -> None:
    assert memory_horizon_s(POLICIES["kpa"].config_type(), 10.0) == 60.0 + 2 * 2.0
    assert memory_horizon_s(POLICIES["rayserve"].config_type(), 10.0) == 30.0 + 2 * 1.0
    assert memory_horizon_s(HybridConfig(), 10.0) == 10.0 + 2 * 1.0


# --- conservation, determinism, skipping ---------------------------------------------------------


def trace_pools(policy: str, functions: int, minutes: int, host: HostModel) -> list[PoolSpec]:
    config = POLICIES[policy].config_type()
    out = []
    for i, fn in enumerate(read_azure_trace(TRACE)[:functions]):
        rng = np.random.default_rng([3, i])
        t = arrival_times(rng, np.asarray(fn.per_minute[:minutes]))
        d = run_times(rng, fn, t.size)
        model = dataclasses.replace(host, model=f"m{i % 3}")
        out.append(PoolSpec(fn.hash_function[:8], t, d, model, config, timeout_s=30.0))
    return out


HOST_TIGHT = HostModel(cold_start_s=2.0, memory_mb=250.0, shared_mb=100.0, throughput_curve=(1.0, 1.3, 1.4))


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_arrival_is_served_or_dropped_and_a_seed_gives_one_result(policy: str) -> None:
    pools = trace_pools(policy, 10, 40, HOST_TIGHT)
    settings = EngineSettings(evict_idle=policy == "openwhisk")
    cluster = Cluster(nodes=2, node_memory_mb=1500.0, node_cores=6.0)
    a = run(pools, policy, horizon_s=40 * 60.0, cluster=cluster, settings=settings)
    b = run(pools, policy, horizon_s=40 * 60.0, cluster=cluster, settings=settings)
    n = sum(len(p.arrivals) for p in pools)
    served = int(a.completed.sum())
    dropped = int((~a.completed).sum())
    assert served + dropped == n and served > 0
    assert np.all(a.start[a.completed] >= a.arrival[a.completed])
    assert np.all(a.end[a.completed] - a.start[a.completed] >= a.duration[a.completed] - 1e-6)
    assert np.array_equal(a.end, b.end, equal_nan=True) and a.memory_mb_s == b.memory_mb_s


@pytest.mark.slow  # 3-9 s a policy: left to make test
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_skipping_quiet_pools_changes_nothing(policy: str) -> None:
    """The same run ticking every pool every tick and skipping the quiet ones: identical."""
    pools = trace_pools(policy, 14, 90, HOST_TIGHT)
    # Ray Serve keeps one replica per deployment (min_replicas 1): on the tight nodes the pools
    # would evict each other's last replica forever and never be quiet, so it gets room.
    memory = 20000.0 if policy == "rayserve" else 2500.0
    cluster = Cluster(nodes=2, node_memory_mb=memory, node_cores=8.0)
    runs = [
        run(
            pools,
            policy,
            horizon_s=90 * 60.0,
            cluster=cluster,
            settings=EngineSettings(skip_quiet=skip, evict_idle=True),
        )
        for skip in (True, False)
    ]
    fast, slow = runs
    assert fast.ticks < slow.ticks  # it did skip
    assert np.array_equal(fast.start, slow.start, equal_nan=True)
    assert np.array_equal(fast.end, slow.end, equal_nan=True)
    assert [dataclasses.astuple(h) for h in fast.hosts] == [dataclasses.astuple(h) for h in slow.hosts]
    assert fast.memory_mb_s == slow.memory_mb_s and fast.peak_memory_mb == slow.peak_memory_mb
    assert (fast.evictions, fast.refused_starts) == (slow.evictions, slow.refused_starts)


def test_pools_of_one_run_share_one_tick() -> None:
    with pytest.raises(ValueError, match="tick_s"):
        run([pool("a", (0.0, 1.0)), pool("b", (0.0, 1.0), config=OpenWhiskConfig(tick_s=2.0))])
    with pytest.raises(ValueError):
        run([pool("a", (2.0, 1.0), (1.0, 1.0))])  # arrivals out of order
