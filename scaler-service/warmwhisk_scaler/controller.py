"""The control loop: observe each pool, ask its policy, apply the decisions.

Runs in every scaler replica; only the holder of the lease acts (the others keep trying to take it
over). Per tick and per pool (an action key):

1. observe: hosts from the registry (heartbeats) and from the backend (started, not yet warm), the
   queue at routers, the pool's counters and run times; `measure.measure` turns them into the
   policy's `Observation` over the window (pure);
2. decide: the pool's policy (a pure function, `policy/`), or the operator's manual host count;
3. act: start hosts through the backend, drain hosts (limit 0, then stop once idle), set limits in
   the registry; every change goes to the decision log, written once per tick.

Pools are grouped by namespace: each namespace has its own registry (its hosts and routers see only
theirs), and every host the loop starts is told its namespace's credential and a token of its own.

Safety: after Redis lost its state (a new epoch) the loop waits two heartbeat periods so the running
hosts re-register before anything is decided (no duplicate containers); a new leader adopts the
backend's running hosts and removes stale ones. Bounds: at most `max_starts_per_tick` host starts
per tick and `max_hosts` hosts in all (at the cap, the least recently active idle host of another
pool is drained, so a pool that needs a host is not starved); a pool whose starts fail backs off
exponentially, with one
decision-log entry per tick for its failures; a stop request ends the tick between starts.
Everything it touches is passed in (registries, backend, lease, store, clock), so tests drive it
tick by tick with in-memory twins.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from warmwhisk_protocol.credentials import with_credential
from warmwhisk_protocol.forwarding import namespace_of
from warmwhisk_protocol.host import HostLaunch, HostSecrets
from warmwhisk_protocol.records import HostRecord
from warmwhisk_protocol.registry import Registry

from .backends import BackendError, HostBackend, HostSpec, RunningHost
from .measure import PoolWindow, measure, new_run_times
from .policy import POLICIES, Decision, HostView, Observation
from .pool_config import PoolConfig, PoolConfigError, policy_config
from .registries import Registries
from .settings import ScalerSettings
from .state import Lease, ScalerStore

# Cold starts are smoothed: new = (1 - a) * old + a * measured.
COLD_START_SMOOTHING = 0.5


@dataclass
class _Pool:
    """The loop's memory of one pool (the policy's own state included, as an explicit value)."""

    policy_name: str
    state: Any
    window: PoolWindow
    timed_seen: int | None = None  # the registry's count of timed completions at the last tick
    cold_start_s: float | None = None
    # Failed host starts in a row, and when the next start may be tried (exponential back-off).
    start_failures: int = 0
    next_start_at: float = 0.0


@dataclass
class _Starting:
    host: RunningHost
    limit: int


@dataclass
class _Hosts:
    """The loop's bookkeeping of hosts across ticks."""

    starting: dict[str, _Starting] = field(default_factory=dict)
    draining: dict[str, float] = field(default_factory=dict)  # host id -> when draining began
    reclaimed: set[str] = field(default_factory=set)  # drained for another pool at the host cap
    last_active: dict[str, float] = field(default_factory=dict)
    namespace: dict[str, str] = field(default_factory=dict)  # host id -> its namespace


def host_views(
    pool: str,
    records: list[HostRecord],
    running: Mapping[str, RunningHost],
    hosts: _Hosts,
) -> list[HostView]:
    """The pool's hosts as the policy sees them: warm or starting in the registry, started by the
    backend but not heard of yet, or draining (pure)."""
    views = []
    for record in records:
        busy = max(record.slots_in_use, record.reported_in_flight)
        started = running[record.host_id].started_at if record.host_id in running else record.heartbeat_at
        state = "draining" if record.host_id in hosts.draining else record.state
        pending = hosts.starting.get(record.host_id)
        # A host still loading gets its limit once warm: until then, the limit meant for it.
        limit = pending.limit if pending is not None and pending.limit else record.routing_limit
        last_active = hosts.last_active.get(record.host_id, started)
        views.append(HostView(record.host_id, state, busy, limit, started, last_active))
    seen = {r.host_id for r in records}
    for host_id, starting in hosts.starting.items():
        if starting.host.pool == pool and host_id not in seen:
            at = starting.host.started_at
            views.append(HostView(host_id, "starting", 0, starting.limit, at, at))
    for host in running.values():
        # Running, but its heartbeat is late: it still counts against max_hosts.
        if host.pool == pool and host.host_id not in seen and host.host_id not in hosts.starting:
            views.append(HostView(host.host_id, "starting", 0, 0, host.started_at, host.started_at))
    return views


class Controller:
    def __init__(
        self,
        registries: Registries,
        backend: HostBackend,
        settings: ScalerSettings,
        lease: Lease,
        store: ScalerStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registries = registries
        self.backend = backend
        self.settings = settings
        self.lease = lease
        self.store = store
        self.holder_id = lease.holder_id
        self._clock = clock
        self.is_leader = False
        self._pools: dict[str, _Pool] = {}
        self._hosts = _Hosts()
        self._adopted = False
        self._epoch: str | None = None
        self._quiet_until = 0.0
        self._log: list[dict[str, Any]] = []
        self._starts_left = 0
        self._running: dict[str, RunningHost] = {}
        self._records: list[HostRecord] = []  # this tick's heartbeat records, every namespace
        self._stop = threading.Event()
        self.ticks = 0

    def _pool_registry(self, pool: str) -> Registry:
        return self.registries.registry(namespace_of(pool))

    def _host_registry(self, host_id: str) -> Registry:
        return self.registries.registry(self._hosts.namespace[host_id])

    # ------------------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> None:
        self._stop = stop  # a tick in progress ends between host starts once it is set
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - Redis or the engine away: try again next tick
                sys.stderr.write(f"warmwhisk scaler: control loop: {type(exc).__name__}: {exc}\n")
            stop.wait(self.settings.tick_s)
        if self.is_leader:
            self.lease.release()

    def step(self) -> bool:
        """One iteration: renew or take the lease; if held, tick. True if this replica acted."""
        was_leader = self.is_leader
        self.is_leader = self.lease.try_acquire_or_renew()
        if not self.is_leader:
            if was_leader:  # lost it: the new leader adopts what runs; adopt again on return
                self._adopted = False
            return False
        now = self._clock()
        # Scripts and namespace users first, every step: after Redis lost its state the hosts can
        # log in and re-register only once they are back.
        self.registries.maintain()
        epoch = self.registries.epoch()
        if epoch != self._epoch:
            if self._epoch is not None:  # Redis lost its state: let hosts re-register first
                self._quiet_until = now + 2 * self.settings.heartbeat_s
            self._epoch = epoch
        if now < self._quiet_until:
            return True
        try:
            if not self._adopted:
                self._adopt(now)
            self.tick(now)
        finally:
            self._flush_log()
        return True

    def _adopt(self, now: float) -> None:
        """A new leader takes over the backend's running hosts; exited or foreign ones go."""
        records, pools = self._read_registries()
        adopted, removed = self.backend.reconcile(lambda host: host.pool in pools)
        live = {h.host_id for h in records}
        for host in adopted:
            self._hosts.namespace[host.host_id] = namespace_of(host.pool)
            if host.host_id not in live:
                self._hosts.starting[host.host_id] = _Starting(host, limit=0)
        for host_id in removed:
            if host_id in self._hosts.namespace:
                self._host_registry(host_id).remove_host(host_id)
            self._note(now, "", Decision.remove_hosts([host_id], "stale host found at takeover"))
        self._adopted = True

    def _read_registries(self) -> tuple[list[HostRecord], set[str]]:
        """Every namespace's live host records, and the pools the scaler knows of."""
        records: list[HostRecord] = []
        pools: set[str] = set()
        for namespace in self.registries.namespaces():
            registry = self.registries.registry(namespace)
            for record in registry.hosts():
                self._hosts.namespace[record.host_id] = namespace
                records.append(record)
                pools.update(record.actions)
            pools.update(registry.registered_actions())
        return records, pools

    # ------------------------------------------------------------------------------ one tick
    def tick(self, now: float) -> None:
        self.ticks += 1
        self._starts_left = self.settings.max_starts_per_tick
        records, pools = self._read_registries()
        self._records = records
        running = self._running = {h.host_id: h for h in self.backend.running()}
        for host in running.values():
            self._hosts.namespace.setdefault(host.host_id, namespace_of(host.pool))
        pools |= {s.host.pool for s in self._hosts.starting.values()}
        self._drain_unreachable(now, records)
        for pool in sorted(pools):
            if self._stop.is_set():
                return
            self._tick_pool(pool, now, [r for r in records if pool in r.actions], running)
        self._finish_draining(now, records)
        # Limits of hosts that are gone for good (crashed, removed by hand) are forgotten.
        known = set(running) | {r.host_id for r in records} | set(self._hosts.starting)
        for namespace in self.registries.namespaces():
            registry = self.registries.registry(namespace)
            for host_id in registry.limited_hosts() - known:
                registry.remove_host(host_id)

    def _tick_pool(
        self, pool: str, now: float, records: list[HostRecord], running: dict[str, RunningHost]
    ) -> None:
        config = self.store.pool_config(pool, self.settings.policy)
        policy_name = config.policy or self.settings.policy
        policy = POLICIES[policy_name]()
        memory = self._pools.get(pool)
        if memory is None or memory.policy_name != policy_name:
            window = PoolWindow(self.settings.window_s) if memory is None else memory.window
            memory = self._pools[pool] = _Pool(policy_name, policy.initial_state(), window)
        knobs = self._knobs(pool, now, config)
        self._track(now, records, memory)
        observation = self._observe(pool, now, records, running, memory)
        if config.manual_hosts is not None:
            decisions = manual_decisions(observation, config.manual_hosts, knobs)
        else:
            decisions, memory.state = policy.decide(observation, memory.state, knobs)
        for decision in decisions:
            self._apply(pool, now, decision)

    def _knobs(self, pool: str, now: float, config: PoolConfig) -> Any:
        try:
            return policy_config(config, self.settings.policy)
        except PoolConfigError as exc:  # one bad pool must not stall the others
            self._note(now, pool, Decision.hold(f"pool config ignored: {exc}"))
            return policy_config(PoolConfig(policy=config.policy), self.settings.policy)

    def _observe(
        self, pool: str, now: float, records: list[HostRecord], running: dict[str, RunningHost], memory: _Pool
    ) -> Observation:
        """Read the pool's counters and queue, and measure (no side effects beyond the window)."""
        registry = self._pool_registry(pool)
        stats = registry.pool_stats(pool)
        queued = registry.waiting(pool)
        runs = new_run_times(stats.recent_ms, stats.timed, memory.timed_seen)
        memory.timed_seen = stats.timed
        memory.window.record(now, stats.acquired, stats.completed, queued, runs)
        views = host_views(pool, records, running, self._hosts)
        return measure(pool, now, views, queued, memory.window, memory.cold_start_s)

    def _track(self, now: float, records: list[HostRecord], memory: _Pool) -> None:
        """Bookkeeping before the policy looks: hosts that turned warm get the limit meant for
        them and give the pool a cold-start measurement; busy hosts are active now."""
        for record in records:
            if record.host_id in self._hosts.starting and record.state == "warm":
                self._became_warm(record, now, memory)
            busy = record.slots_in_use or record.reported_in_flight
            if busy or record.host_id not in self._hosts.last_active:
                self._hosts.last_active[record.host_id] = now

    def _became_warm(self, record: HostRecord, now: float, memory: _Pool) -> None:
        starting = self._hosts.starting.pop(record.host_id)
        measured = now - starting.host.started_at
        previous = memory.cold_start_s
        memory.cold_start_s = measured if previous is None else (
            (1 - COLD_START_SMOOTHING) * previous + COLD_START_SMOOTHING * measured
        )  # fmt: skip
        if starting.limit:
            self._host_registry(record.host_id).set_limit(record.host_id, starting.limit)

    # ----------------------------------------------------------------------------- applying
    def _apply(self, pool: str, now: float, decision: Decision) -> None:
        hosts = self._hosts
        registry = self._pool_registry(pool)
        if decision.kind == "add_hosts":
            started = self._start_hosts(pool, decision.count, decision.limit or 1, now)
            if started < decision.count:
                decision = Decision.add_hosts(started, decision.limit or 1, decision.reason)
            if started == 0:
                return
        elif decision.kind == "remove_hosts":
            for host_id in decision.host_ids:
                if host_id in hosts.starting:
                    hosts.starting.pop(host_id)
                    self.backend.stop(host_id)
                    registry.remove_host(host_id)
                else:
                    registry.set_limit(host_id, 0)  # drain: no new slots, stop once idle
                    hosts.draining.setdefault(host_id, now)
        elif decision.kind == "set_limit" and decision.limit is not None:
            for host_id in decision.host_ids:
                if host_id in hosts.starting:
                    hosts.starting[host_id].limit = decision.limit
                    registry.preset_limit(host_id, decision.limit)
                else:
                    registry.set_limit(host_id, decision.limit)
        if decision.kind != "hold":
            self._note(now, pool, decision)

    def _start_hosts(self, pool: str, count: int, limit: int, now: float) -> int:
        """Start up to `count` hosts within this tick's start budget, the server-wide host cap and
        the pool's back-off; failures are counted, backed off and logged once. Returns how many
        started."""
        memory = self._pools[pool]
        room = self.settings.max_hosts - self._host_count() if self.settings.max_hosts else count
        if room <= 0 and count > 0:
            self._reclaim_idle_host(pool, now)
        wanted = min(count, self._starts_left, max(0, room))
        if now < memory.next_start_at:
            wanted = 0
        started, errors = 0, []
        for _ in range(wanted):
            if self._stop.is_set():
                break
            self._starts_left -= 1
            try:
                self._start_host(pool, limit, now)
                started += 1
            except BackendError as exc:
                errors.append(str(exc))
                break  # the engine said no: the next try waits for the back-off
        if errors:
            memory.start_failures += 1
            backoff = self.settings.start_backoff_s * 2 ** (memory.start_failures - 1)
            memory.next_start_at = now + min(self.settings.start_backoff_max_s, backoff)
            self._note(now, pool, Decision.hold(
                f"starting a host failed ({memory.start_failures} in a row; next try in "
                f"{memory.next_start_at - now:.1f} s): {errors[0]}"
            ))  # fmt: skip
        elif started:
            memory.start_failures, memory.next_start_at = 0, 0.0
        return started

    def _reclaim_idle_host(self, pool: str, now: float) -> None:
        """At the server-wide cap a pool that needs a host would wait for others' scale-down (a
        whole window, or for ever): drain the least recently active idle host of another pool,
        as OpenWhisk's pool evicts its least recently used idle container. It stops at the end
        of this tick (idle) and its room goes to whichever pool asks first. One per tick, and none
        while another reclaimed host is still draining."""
        hosts = self._hosts
        if any(host_id in hosts.reclaimed for host_id in hosts.draining):
            return
        idle = [
            r for r in self._records
            if pool not in r.actions and r.state == "warm" and r.host_id not in hosts.draining
            and r.slots_in_use == 0 and r.reported_in_flight == 0
        ]  # fmt: skip
        if not idle:
            return
        victim = min(idle, key=lambda r: hosts.last_active.get(r.host_id, 0.0))
        self._host_registry(victim.host_id).set_limit(victim.host_id, 0)
        hosts.draining.setdefault(victim.host_id, now)
        hosts.reclaimed.add(victim.host_id)
        reason = f"host cap reached: idle host {victim.host_id} drained so pool {pool} can start one"
        self._note(
            now,
            victim.actions[0] if victim.actions else pool,
            Decision.remove_hosts([victim.host_id], reason),
        )

    def _host_count(self) -> int:
        """Hosts this scaler runs or is starting, every pool together."""
        return len(set(self._running) | set(self._hosts.starting))

    def _start_host(self, pool: str, limit: int, now: float) -> None:
        """Start one host for `pool` (raises BackendError): its namespace's credential and a token
        of its own go in its secrets, never its environment."""
        namespace = namespace_of(pool)
        host_id = f"h-{hashlib.sha1(pool.encode()).hexdigest()[:8]}-{secrets.token_hex(3)}"
        settings = self.settings
        launch = HostLaunch(
            host_id=host_id,
            namespace=namespace,
            actions=(pool,),
            prefix=settings.prefix,
            max_concurrent=settings.host_max_concurrent,
            heartbeat_s=settings.heartbeat_s,
            memory_bytes=settings.host_memory_bytes,
        )
        credential = self.registries.credentials.issue(namespace)
        registry_url = with_credential(settings.host_redis_url, credential)
        host_secrets = HostSecrets(registry_url, secrets.token_urlsafe(32))
        spec = HostSpec(host_id, pool, launch.environment(), settings.host_memory_bytes, settings.model_dir,
                        secrets=host_secrets)  # fmt: skip
        host = self.backend.start(spec)
        self._hosts.namespace[host_id] = namespace
        self.registries.registry(namespace).preset_limit(host_id, limit)
        self._hosts.starting[host_id] = _Starting(host, limit)

    def _drain_unreachable(self, now: float, records: list[HostRecord]) -> None:
        """A host a router could not reach is drained and stopped; the policies see one host
        fewer and start a replacement if the pool still needs it."""
        for record in records:
            if record.unreachable and record.host_id not in self._hosts.draining:
                self._host_registry(record.host_id).set_limit(record.host_id, 0)
                self._hosts.draining[record.host_id] = now
                pool = record.actions[0] if record.actions else ""
                reason = f"a router could not reach host {record.host_id}"
                self._note(now, pool, Decision.remove_hosts([record.host_id], reason))

    def _finish_draining(self, now: float, records: list[HostRecord]) -> None:
        """Stop drained hosts once idle (or after a grace period), and hosts that never got warm."""
        by_id = {r.host_id: r for r in records}
        hosts = self._hosts
        for host_id, since in list(hosts.draining.items()):
            record = by_id.get(host_id)
            idle = record is None or (record.slots_in_use == 0 and record.reported_in_flight == 0)
            if idle or now - since > self.settings.start_timeout_s:
                self.backend.stop(host_id)
                self._host_registry(host_id).remove_host(host_id)
                hosts.draining.pop(host_id)
                hosts.reclaimed.discard(host_id)
                hosts.last_active.pop(host_id, None)
        for host_id, starting in list(hosts.starting.items()):
            if now - starting.host.started_at > self.settings.start_timeout_s:
                self.backend.stop(host_id)
                self._host_registry(host_id).remove_host(host_id)
                hosts.starting.pop(host_id)
                reason = f"host {host_id} did not turn warm within {self.settings.start_timeout_s:.0f} s"
                self._note(now, starting.host.pool, Decision.remove_hosts([host_id], reason))

    def _note(self, now: float, pool: str, decision: Decision) -> None:
        self._log.append({"t": now, "pool": pool, "kind": decision.kind, "count": decision.count,
                          "host_ids": list(decision.host_ids), "limit": decision.limit,
                          "reason": decision.reason, "by": self.holder_id})  # fmt: skip

    def _flush_log(self) -> None:
        entries, self._log = self._log, []
        self.store.log_decisions(entries)

    # ----------------------------------------------------------------------------- reading
    def status(self) -> dict[str, Any]:
        return {
            "replica": self.holder_id,
            "leader": self.lease.holder(),
            "is_leader": self.is_leader,
            "ticks": self.ticks,
            "starting": sorted(self._hosts.starting),
            "draining": sorted(self._hosts.draining),
            "cold_start_s": {pool: p.cold_start_s for pool, p in self._pools.items()},
        }


class ControlLoop:
    """A controller ticking in its own thread: one scaler replica (the service, tests, benchmarks)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=controller.run, args=(self._stop,), name="control-loop", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """End the loop after its current tick (it releases the lease it holds); False if it did not
        stop within `timeout_s`."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def manual_decisions(observation: Observation, hosts: int, knobs: Any) -> list[Decision]:
    """The operator pinned the pool to `hosts` hosts: start or drain (idle ones first) to match."""
    live = observation.live
    if len(live) < hosts:
        limit = max((h.limit for h in observation.warm), default=getattr(knobs, "initial_limit", 1))
        return [Decision.add_hosts(hosts - len(live), limit, f"manual scale to {hosts} hosts")]
    if len(live) > hosts:
        idle_first = sorted(live, key=lambda h: (h.in_flight, h.last_active_at))
        extra = [h.host_id for h in idle_first[: len(live) - hosts]]
        return [Decision.remove_hosts(extra, f"manual scale to {hosts} hosts")]
    return []
