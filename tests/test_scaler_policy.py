"""Scaling policies, driven tick by tick with an injected clock: each test reads as a timeline.

Observations are built by hand (no simulator): at time t the pool has these hosts, this queue,
these rates; the policy answers with decisions and a new state, which the next tick gets back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmwhisk_scaler.policy import (
    POLICIES,
    Decision,
    HostView,
    HybridConfig,
    HybridPolicy,
    KnativeKPA,
    KnativeKPAConfig,
    Observation,
    OpenWhiskConfig,
    OpenWhiskDefault,
    RayServe,
    RayServeConfig,
    make_policy,
)

# --- helpers -------------------------------------------------------------------------------------


def host(
    n: int,
    *,
    in_flight: int = 0,
    limit: int = 2,
    state: str = "warm",
    started_at: float = 0.0,
    last_active_at: float = 0.0,
) -> HostView:
    return HostView(f"h{n}", state, in_flight, limit, started_at, last_active_at)  # type: ignore[arg-type]


def full_hosts(count: int, limit: int, *, now: float = 0.0) -> tuple[HostView, ...]:
    return tuple(host(i, in_flight=limit, limit=limit, last_active_at=now) for i in range(count))


def observe(t: float, hosts: Iterable[HostView] = (), **kw: Any) -> Observation:
    kw.setdefault("cold_start_s", 2.0)
    return Observation(pool="bert", now=t, hosts=tuple(hosts), **kw)


def of_kind(decisions: list[Decision], kind: str) -> list[Decision]:
    return [d for d in decisions if d.kind == kind]


def added(decisions: list[Decision]) -> int:
    return sum(d.count for d in of_kind(decisions, "add_hosts"))


def removed(decisions: list[Decision]) -> list[str]:
    return [i for d in of_kind(decisions, "remove_hosts") for i in d.host_ids]


def new_limit(decisions: list[Decision]) -> int | None:
    limits = [d.limit for d in of_kind(decisions, "set_limit")]
    return limits[-1] if limits else None


HYBRID = HybridPolicy()


# --- registry ------------------------------------------------------------------------------------


def test_registry_names_four_policies_with_the_same_interface() -> None:
    assert set(POLICIES) == {"hybrid", "openwhisk", "kpa", "rayserve"}
    for name in POLICIES:
        policy = make_policy(name)
        config = policy.config_type()
        assert policy.name == name
        assert config.tick_s > 0 and config.max_hosts >= 1
        decisions, state = policy.decide(observe(0.0), policy.initial_state(), config)
        assert decisions and all(isinstance(d, Decision) for d in decisions)
        assert type(state) is type(policy.initial_state())
    with pytest.raises(KeyError, match="known: hybrid"):
        make_policy("hpa")


def test_hybrid_config_rejects_impossible_knobs() -> None:
    with pytest.raises(ValueError):
        HybridConfig(min_hosts=5, max_hosts=2)
    with pytest.raises(ValueError):
        HybridConfig(initial_limit=0)
    with pytest.raises(ValueError):
        HybridConfig(limit_step_factor=1.0)


# --- hybrid: cold start and bursts ---------------------------------------------------------------


def test_burst_of_40_at_zero_hosts_adds_several_hosts_at_once_then_waits_for_them() -> None:
    config = HybridConfig(initial_limit=2)
    state = HYBRID.initial_state()

    # t=0: 40 activations arrive, no host at all. Runs take 0.5 s, a host 2 s to start.
    # A host at limit 2 drains 4/s; draining 40 within one cold start takes 40 / 2 / 4 = 5 hosts.
    decisions, state = HYBRID.decide(observe(0.0, queued=40, service_time_s=0.5), state, config)
    assert [d.kind for d in decisions] == ["add_hosts"]
    assert decisions[0].count == 5 and decisions[0].limit == 2
    assert "cold start from zero" in decisions[0].reason

    # t=1: the 5 hosts are starting; the same queue needs no more.
    starting = [host(i, state="starting", started_at=0.0) for i in range(5)]
    decisions, state = HYBRID.decide(observe(1.0, starting, queued=40, service_time_s=0.5), state, config)
    assert added(decisions) == 0
    assert "starting hosts cover it" in decisions[-1].reason

    # t=2: they are warm and full; 30 wait. 5 hosts drain 20/s: 1.5 s < a 2 s cold start → queue.
    warm = full_hosts(5, 2, now=2.0)
    decisions, state = HYBRID.decide(observe(2.0, warm, queued=30, service_time_s=0.5), state, config)
    assert added(decisions) == 0
    assert decisions[-1].kind == "hold" and "queue" in decisions[-1].reason


def test_cold_start_respects_max_hosts_and_min_hosts() -> None:
    decisions, _ = HYBRID.decide(
        observe(0.0, queued=1000, service_time_s=1.0), HYBRID.initial_state(), HybridConfig(max_hosts=3)
    )
    assert added(decisions) == 3
    decisions, _ = HYBRID.decide(
        observe(0.0, queued=1), HYBRID.initial_state(), HybridConfig(min_hosts=2, max_hosts=4)
    )
    assert added(decisions) == 2


def test_queue_when_warm_hosts_drain_it_faster_than_a_cold_start_else_add_hosts() -> None:
    config = HybridConfig(initial_limit=4, max_utilization=0.9)
    state = replace(HYBRID.initial_state(), limit=4)
    hosts = full_hosts(3, 4)  # 3 hosts × 4 slots, runs of 0.5 s: they drain 24 activations/s

    # 6 wait, 10/s arrive: the last waits 6 / 24 = 0.25 s, far less than a 2 s cold start.
    decisions, _ = HYBRID.decide(
        observe(5.0, hosts, queued=6, arrivals_per_s=10.0, service_time_s=0.5), state, config
    )
    assert added(decisions) == 0
    assert "expected wait 0.25 s" in decisions[-1].reason and "queue" in decisions[-1].reason

    # 200 wait: 8.3 s > 2 s. Hosts for 10/s plus 200 drained within one cold start, at 8/s per
    # host: ceil((200 / 2 + 10) / 8) = 14, of which 3 are warm → 11 more, in one decision.
    decisions, _ = HYBRID.decide(
        observe(5.0, hosts, queued=200, arrivals_per_s=10.0, service_time_s=0.5), state, config
    )
    assert [d.count for d in of_kind(decisions, "add_hosts")] == [11]

    # A short queue that keeps growing: 23/s arrive, above 90 % of the 24/s drained → add.
    decisions, _ = HYBRID.decide(
        observe(5.0, hosts, queued=3, arrivals_per_s=23.0, service_time_s=0.5), state, config
    )
    assert added(decisions) >= 1


def test_no_scale_out_while_a_warm_host_still_has_a_free_slot() -> None:
    hosts = (*full_hosts(2, 2), host(2, in_flight=1, limit=2))
    decisions, _ = HYBRID.decide(
        observe(5.0, hosts, queued=50, arrivals_per_s=50.0, service_time_s=1.0),
        replace(HYBRID.initial_state(), limit=2),
        HybridConfig(),
    )
    assert added(decisions) == 0


# --- hybrid: concurrency limit -------------------------------------------------------------------


def drive_limit(
    config: HybridConfig,
    seconds: int,
    *,
    throughput: dict[int, float],
    p50: dict[int, float],
    p99: dict[int, float],
) -> list[tuple[float, int]]:
    """One warm host, always full, 20 waiting. The fake world answers each limit with its per-host
    throughput and run times at once. Returns the (time, limit) changes."""
    state = HYBRID.initial_state()
    limit, changes = config.initial_limit, []
    for t in range(seconds):
        obs = observe(
            float(t),
            [host(0, in_flight=limit, limit=limit, last_active_at=t)],
            queued=20,
            arrivals_per_s=100.0,
            completions_per_s=throughput[limit],
            latency_p50_s=p50[limit],
            latency_p99_s=p99[limit],
            service_time_s=p50[limit],
            cold_start_s=60.0,  # expensive hosts: the queue waits, so only the limit moves
        )
        decisions, state = HYBRID.decide(obs, state, config)
        if (limit_now := new_limit(decisions)) is not None:
            limit = limit_now
            changes.append((float(t), limit))
    return changes


def test_limit_rises_1_2_4_while_completions_rise_and_steps_back_when_they_flatten() -> None:
    config = HybridConfig(initial_limit=1, limit_settle_s=10.0, latency_objective_s=1.0, max_hosts=1)
    changes = drive_limit(
        config,
        120,
        throughput={1: 2.0, 2: 4.0, 4: 8.0, 8: 8.2},  # flat beyond 4 (+2.5 % < the 5 % asked for)
        p50={1: 0.5, 2: 0.5, 4: 0.5, 8: 0.95},
        p99={1: 0.6, 2: 0.6, 4: 0.6, 8: 0.99},
    )
    # t=10: full for a whole window at 1 → 2. t=20: +100 % per host, kept; full again for a
    # window at 2 by t=21 → 4. Same at t=32 → 8. t=42: +2.5 % only → back to 4, and it stays.
    assert changes == [(10.0, 2), (21.0, 4), (32.0, 8), (42.0, 4)]


def test_p99_above_the_objective_because_of_the_limit_backs_off_one_step() -> None:
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0, latency_objective_s=1.0, max_hosts=1)
    changes = drive_limit(
        config,
        100,
        throughput={2: 4.0, 4: 6.0},
        p50={2: 0.3, 4: 0.6},  # at 4 every run takes twice as long ...
        p99={2: 0.5, 4: 1.5},  # ... and the p99 leaves the objective
    )
    # Raised at t=10; at t=20 the p99 is 1.5 s > 1 s and runs are slower than at 2: back to 2,
    # and no new try before reprobe_after_s.
    assert changes == [(10.0, 4), (20.0, 2)]


def test_a_tail_the_workload_has_at_any_limit_does_not_lower_the_limit() -> None:
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0, latency_objective_s=1.0, max_hosts=1)
    changes = drive_limit(
        config,
        22,
        throughput={2: 4.0, 4: 8.0},
        p50={2: 0.3, 4: 0.3},  # runs are as fast at 4 as at 2 ...
        p99={2: 0.5, 4: 5.0},  # ... the p99 is a few long requests, not the limit
    )
    assert changes == [(10.0, 4), (21.0, 8)]


def drive_light_load(
    config: HybridConfig, seconds: int, *, p50: dict[int, float], p99: dict[int, float], in_flight: int
) -> list[tuple[float, int]]:
    """Four warm hosts, no queue, ``in_flight`` activations spread over them, 1 arrival/s."""
    state = HYBRID.initial_state()
    limit, changes = config.initial_limit, []
    for t in range(seconds):
        hosts = [host(i, in_flight=min(limit, max(0, in_flight - i * limit)), limit=limit) for i in range(4)]
        obs = observe(
            float(t),
            hosts,
            arrivals_per_s=1.0,
            completions_per_s=1.0,
            latency_p50_s=p50[limit],
            latency_p99_s=p99[limit],
            service_time_s=p50[limit],
        )
        decisions, state = HYBRID.decide(obs, state, config)
        if (limit_now := new_limit(decisions)) is not None:
            limit = limit_now
            changes.append((float(t), limit))
    return changes


def test_a_tentative_step_down_that_does_not_speed_runs_up_is_undone() -> None:
    # t=0: limit 2, p99 5 s over a 1 s objective, nothing known at 1, and limit 1 would still
    # hold the pool's 2 activations: try 1. t=10: runs are no faster at 1 (the p99 is the
    # workload's own tail), so back to 2, now with 1 measured below: no more tries.
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0, latency_objective_s=1.0)
    changes = drive_light_load(config, 60, p50={1: 0.3, 2: 0.3}, p99={1: 5.0, 2: 5.0}, in_flight=2)
    assert changes == [(0.0, 1), (10.0, 2)]


def test_a_tentative_step_down_that_speeds_runs_up_is_kept() -> None:
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0, latency_objective_s=1.0)
    changes = drive_light_load(config, 60, p50={1: 0.15, 2: 0.3}, p99={1: 0.5, 2: 1.5}, in_flight=2)
    assert changes == [(0.0, 1)]


def test_a_tentative_step_down_is_not_taken_when_it_would_cost_capacity() -> None:
    # 7 activations on 4 hosts: at limit 1 they would not fit (4 × 1 × 90 %), so no guess.
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0, latency_objective_s=1.0)
    changes = drive_light_load(config, 30, p50={1: 0.3, 2: 0.3}, p99={1: 5.0, 2: 5.0}, in_flight=7)
    assert changes == []


def test_an_unmeasured_raise_is_undone_when_the_load_falls_away() -> None:
    config = HybridConfig(initial_limit=2, limit_settle_s=10.0)
    state = HYBRID.initial_state()
    busy = {"completions_per_s": 4.0, "latency_p50_s": 0.5, "latency_p99_s": 0.6, "service_time_s": 0.5}
    for t in range(11):  # full with a queue for a whole window → raised at t=10
        decisions, state = HYBRID.decide(
            observe(float(t), full_hosts(1, 2), queued=5, cold_start_s=60.0, **busy), state, config
        )
    assert new_limit(decisions) == 4
    # t=20: the queue is gone, the host runs 1 activation: the raise was never measured.
    quiet = {**busy, "completions_per_s": 1.0}
    decisions, state = HYBRID.decide(
        observe(20.0, [host(0, in_flight=1, limit=4)], queued=0, **quiet), state, config
    )
    assert new_limit(decisions) == 2
    assert "not measured" in of_kind(decisions, "set_limit")[0].reason
    assert state.ceiling is None  # unproven, so it may be tried again


def test_hosts_with_another_limit_are_aligned_to_the_pool_limit() -> None:
    state = replace(HYBRID.initial_state(), limit=4)
    hosts = (host(0, limit=4), host(1, limit=1, state="starting"))
    decisions, _ = HYBRID.decide(observe(3.0, hosts), state, HybridConfig(initial_limit=2))
    assert of_kind(decisions, "set_limit") == [
        Decision.set_limit(("h1",), 4, "align hosts to the pool's limit 4")
    ]


# --- hybrid: keep-alive ---------------------------------------------------------------------------


def test_idle_hosts_go_after_keep_alive_least_recently_active_first_never_below_min_hosts() -> None:
    config = HybridConfig(keep_alive_s=120.0, min_hosts=1)
    state = HYBRID.initial_state()
    hosts = [host(0, last_active_at=0.0), host(1, last_active_at=10.0), host(2, last_active_at=20.0)]

    decisions, state = HYBRID.decide(observe(119.0, hosts), state, config)
    assert removed(decisions) == []  # nobody idle for 120 s yet
    decisions, state = HYBRID.decide(observe(125.0, hosts), state, config)
    assert removed(decisions) == ["h0"]
    hosts = hosts[1:]
    decisions, state = HYBRID.decide(observe(140.0, hosts), state, config)
    assert removed(decisions) == ["h1"]  # h2 is idle too, but it is the min_hosts one
    hosts = hosts[1:]
    decisions, state = HYBRID.decide(observe(10_000.0, hosts), state, config)
    assert removed(decisions) == []


def test_min_hosts_zero_scales_to_zero_but_not_while_work_waits_or_runs() -> None:
    config = HybridConfig(keep_alive_s=60.0, last_host_keep_alive_s=60.0, min_hosts=0)
    idle = [host(0, last_active_at=0.0), host(1, last_active_at=0.0)]
    decisions, _ = HYBRID.decide(observe(61.0, idle), HYBRID.initial_state(), config)
    assert sorted(removed(decisions)) == ["h0", "h1"]
    busy = [host(0, in_flight=1, last_active_at=0.0), host(1, last_active_at=0.0)]
    decisions, _ = HYBRID.decide(observe(61.0, busy), HYBRID.initial_state(), config)
    assert removed(decisions) == ["h1"]
    decisions, _ = HYBRID.decide(observe(61.0, idle, queued=1), HYBRID.initial_state(), config)
    assert removed(decisions) == []


def test_the_last_host_stays_for_the_longer_keep_alive_surplus_hosts_go_sooner() -> None:
    config = HybridConfig(keep_alive_s=60.0, last_host_keep_alive_s=600.0, adapt_keep_alive=False)
    idle = [host(0, last_active_at=0.0), host(1, last_active_at=5.0)]
    decisions, _ = HYBRID.decide(observe(70.0, idle), HYBRID.initial_state(), config)
    assert removed(decisions) == ["h0"]  # surplus: 60 s; h1, the most recently active, stays
    decisions, _ = HYBRID.decide(observe(604.0, idle[1:]), HYBRID.initial_state(), config)
    assert removed(decisions) == []
    decisions, _ = HYBRID.decide(observe(605.0, idle[1:]), HYBRID.initial_state(), config)
    assert removed(decisions) == ["h1"]  # idle 600 s: the pool scales to zero


def test_a_premature_removal_lengthens_the_pools_keep_alive_a_right_one_shortens_it() -> None:
    config = HybridConfig(keep_alive_s=60.0, last_host_keep_alive_s=600.0, initial_limit=1)
    two = [host(0, last_active_at=0.0), host(1, last_active_at=10.0, in_flight=1)]
    decisions, state = HYBRID.decide(observe(61.0, two), HYBRID.initial_state(), config)
    assert removed(decisions) == ["h0"] and state.removed_at == 61.0
    # 200 s later a burst needs a second host again: the removed one would have served it had it
    # stayed 60 + 200 s; the pool keeps surplus hosts that long from now on.
    busy = [host(1, last_active_at=250.0, in_flight=1)]
    decisions, state = HYBRID.decide(observe(261.0, busy, queued=5, arrivals_per_s=2.0), state, config)
    assert added(decisions) >= 1 and state.keep_alive_s == pytest.approx(260.0)
    two = [host(1, last_active_at=300.0), host(2, last_active_at=400.0, in_flight=1)]
    decisions, state = HYBRID.decide(observe(500.0, two), state, config)
    assert removed(decisions) == []  # idle 200 s < 260 s
    decisions, state = HYBRID.decide(observe(560.0, two), state, config)
    assert removed(decisions) == ["h1"]
    # No add for last_host_keep_alive_s after that removal: it was right, halve (not below 60 s).
    one = [host(2, last_active_at=1100.0, in_flight=1)]
    _, state = HYBRID.decide(observe(1160.0, one), state, config)
    assert state.keep_alive_s == pytest.approx(130.0) and state.removed_at is None


def test_min_hosts_are_started_without_traffic() -> None:
    decisions, _ = HYBRID.decide(observe(0.0), HYBRID.initial_state(), HybridConfig(min_hosts=2))
    assert added(decisions) == 2


# --- OpenWhisk default ---------------------------------------------------------------------------


OW = OpenWhiskDefault()


def test_openwhisk_starts_one_container_per_concurrent_activation() -> None:
    config, state = OpenWhiskConfig(), OW.initial_state()
    # t=0: 5 activations find no container → 5 containers of limit 1.
    decisions, state = OW.decide(observe(0.0, queued=5), state, config)
    assert [(d.kind, d.count, d.limit) for d in decisions] == [("add_hosts", 5, 1)]
    # t=0.5: they are starting and hold those 5; nothing new.
    starting = [host(i, state="starting", limit=1) for i in range(5)]
    decisions, state = OW.decide(observe(0.5, starting, queued=5), state, config)
    assert added(decisions) == 0
    # t=3: 5 busy containers, 2 more activations wait → 2 more containers.
    busy = full_hosts(5, 1, now=3.0)
    decisions, state = OW.decide(observe(3.0, busy, queued=2), state, config)
    assert added(decisions) == 2


def test_openwhisk_containers_serve_one_activation_each() -> None:
    decisions, _ = OW.decide(observe(0.0, [host(0, limit=4)]), OW.initial_state(), OpenWhiskConfig())
    assert new_limit(decisions) == 1


def test_openwhisk_removes_a_container_idle_for_ten_minutes() -> None:
    config = OpenWhiskConfig()
    assert config.idle_timeout_s == 600.0
    hosts = [host(0, limit=1, last_active_at=0.0), host(1, limit=1, in_flight=1, last_active_at=0.0)]
    decisions, _ = OW.decide(observe(599.0, hosts), OW.initial_state(), config)
    assert removed(decisions) == []
    decisions, _ = OW.decide(observe(600.0, hosts), OW.initial_state(), config)
    assert removed(decisions) == ["h0"]  # h1 is busy


# --- Knative KPA ---------------------------------------------------------------------------------

KPA = KnativeKPA()


def test_kpa_defaults_are_knatives() -> None:
    c = KnativeKPAConfig()
    assert (c.tick_s, c.stable_window_s, c.panic_window_s) == (2.0, 60.0, 6.0)
    assert c.panic_threshold_percentage == 200.0 and c.scale_to_zero_grace_s == 30.0
    assert c.target == pytest.approx(4 * 0.7)  # containerConcurrency × 70 %


def kpa_hosts(count: int, concurrency: int) -> list[HostView]:
    """``count`` warm pods sharing ``concurrency`` in-flight requests as evenly as possible."""
    return [
        host(i, limit=4, in_flight=concurrency // count + (i < concurrency % count)) for i in range(count)
    ]


def test_kpa_panics_on_a_surge_scales_up_and_does_not_scale_down_while_panicking() -> None:
    config, state = KnativeKPAConfig(), KPA.initial_state()
    pods, t = 2, 0.0
    # Stable: 5 requests on 2 pods for a minute (target 2.8 per pod → 2 pods), every 2 s.
    while t < 60.0:
        decisions, state = KPA.decide(observe(t, kpa_hosts(pods, 5)), state, config)
        assert added(decisions) == 0 and removed(decisions) == []
        t += 2.0
    # t=60: 20 requests at once (8 on the pods, 12 buffered). The 6 s window averages
    # (5 + 5 + 20) / 3 = 10 → 4 pods = 2 × the 2 ready: panic, scale to 4.
    decisions, state = KPA.decide(observe(60.0, kpa_hosts(pods, 8), queued=12), state, config)
    assert state.panic_since == 60.0
    assert added(decisions) == 2
    pods = 4
    # t=62..120: the surge is over (2 requests). In panic mode the pod count never drops.
    t = 62.0
    while t <= 120.0:
        decisions, state = KPA.decide(observe(t, kpa_hosts(pods, 2)), state, config)
        assert removed(decisions) == [], t
        t += 2.0
    # t=122: 60 s after the last tick over the threshold, panic ends and stable mode scales down,
    # at most halving per tick (max-scale-down-rate 2).
    decisions, state = KPA.decide(observe(122.0, kpa_hosts(pods, 2)), state, config)
    assert state.panic_since is None
    assert len(removed(decisions)) == 2


def test_kpa_scales_to_zero_after_an_idle_stable_window_and_the_grace_period() -> None:
    config, state = KnativeKPAConfig(), KPA.initial_state()
    zero_at = None
    t = 0.0
    while t <= 200.0:
        concurrency = 1 if t < 10.0 else 0
        decisions, state = KPA.decide(observe(t, kpa_hosts(1, concurrency)), state, config)
        if removed(decisions) and zero_at is None:
            zero_at = t
        t += 2.0
    # The last request at t=8 leaves the 60 s stable window at t=68; then 30 s of grace.
    assert zero_at == 98.0


def test_kpa_scales_from_zero_at_once() -> None:
    decisions, _ = KPA.decide(observe(0.0, queued=3), KPA.initial_state(), KnativeKPAConfig())
    assert added(decisions) == 2  # ceil(3 / 2.8)
    assert of_kind(decisions, "add_hosts")[0].limit == 4


# --- Ray Serve -----------------------------------------------------------------------------------

RAY = RayServe()


def test_rayserve_defaults() -> None:
    c = RayServeConfig()
    assert (c.target_ongoing_requests, c.max_ongoing_requests) == (2.0, 5)
    assert (c.upscale_delay_s, c.downscale_delay_s, c.look_back_period_s) == (30.0, 600.0, 30.0)
    assert (c.min_hosts, c.max_hosts) == (1, 100)


def test_rayserve_scales_up_only_after_the_wish_held_for_30_s() -> None:
    config, state = RayServeConfig(), RAY.initial_state()
    one = [host(0, limit=5, in_flight=5)]
    # 10 ongoing requests on 1 replica (5 running, 5 queued): 10 / 2 = 5 replicas wanted.
    for t in range(30):
        decisions, state = RAY.decide(observe(float(t), one, queued=5), state, config)
        assert added(decisions) == 0, t
    decisions, state = RAY.decide(observe(30.0, one, queued=5), state, config)
    assert added(decisions) == 4 and state.target == 5


def test_rayserve_upscale_wish_interrupted_starts_over() -> None:
    config, state = RayServeConfig(look_back_period_s=1.0), RAY.initial_state()
    one = [host(0, limit=5, in_flight=5)]
    for t in range(20):
        _, state = RAY.decide(observe(float(t), one, queued=5), state, config)
    _, state = RAY.decide(observe(20.0, [host(0, limit=5, in_flight=2)]), state, config)  # just right
    for t in range(21, 50):
        decisions, state = RAY.decide(observe(float(t), one, queued=5), state, config)
        assert added(decisions) == 0, t
    decisions, state = RAY.decide(observe(51.0, one, queued=5), state, config)
    assert added(decisions) == 4


def test_rayserve_scales_down_only_after_600_s_and_keeps_min_replicas() -> None:
    config = RayServeConfig(look_back_period_s=1.0)
    state = replace(RAY.initial_state(), target=5)
    five = [host(i, limit=5, in_flight=1 if i == 0 else 0, last_active_at=0.0) for i in range(5)]
    for t in range(600):
        decisions, state = RAY.decide(observe(float(t), five), state, config)
        assert removed(decisions) == [], t
    decisions, state = RAY.decide(observe(600.0, five), state, config)
    assert state.target == 1  # 1 ongoing / 2 → 1 replica (min_replicas 1)
    assert sorted(removed(decisions)) == ["h1", "h2", "h3", "h4"]  # the busy h0 stays


def test_rayserve_cold_start_fast_path_from_zero() -> None:
    config = RayServeConfig(min_hosts=0)
    decisions, state = RAY.decide(observe(0.0, queued=7), RAY.initial_state(), config)
    assert added(decisions) == 1 and state.target == 1


# --- properties, for every policy ---------------------------------------------------------------


@st.composite
def host_views(draw: st.DrawFn, n: int, now: float) -> HostView:
    state = draw(st.sampled_from(["starting", "warm", "warm", "warm", "draining"]))
    limit = draw(st.integers(1, 40))
    in_flight = 0 if state == "starting" else draw(st.integers(0, limit + 2))
    started = draw(st.floats(0.0, now))
    active = draw(st.floats(started, now))
    return HostView(f"h{n}", state, in_flight, limit, started, active)  # type: ignore[arg-type]


@st.composite
def observations(draw: st.DrawFn, now: float) -> Observation:
    count = draw(st.integers(0, 8))
    hosts = tuple(draw(host_views(i, now)) for i in range(count))
    maybe_time = st.one_of(st.none(), st.floats(0.001, 30.0))
    return Observation(
        pool="m",
        now=now,
        hosts=hosts,
        queued=draw(st.integers(0, 300)),
        arrivals_per_s=draw(st.floats(0.0, 200.0)),
        completions_per_s=draw(st.floats(0.0, 200.0)),
        latency_p50_s=draw(maybe_time),
        latency_p99_s=draw(maybe_time),
        service_time_s=draw(maybe_time),
        cold_start_s=draw(maybe_time),
    )


@st.composite
def timelines(draw: st.DrawFn) -> list[Observation]:
    steps = draw(st.lists(st.floats(0.1, 400.0), min_size=1, max_size=8))
    now, out = 0.0, []
    for step in steps:
        now += step
        out.append(draw(observations(now)))
    return out


@st.composite
def configs(draw: st.DrawFn, name: str) -> Any:
    max_hosts = draw(st.integers(1, 10))
    min_hosts = draw(st.integers(0, max_hosts))
    if name == "hybrid":
        max_limit = draw(st.integers(1, 16))
        return HybridConfig(
            min_hosts=min_hosts,
            max_hosts=max_hosts,
            max_limit=max_limit,
            initial_limit=draw(st.integers(1, max_limit)),
            limit_settle_s=draw(st.sampled_from([0.0, 1.0, 10.0])),
            keep_alive_s=draw(st.sampled_from([0.0, 30.0, 120.0])),
        )
    if name == "openwhisk":
        return OpenWhiskConfig(max_hosts=max_hosts)
    if name == "kpa":
        return KnativeKPAConfig(min_hosts=min_hosts, max_hosts=max_hosts)
    return RayServeConfig(
        min_hosts=min_hosts, max_hosts=max_hosts, upscale_delay_s=0.0, downscale_delay_s=0.0
    )


def limit_bounds(name: str, config: Any) -> tuple[int, int]:
    return {
        "hybrid": lambda: (1, config.max_limit),
        "openwhisk": lambda: (1, 1),
        "kpa": lambda: (config.container_concurrency, config.container_concurrency),
        "rayserve": lambda: (config.max_ongoing_requests, config.max_ongoing_requests),
    }[name]()


@pytest.mark.parametrize("name", sorted(POLICIES))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_decisions_stay_within_max_hosts_never_remove_busy_hosts_and_keep_limits_in_range(
    name: str, data: st.DataObject
) -> None:
    policy = make_policy(name)
    config = data.draw(configs(name))
    lo, hi = limit_bounds(name, config)
    state = policy.initial_state()
    for obs in data.draw(timelines()):
        decisions, state = policy.decide(obs, state, config)
        assert decisions
        adds = added(decisions)
        assert len(obs.hosts) + adds <= max(config.max_hosts, len(obs.hosts))
        if adds:
            assert len(obs.hosts) + adds <= config.max_hosts
        gone = removed(decisions)
        assert len(gone) == len(set(gone))
        by_id = {h.host_id: h for h in obs.hosts}
        for host_id in gone:
            h = by_id[host_id]
            assert h.in_flight == 0 and h.state != "draining", h
        for d in decisions:
            if d.kind in ("add_hosts", "set_limit"):
                assert d.limit is not None and lo <= d.limit <= hi, d
            if d.kind == "add_hosts":
                assert d.count >= 1
            assert d.reason
