"""The control loop tick by tick, with the in-memory registry, a fake backend, an in-memory lease
and store, and a clock the test moves: no Redis, no processes. Each test reads like a timeline."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from fakes import Clock, FakeBackend, heartbeat_from
from warmwhisk_protocol.forwarding import ActionSpec
from warmwhisk_protocol.memory import InMemoryRegistry
from warmwhisk_scaler.controller import Controller
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_scaler.registries import InMemoryRegistries
from warmwhisk_scaler.settings import ScalerSettings
from warmwhisk_scaler.state import InMemoryLease, InMemoryScalerStore

SPEC = ActionSpec("guest", "echo", "main", False, "def main(a):\n    return a\n")
POOL = SPEC.key("/guest/echo")
SETTINGS = ScalerSettings(
    redis_url="redis://unused", host_redis_url="redis://unused", token="t", tick_s=0.5,
    heartbeat_s=1.0, window_s=10.0, start_timeout_s=30.0,
)  # fmt: skip


class Rig:
    """One pool, one or more controller replicas over shared in-memory state."""

    def __init__(self, settings: ScalerSettings = SETTINGS) -> None:
        self.clock = Clock()
        self.registry = InMemoryRegistry(heartbeat_ttl_s=settings.heartbeat_ttl_s, clock=self.clock)
        self.registry.register_action(POOL, SPEC.to_json())
        self.registries = InMemoryRegistries({"guest": self.registry})
        self.backend = FakeBackend(self.clock)
        self.store = InMemoryScalerStore(epoch=lambda: None)
        self.lease_slot = InMemoryLease.Slot()
        self.settings = settings

    def controller(self, holder: str = "replica-a") -> Controller:
        lease = InMemoryLease(self.lease_slot, holder, self.settings.lease_ttl_s, self.clock)
        return Controller(self.registries, self.backend, self.settings, lease, self.store, self.clock)

    def wait(self, count: int) -> None:
        """`count` activations wait at routers for a slot (until far in the future)."""
        for i in range(count):
            self.registry.start_waiting(POOL, f"w{i}", self.clock() + 3600)

    def heartbeat(self, host_id: str, state: str = "warm", in_flight: int = 0) -> None:
        self.registry.heartbeat(heartbeat_from(self.backend, host_id, state, in_flight))

    def decisions(self) -> list[tuple[str, str]]:
        return [(d["kind"], d["reason"]) for d in reversed(self.store.decisions(1000))]


def test_from_zero_a_queue_starts_hosts_which_get_their_limit_once_warm() -> None:
    rig = Rig()
    controller = rig.controller()
    assert controller.step() is True and rig.backend.started == []  # nothing waits: nothing starts
    rig.wait(3)
    rig.clock.advance(0.5)
    controller.step()
    (host,) = rig.backend.started
    assert rig.decisions()[-1][0] == "add_hosts"
    rig.clock.advance(2.0)
    rig.heartbeat(host, state="warm")
    controller.step()
    assert rig.registry.host(host).scaler_limit == 2  # the hybrid policy's initial limit
    assert controller.status()["cold_start_s"][POOL] == pytest.approx(2.0)


def test_after_redis_lost_its_state_the_loop_waits_two_heartbeats_before_deciding() -> None:
    rig = Rig()
    controller = rig.controller()
    controller.step()
    rig.registries.lose_state()  # Redis restarted empty: a new epoch, no hosts, no registrations
    rig.registry.register_action(POOL, SPEC.to_json())
    rig.wait(5)
    rig.clock.advance(0.5)
    controller.step()
    assert rig.backend.started == []  # quiet: the hosts may still come back with their heartbeats
    rig.clock.advance(1.0)
    controller.step()
    assert rig.backend.started == []
    rig.clock.advance(1.0)  # two heartbeat periods after the epoch changed
    controller.step()
    assert len(rig.backend.started) == 1


def test_a_drained_host_is_stopped_once_idle_not_before() -> None:
    rig = Rig()
    controller = rig.controller()
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=2))
    controller.step()
    first, second = rig.backend.started
    for host in (first, second):
        rig.heartbeat(host)
    controller.step()
    slot = rig.registry.acquire(POOL)  # one activation runs on the fullest (lowest id) host
    assert slot is not None
    busy = slot.host_id
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=1))
    rig.clock.advance(0.5)
    controller.step()
    # Manual scale-down drains the idle host first, and stops it at once (nothing in flight).
    (idle,) = {first, second} - {busy}
    assert rig.backend.stopped == [idle]
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=0))
    rig.clock.advance(0.5)
    controller.step()
    assert rig.registry.host(busy).scaler_limit == 0  # draining: no new slots
    assert busy in rig.backend.hosts  # still running its activation
    rig.clock.advance(0.5)
    rig.heartbeat(busy, in_flight=1)
    controller.step()
    assert busy in rig.backend.hosts
    rig.registry.release(slot, 0.1)
    rig.heartbeat(busy, in_flight=0)
    rig.clock.advance(0.5)
    controller.step()
    assert busy not in rig.backend.hosts and rig.registry.host(busy) is None


def test_a_host_that_never_turns_warm_is_given_up_after_the_start_timeout() -> None:
    rig = Rig()
    controller = rig.controller()
    rig.wait(1)
    controller.step()
    (host,) = rig.backend.started
    rig.clock.advance(SETTINGS.start_timeout_s - 1)
    rig.heartbeat(host, state="starting")
    controller.step()
    assert host in rig.backend.hosts
    rig.clock.advance(2)
    controller.step()
    assert host in rig.backend.stopped
    assert any(k == "remove_hosts" and "did not turn warm" in reason for k, reason in rig.decisions())
    rig.clock.advance(0.5)
    controller.step()
    assert len(rig.backend.started) == 2  # the queue is still there: a replacement starts


def test_a_new_leader_adopts_running_hosts_and_removes_foreign_ones() -> None:
    rig = Rig()
    a, b = rig.controller("replica-a"), rig.controller("replica-b")
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=1))
    assert a.step() is True and b.step() is False  # one leader
    (host,) = rig.backend.started
    rig.heartbeat(host)
    stale = rig.backend.start(dataclasses.replace(rig.backend.specs[host], host_id="h-stale", pool="/gone@1"))
    # a dies without giving the lease up; b takes over once the lease expires.
    rig.clock.advance(SETTINGS.lease_ttl_s + 0.1)
    rig.heartbeat(host)
    assert b.step() is True
    assert rig.backend.running() == [rig.backend.hosts[host]]  # adopted, not duplicated
    assert stale.host_id in rig.backend.stopped
    assert ("remove_hosts", "stale host found at takeover") in rig.decisions()
    assert [d["by"] for d in rig.store.decisions(1)] == ["replica-b"]
    assert a.step() is False  # the old leader, back, must not act


def test_under_another_default_policy_a_pools_saved_knobs_and_manual_count_apply() -> None:
    """The bug the restructuring found: under --policy kpa, a pool's config was re-validated
    against the hybrid policy on load and silently dropped (no manual count, default knobs)."""
    rig = Rig(dataclasses.replace(SETTINGS, policy="kpa"))
    controller = rig.controller()
    rig.store.save_pool_config(POOL, PoolConfig(knobs={"container_concurrency": 8}, manual_hosts=2))
    controller.step()
    assert len(rig.backend.started) == 2


def test_start_failures_back_off_exponentially_with_one_log_entry_each() -> None:
    rig = Rig()
    controller = rig.controller()
    rig.backend.fail_starts = 3
    rig.wait(2)
    controller.step()
    failures = [r for k, r in rig.decisions() if "starting a host failed" in r]
    assert len(failures) == 1 and "1 in a row; next try in 1.0 s" in failures[0]
    for advance, expected in ((0.5, 1), (0.5, 2), (1.0, 2), (1.0, 3), (3.9, 3)):
        rig.clock.advance(advance)
        controller.step()
        assert len([r for _, r in rig.decisions() if "starting a host failed" in r]) == expected, advance
    assert rig.backend.started == []
    rig.clock.advance(0.1)  # 4 s after the third failure (its back-off): tried, and it works
    controller.step()
    assert len(rig.backend.started) == 1


def test_host_starts_are_bounded_per_tick_and_in_all() -> None:
    settings = dataclasses.replace(SETTINGS, max_starts_per_tick=3, max_hosts=5)
    rig = Rig(settings)
    controller = rig.controller()
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=1000))
    controller.step()
    assert len(rig.backend.started) == 3  # the tick's budget
    rig.clock.advance(0.5)
    controller.step()
    assert len(rig.backend.started) == 5  # the server-wide cap
    rig.clock.advance(0.5)
    controller.step()
    assert len(rig.backend.started) == 5


def test_a_stop_request_ends_a_tick_between_host_starts() -> None:
    rig = Rig(dataclasses.replace(SETTINGS, max_starts_per_tick=50))
    controller = rig.controller()
    rig.store.save_pool_config(POOL, PoolConfig(manual_hosts=50))
    stop = threading.Event()
    controller._stop = stop
    original = rig.backend.start

    def slow_start(spec):  # type: ignore[no-untyped-def]
        if len(rig.backend.started) == 2:
            stop.set()  # SIGTERM arrives while the tick starts hosts
        return original(spec)

    rig.backend.start = slow_start  # type: ignore[method-assign]
    controller.step()
    assert len(rig.backend.started) == 3


def test_at_the_host_cap_an_idle_host_of_another_pool_makes_room_a_busy_one_never() -> None:
    settings = dataclasses.replace(SETTINGS, max_hosts=1)
    rig = Rig(settings)
    other_spec = ActionSpec("guest", "other", "main", False, "def main(a):\n    return {}\n")
    other = other_spec.key("/guest/other")
    rig.registry.register_action(other, other_spec.to_json())
    controller = rig.controller()
    rig.wait(1)
    controller.step()
    (first,) = rig.backend.started
    rig.heartbeat(first)
    controller.step()
    slot = rig.registry.acquire(POOL)  # the first pool's host is busy
    assert slot is not None
    rig.registry.start_waiting(other, "o1", rig.clock() + 3600)
    for _ in range(4):
        rig.clock.advance(0.5)
        rig.heartbeat(first, in_flight=1)
        controller.step()
    assert rig.backend.started == [first] and first in rig.backend.hosts  # busy: never taken
    rig.registry.release(slot, 0.1)
    rig.registry.stop_waiting(POOL, "w0")  # the first pool's activation was served
    rig.clock.advance(0.5)
    rig.heartbeat(first, in_flight=0)
    controller.step()  # idle now: drained and stopped to make room
    assert first not in rig.backend.hosts
    assert any("host cap reached" in reason for _, reason in rig.decisions())
    rig.clock.advance(0.5)
    controller.step()
    (second,) = [h for h in rig.backend.started if h != first]
    assert rig.backend.hosts[second].pool == other
