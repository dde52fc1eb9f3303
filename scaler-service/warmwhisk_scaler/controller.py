"""The control loop: observe each pool, ask its policy, apply the decisions.

Runs in every scaler replica; only the holder of the Redis lease acts (the others keep trying
to take it over). Per tick and per pool (an action key):

1. observe: hosts from the registry (heartbeats) and from the backend (started, not yet warm),
   waiting activations, throughput and run times from the pool's counters, the measured cold
   start of the pool's hosts;
2. decide: the pool's policy (a pure function, `policy/`), or the operator's manual host count;
3. apply: start hosts through the backend, drain hosts (limit 0, then stop once idle), set
   limits in the registry; log every change in Redis for the API.

Safety: after Redis lost its state (a new epoch) the loop waits two heartbeat periods so the
running hosts re-register before anything is decided (no duplicate containers); on start it
adopts the backend's running hosts and removes stale ones.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import pool_config
from .backends import BackendError, HostBackend, HostSpec, RunningHost
from .policy import POLICIES, Decision, HostView, Observation
from .registry import HostRecord, LeaderLease, Registry
from .settings import ScalerSettings

DECISION_LOG_LENGTH = 1000
# Cold starts are smoothed: new = (1 - a) * old + a * measured.
COLD_START_SMOOTHING = 0.5


@dataclass
class _Pool:
    """The loop's memory of one pool (the policy's own state included, as an explicit value)."""

    policy_name: str
    state: Any
    # (t, acquired, completed, queued) over the window
    samples: deque[tuple[float, int, int, int]] = field(default_factory=deque)
    cold_start_s: float | None = None


@dataclass
class _Starting:
    host: RunningHost
    limit: int


class Controller:
    def __init__(
        self,
        registry: Registry,
        backend: HostBackend,
        settings: ScalerSettings,
        holder_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.settings = settings
        self.holder_id = holder_id or f"scaler-{secrets.token_hex(4)}"
        self.lease = LeaderLease(registry.redis, registry.keys, self.holder_id, settings.lease_ttl_s)
        self._clock = clock
        self.is_leader = False
        self._pools: dict[str, _Pool] = {}
        self._starting: dict[str, _Starting] = {}
        self._draining: dict[str, float] = {}  # host id -> when draining began
        self._last_active: dict[str, float] = {}
        self._adopted = False
        self._epoch: str | None = None
        self._quiet_until = 0.0
        self.ticks = 0

    # ------------------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> None:
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
            if was_leader:  # lost it: forget what we were doing; the new leader adopts it
                self._adopted = False
            return False
        now = self._clock()
        epoch = self.registry.epoch()
        if epoch != self._epoch:
            if self._epoch is not None:  # Redis lost its state: let hosts re-register first
                self._quiet_until = now + 2 * self.settings.heartbeat_s
            self._epoch = epoch
        if now < self._quiet_until:
            return True
        if not self._adopted:
            self._adopt(now)
        self.tick(now)
        return True

    def _adopt(self, now: float) -> None:
        """A new leader takes over the backend's running hosts; exited or foreign ones go."""
        known = set(self.registry.registered_actions()) | {
            a for h in self.registry.hosts() for a in h.actions
        }
        adopted, removed = self.backend.reconcile(lambda host: host.pool in known)
        live = {h.host_id for h in self.registry.hosts()}
        for host in adopted:
            if host.host_id not in live:
                self._starting[host.host_id] = _Starting(host, limit=0)
        for host_id in removed:
            self.registry.remove_host(host_id)
            self._log(now, "", Decision.remove_hosts([host_id], "stale host found at takeover"))
        self._adopted = True

    # ------------------------------------------------------------------------------ one tick
    def tick(self, now: float) -> None:
        self.ticks += 1
        records = self.registry.hosts()
        running = {h.host_id: h for h in self.backend.running()}
        pools = set(self.registry.registered_actions()) | {a for r in records for a in r.actions}
        pools |= {s.host.pool for s in self._starting.values()}
        self._drain_unreachable(now, records)
        for pool in sorted(pools):
            self._tick_pool(pool, now, [r for r in records if pool in r.actions], running)
        self._finish_draining(now, records)
        # Limits of hosts that are gone for good (crashed, removed by hand) are forgotten.
        known = set(running) | {r.host_id for r in records} | set(self._starting)
        for host_id in self.registry.limited_hosts() - known:
            self.registry.remove_host(host_id)

    def _tick_pool(
        self, pool: str, now: float, records: list[HostRecord], running: dict[str, RunningHost]
    ) -> None:
        config = pool_config.load(self.registry.redis, self.registry.keys, pool)
        policy_name = config.policy or self.settings.policy
        policy = POLICIES[policy_name]()
        memory = self._pools.get(pool)
        if memory is None or memory.policy_name != policy_name:
            memory = self._pools[pool] = _Pool(policy_name, policy.initial_state())
        try:
            knobs = pool_config.policy_config(config, self.settings.policy)
        except pool_config.PoolConfigError as exc:  # one bad pool must not stall the others
            self._log(now, pool, Decision.hold(f"pool config ignored: {exc}"))
            knobs = pool_config.policy_config(
                pool_config.PoolConfig(policy=config.policy), self.settings.policy
            )
        observation = self._observe(pool, now, records, running, memory)
        if config.manual_hosts is not None:
            decisions = manual_decisions(observation, config.manual_hosts, knobs)
        else:
            decisions, memory.state = policy.decide(observation, memory.state, knobs)
        for decision in decisions:
            self._apply(pool, now, decision)

    def _observe(
        self, pool: str, now: float, records: list[HostRecord], running: dict[str, RunningHost], memory: _Pool
    ) -> Observation:
        views = []
        for record in records:
            busy = max(record.slots_in_use, record.reported_in_flight)
            started = running[record.host_id].started_at if record.host_id in running else record.heartbeat_at
            if record.host_id in self._starting and record.state == "warm":
                self._became_warm(record, now, memory)
            if busy or record.host_id not in self._last_active:
                self._last_active[record.host_id] = now
            state = "draining" if record.host_id in self._draining else record.state
            pending = self._starting.get(record.host_id)
            # A host still loading gets its limit once warm: until then, the limit meant for it.
            limit = pending.limit if pending is not None and pending.limit else record.routing_limit
            views.append(HostView(record.host_id, state, busy, limit, started,
                                  self._last_active[record.host_id]))  # fmt: skip
        seen = {r.host_id for r in records}
        for host_id, starting in self._starting.items():
            if starting.host.pool == pool and host_id not in seen:
                views.append(HostView(host_id, "starting", 0, starting.limit, starting.host.started_at,
                                      starting.host.started_at))  # fmt: skip
        for host in running.values():
            # Running, but its heartbeat is late: it still counts against max_hosts.
            if host.pool == pool and host.host_id not in seen and host.host_id not in self._starting:
                views.append(HostView(host.host_id, "starting", 0, 0, host.started_at, host.started_at))
        stats = self.registry.pool_stats(pool)
        queued = self.registry.waiting(pool)
        memory.samples.append((now, stats.acquired, stats.completed, queued))
        while len(memory.samples) > 2 and memory.samples[0][0] < now - self.settings.window_s:
            memory.samples.popleft()
        first, last = memory.samples[0], memory.samples[-1]
        span = max(last[0] - first[0], 1e-9)
        recent = sorted(ms / 1000.0 for ms in stats.recent_ms)
        return Observation(
            pool=pool,
            now=now,
            hosts=tuple(sorted(views, key=lambda v: v.host_id)),
            queued=queued,
            # Arrivals = activations that got a slot + growth of the queue (those still waiting),
            # over the whole window even while less history exists: a burst in the first half
            # second is not a sustained rate of 48/s.
            arrivals_per_s=max(0.0, (last[1] - first[1]) + (last[3] - first[3]))
            / max(span, self.settings.window_s)
            if len(memory.samples) > 1
            else 0.0,
            completions_per_s=(last[2] - first[2]) / span if len(memory.samples) > 1 else 0.0,
            latency_p50_s=statistics.median(recent) if recent else None,
            latency_p99_s=recent[min(len(recent) - 1, int(0.99 * len(recent)))] if recent else None,
            service_time_s=statistics.fmean(recent) if recent else None,
            cold_start_s=memory.cold_start_s,
        )

    def _became_warm(self, record: HostRecord, now: float, memory: _Pool) -> None:
        starting = self._starting.pop(record.host_id)
        measured = now - starting.host.started_at
        previous = memory.cold_start_s
        memory.cold_start_s = measured if previous is None else (
            (1 - COLD_START_SMOOTHING) * previous + COLD_START_SMOOTHING * measured
        )  # fmt: skip
        if starting.limit:
            self.registry.set_limit(record.host_id, starting.limit)

    # ----------------------------------------------------------------------------- applying
    def _apply(self, pool: str, now: float, decision: Decision) -> None:
        if decision.kind == "add_hosts":
            for _ in range(decision.count):
                self._start_host(pool, decision.limit or 1, now)
        elif decision.kind == "remove_hosts":
            for host_id in decision.host_ids:
                if host_id in self._starting:
                    self._starting.pop(host_id)
                    self.backend.stop(host_id)
                    self.registry.remove_host(host_id)
                else:
                    self.registry.set_limit(host_id, 0)  # drain: no new slots, stop once idle
                    self._draining.setdefault(host_id, now)
        elif decision.kind == "set_limit" and decision.limit is not None:
            for host_id in decision.host_ids:
                if host_id in self._starting:
                    self._starting[host_id].limit = decision.limit
                    self.registry.preset_limit(host_id, decision.limit)
                else:
                    self.registry.set_limit(host_id, decision.limit)
        if decision.kind != "hold":
            self._log(now, pool, decision)

    def _start_host(self, pool: str, limit: int, now: float) -> None:
        spec = self.registry.action_spec(pool) or {}
        host_id = f"h-{hashlib.sha1(pool.encode()).hexdigest()[:8]}-{secrets.token_hex(3)}"
        env = {
            "WARMWHISK_MODE": "host",
            "WARMWHISK_ROUTER_URL": self.settings.host_redis_url,
            "WARMWHISK_REDIS_PREFIX": self.settings.prefix,
            "WARMWHISK_NAMESPACE": spec.get("namespace", ""),
            "WARMWHISK_HOST_ACTIONS": pool,
            "WARMWHISK_MAX_CONCURRENT": str(self.settings.host_max_concurrent),
            "WARMWHISK_HEARTBEAT_S": str(self.settings.heartbeat_s),
        }
        if self.settings.host_memory_bytes:
            env["WARMWHISK_MODEL_MEMORY_BYTES"] = str(self.settings.host_memory_bytes * 3 // 4)
        try:
            host = self.backend.start(
                HostSpec(host_id, pool, env, self.settings.host_memory_bytes, self.settings.model_dir)
            )
        except BackendError as exc:
            self._log(now, pool, Decision.hold(f"starting a host failed: {exc}"))
            return
        self.registry.preset_limit(host_id, limit)
        self._starting[host_id] = _Starting(host, limit)

    def _drain_unreachable(self, now: float, records: list[HostRecord]) -> None:
        """A host a router could not reach is drained and stopped; the policies see one host
        fewer and start a replacement if the pool still needs it."""
        for record in records:
            if record.unreachable and record.host_id not in self._draining:
                self.registry.set_limit(record.host_id, 0)
                self._draining[record.host_id] = now
                pool = record.actions[0] if record.actions else ""
                reason = f"a router could not reach host {record.host_id}"
                self._log(now, pool, Decision.remove_hosts([record.host_id], reason))

    def _finish_draining(self, now: float, records: list[HostRecord]) -> None:
        """Stop drained hosts once idle (or after a grace period), and hosts that never got warm."""
        by_id = {r.host_id: r for r in records}
        for host_id, since in list(self._draining.items()):
            record = by_id.get(host_id)
            idle = record is None or (record.slots_in_use == 0 and record.reported_in_flight == 0)
            if idle or now - since > self.settings.start_timeout_s:
                self.backend.stop(host_id)
                self.registry.remove_host(host_id)
                self._draining.pop(host_id)
                self._last_active.pop(host_id, None)
        for host_id, starting in list(self._starting.items()):
            if now - starting.host.started_at > self.settings.start_timeout_s:
                self.backend.stop(host_id)
                self.registry.remove_host(host_id)
                self._starting.pop(host_id)
                reason = f"host {host_id} did not turn warm within {self.settings.start_timeout_s:.0f} s"
                self._log(now, starting.host.pool, Decision.remove_hosts([host_id], reason))

    def _log(self, now: float, pool: str, decision: Decision) -> None:
        entry = {"t": now, "pool": pool, "kind": decision.kind, "count": decision.count,
                 "host_ids": list(decision.host_ids), "limit": decision.limit, "reason": decision.reason,
                 "by": self.holder_id}  # fmt: skip
        pipe = self.registry.redis.pipeline(transaction=False)
        pipe.lpush(self.registry.keys.decisions, json.dumps(entry))
        pipe.ltrim(self.registry.keys.decisions, 0, DECISION_LOG_LENGTH - 1)
        pipe.execute()

    # ----------------------------------------------------------------------------- reading
    def status(self) -> dict[str, Any]:
        return {
            "replica": self.holder_id,
            "leader": self.lease.holder(),
            "is_leader": self.is_leader,
            "ticks": self.ticks,
            "starting": sorted(self._starting),
            "draining": sorted(self._draining),
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
