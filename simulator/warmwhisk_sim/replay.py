"""Replay a workload against scaling policies in a deterministic discrete-event simulation.

The simulated pool is what the scaler manages in production, reduced to what scaling decides:

* **Hosts.** A host added at t is ``starting`` until t + ``HostModel.cold_start_s`` (container
  start + model load), then ``warm``. It holds ``HostModel.memory_mb`` from its start to its
  removal (one model copy per host, so OpenWhisk-default containers each hold one too).
* **Service.** Each activation has a run time *alone on a host* (its duration). A host runs its
  activations by processor sharing: with c in flight each progresses at ``curve(c) / c`` of its
  solo speed, where ``curve(c)`` is the host's throughput at concurrency c relative to c = 1. The
  default ``curve(c) = min(c, cores)``: on a CPU, concurrency beyond the cores only shares them
  (a run of 1 s takes max(1, c / cores) s while c stay in flight). A measured curve (e.g. with
  micro-batching) can be passed instead.
* **Routing.** An arriving activation takes a slot on the fullest warm host with in-flight below
  its limit (ties: oldest host); if none has one it waits in a FIFO queue, served as slots free.
* **Control loop.** Every ``config.tick_s`` the policy gets an ``Observation`` built by the live
  controller's own ``warmwhisk_scaler.measure`` from the same readings (rates and run-time
  percentiles over ``ReplaySettings.window_s``, mean run time of the last 256 completions, the
  host model's cold start) and its decisions are applied at once. The policy is also called the
  moment an activation queues while the pool has no host at all (Knative's activator, Ray's
  handle and OpenWhisk all react to a request at zero without waiting for a tick) and, for
  ``event_driven`` policies (OpenWhisk), whenever an activation queues.

Outputs per policy: activations, cold starts (hosts started), latency p50/p99 (arrival to
completion), latency-objective violations, memory (GB·s: memory_mb × host seconds alive, counted
to the end of the workload), host seconds and peak hosts. No randomness in the simulation itself:
workload generators take a seed, so a (workload, policy, config) triple always gives one result.

CLI: ``python -m warmwhisk_sim --burst`` or ``--trace DIR --function top1 --minutes 60``.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from warmwhisk_scaler.measure import PoolWindow, measure
from warmwhisk_scaler.policy import POLICIES, HostView, Observation, make_policy
from warmwhisk_scaler.policy.types import Decision, Policy

from .workloads import Workload


@dataclass(frozen=True)
class HostModel:
    """How one simulated model host behaves."""

    # Time from "add a host" to warm (s): container start plus model load.
    cold_start_s: float = 2.0
    # Memory a host holds while alive, model included (MB).
    memory_mb: float = 1024.0
    # CPU cores of a host; with the default curve, throughput grows with concurrency up to it.
    cores: float = 2.0
    # Relative throughput at concurrency 1, 2, 3, ... (first entry 1.0); flat beyond the last.
    # Empty: min(c, cores).
    throughput_curve: tuple[float, ...] = ()

    def speed(self, concurrency: int) -> float:
        """Progress rate of each of ``concurrency`` activations, relative to running alone."""
        c = max(1, concurrency)
        if self.throughput_curve:
            curve = self.throughput_curve
            return curve[min(c, len(curve)) - 1] / c
        return min(float(c), self.cores) / c


@dataclass(frozen=True)
class ReplaySettings:
    """The measurement side of the simulated control loop."""

    # Objective for an activation's latency, arrival to completion (s); counts violations.
    latency_objective_s: float = 1.0
    # Window of the observed arrival/completion rates and run-time percentiles (s).
    window_s: float = 10.0
    # How long after the workload's horizon the replay may run to finish queued work (s).
    max_overrun_s: float = 3600.0


@dataclass(frozen=True)
class ReplayResult:
    policy: str
    workload: str
    activations: int
    completed: int
    cold_starts: int
    latency_p50_s: float
    latency_p99_s: float
    mean_wait_s: float
    # Activations that waited in the queue (> 1 ms) before a slot.
    queued_pct: float
    violations: int
    violation_pct: float
    memory_gb_s: float
    host_s: float
    peak_hosts: int


# --- the simulation ------------------------------------------------------------------------------

_ARRIVE, _READY, _DONE, _TICK = 0, 1, 2, 3
_SPEED_TABLE = 257  # HostModel.speed(c) precomputed for c below this


@dataclass
class _Host:
    idx: int
    host_id: str
    state: str
    limit: int
    started_at: float
    last_active_at: float
    # Solo-run seconds of work each in-flight activation has received (processor sharing gives
    # every one the same), and when that was last brought up to date.
    work: float = 0.0
    work_at: float = 0.0
    # (work at which the activation finishes, activation index), a heap.
    jobs: list[tuple[float, int]] = field(default_factory=list)
    version: int = 0
    removed_at: float | None = None


class _Simulation:
    def __init__(
        self,
        workload: Workload,
        policy: Policy[Any, Any],
        config: Any,
        host: HostModel,
        settings: ReplaySettings,
        log: list[tuple[Observation, list[Decision]]] | None = None,
    ) -> None:
        self.log = log
        self.w, self.policy, self.config, self.model, self.settings = workload, policy, config, host, settings
        self.state = policy.initial_state()
        n = len(workload.arrivals)
        self.arrival = list(workload.arrivals)
        self.duration = list(workload.durations)
        self.start = [math.nan] * n
        self.end = [math.nan] * n
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.hosts: list[_Host] = []
        self.alive: dict[int, _Host] = {}
        self.by_id: dict[str, _Host] = {}
        self.free: list[set[int]] = []  # free[c]: warm hosts with c in flight and a free slot
        self.queue: deque[int] = deque()
        self.done = 0
        self.acquired = 0  # activations that took a slot, as the registry counts them
        self.peak = 0
        # What the live controller measures, measured the same way (warmwhisk_scaler.measure).
        self.window = PoolWindow(settings.window_s)
        self.new_runs: list[float] = []  # run times completed since the policy last looked
        self.speeds = [host.speed(c) for c in range(_SPEED_TABLE)]

    # events
    def push(self, t: float, kind: int, a: int = 0, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, a, b))

    # slot index
    def unindex(self, h: _Host) -> None:
        c = len(h.jobs)
        if c < len(self.free):
            self.free[c].discard(h.idx)

    def index(self, h: _Host) -> None:
        c = len(h.jobs)
        if h.state == "warm" and h.removed_at is None and c < h.limit:
            while len(self.free) <= c:
                self.free.append(set())
            self.free[c].add(h.idx)

    def pick(self) -> _Host | None:
        for c in range(len(self.free) - 1, -1, -1):
            if self.free[c]:
                return self.hosts[min(self.free[c])]
        return None

    # processor sharing
    def speed(self, concurrency: int) -> float:
        return self.speeds[concurrency] if concurrency < _SPEED_TABLE else self.model.speed(concurrency)

    def advance(self, h: _Host, now: float) -> None:
        if h.jobs:
            h.work += (now - h.work_at) * self.speed(len(h.jobs))
        h.work_at = now

    def schedule(self, h: _Host, now: float) -> None:
        h.version += 1
        if h.jobs:
            dt = (h.jobs[0][0] - h.work) / self.speed(len(h.jobs))
            self.push(now + max(0.0, dt), _DONE, h.idx, h.version)

    def dispatch(self, now: float) -> None:
        if not self.queue:
            return
        touched: dict[int, _Host] = {}
        while self.queue:
            h = self.pick()
            if h is None:
                break
            job = self.queue.popleft()
            self.unindex(h)
            self.advance(h, now)
            heapq.heappush(h.jobs, (h.work + self.duration[job], job))
            self.acquired += 1
            h.last_active_at = now
            self.start[job] = now
            self.index(h)
            touched[h.idx] = h
        for h in touched.values():
            self.schedule(h, now)

    def complete(self, h: _Host, now: float) -> None:
        self.unindex(h)
        self.advance(h, now)
        eps = 1e-9 * max(1.0, h.work)
        while h.jobs and h.jobs[0][0] <= h.work + eps:
            _, job = heapq.heappop(h.jobs)
            self.end[job] = now
            self.done += 1
            self.new_runs.append(now - self.start[job])
        h.last_active_at = now
        if h.state == "draining" and not h.jobs:
            self.remove(h, now)
        else:
            self.index(h)
            self.schedule(h, now)

    # hosts
    def add_host(self, limit: int, now: float) -> None:
        idx = len(self.hosts)
        h = _Host(idx, f"h{idx}", "starting", max(1, limit), now, now, work_at=now)
        self.hosts.append(h)
        self.alive[idx] = h
        self.by_id[h.host_id] = h
        self.peak = max(self.peak, len(self.alive))
        self.push(now + self.model.cold_start_s, _READY, idx)

    def remove(self, h: _Host, now: float) -> None:
        self.unindex(h)
        h.removed_at = now
        self.alive.pop(h.idx, None)

    def apply(self, decisions: Iterable[Decision], now: float) -> None:
        for d in decisions:
            if d.kind == "add_hosts":
                for _ in range(d.count):
                    self.add_host(d.limit or 1, now)
            elif d.kind == "remove_hosts":
                for host_id in d.host_ids:
                    h = self.by_id.get(host_id)
                    if h is None or h.removed_at is not None or h.state == "draining":
                        continue
                    if h.jobs:
                        self.unindex(h)
                        h.state = "draining"
                    else:
                        self.remove(h, now)
            elif d.kind == "set_limit" and d.limit is not None:
                targets = [self.by_id[i] for i in d.host_ids if i in self.by_id] or list(self.alive.values())
                for h in targets:
                    if h.removed_at is None:
                        self.unindex(h)
                        h.limit = max(1, d.limit)
                        self.index(h)
        self.dispatch(now)

    # the control loop
    def observe(self, now: float) -> Observation:
        """The controller's reading of the pool, then its measurement (the same code)."""
        self.window.record(now, self.acquired, self.done, len(self.queue), self.new_runs)
        self.new_runs = []
        hosts = (
            HostView(h.host_id, h.state, len(h.jobs), h.limit, h.started_at, h.last_active_at)  # type: ignore[arg-type]
            for h in self.alive.values()
        )
        return measure(self.w.name, now, hosts, len(self.queue), self.window, self.model.cold_start_s)

    def decide(self, now: float) -> None:
        observation = self.observe(now)
        decisions, self.state = self.policy.decide(observation, self.state, self.config)
        if self.log is not None and any(d.kind != "hold" for d in decisions):
            self.log.append((observation, decisions))
        self.apply(decisions, now)

    def run(self) -> tuple[float, int]:
        for i, t in enumerate(self.arrival):
            self.push(t, _ARRIVE, i)
        tick = float(self.config.tick_s)
        self.push(0.0, _TICK)
        stop_at = self.w.horizon_s + self.settings.max_overrun_s
        n = len(self.arrival)
        ticks = 0
        while self.events:
            now, _, kind, a, b = heapq.heappop(self.events)
            if kind == _ARRIVE:
                self.queue.append(a)
                self.dispatch(now)
                if self.queue and (self.policy.event_driven or not self.alive):
                    self.decide(now)
            elif kind == _READY:
                h = self.hosts[a]
                if h.removed_at is None and h.state == "starting":
                    h.state = "warm"
                    h.last_active_at = now
                    h.work_at = now
                    self.index(h)
                    self.dispatch(now)
            elif kind == _DONE:
                h = self.hosts[a]
                if b == h.version and h.removed_at is None:
                    self.complete(h, now)
                    self.dispatch(now)
            else:
                ticks += 1
                self.decide(now)
                finished = self.done == n and now >= self.w.horizon_s
                if not finished and now + tick <= stop_at:
                    self.push(now + tick, _TICK)
        end = max([self.w.horizon_s, *(e for e in self.end if not math.isnan(e))])
        return end, ticks

    def result(self, end: float) -> ReplayResult:
        ends = np.array(self.end, dtype=float)
        ok = ~np.isnan(ends)
        arrivals = np.array(self.arrival, dtype=float)
        latency = ends[ok] - arrivals[ok]
        wait = np.array(self.start, dtype=float)[ok] - arrivals[ok]
        objective = self.settings.latency_objective_s
        violations = int(np.sum(latency > objective)) + int(np.sum(~ok))
        host_s = sum(
            (min(h.removed_at, end) if h.removed_at is not None else end) - h.started_at
            for h in self.hosts
            if h.started_at <= end
        )
        n = len(self.arrival)
        return ReplayResult(
            policy=self.policy.name,
            workload=self.w.name,
            activations=n,
            completed=int(ok.sum()),
            cold_starts=len(self.hosts),
            latency_p50_s=float(np.percentile(latency, 50)) if latency.size else math.nan,
            latency_p99_s=float(np.percentile(latency, 99)) if latency.size else math.nan,
            mean_wait_s=float(wait.mean()) if wait.size else math.nan,
            queued_pct=100.0 * float(np.sum(wait > 1e-3)) / n if n else 0.0,
            violations=violations,
            violation_pct=100.0 * violations / n if n else 0.0,
            memory_gb_s=host_s * self.model.memory_mb / 1024.0,
            host_s=host_s,
            peak_hosts=self.peak,
        )


def replay(
    workload: Workload,
    policy: str | Policy[Any, Any],
    config: Any = None,
    *,
    host: HostModel | None = None,
    settings: ReplaySettings | None = None,
    log: list[tuple[Observation, list[Decision]]] | None = None,
) -> ReplayResult:
    """Replay ``workload`` against one policy (a name from ``POLICIES`` or an instance) with its
    ``config`` (default: the policy's defaults) and return the outcome. With ``log``, every tick
    that decided something other than hold is appended to it as (observation, decisions)."""
    p = make_policy(policy) if isinstance(policy, str) else policy
    sim = _Simulation(
        workload,
        p,
        config if config is not None else p.config_type(),
        host or HostModel(),
        settings or ReplaySettings(),
        log,
    )
    end, _ = sim.run()
    return sim.result(end)


def default_configs(objective_s: float) -> dict[str, Any]:
    """Each policy's defaults; the hybrid one aims at the replay's latency objective."""
    configs: dict[str, Any] = {name: cls.config_type() for name, cls in POLICIES.items()}
    configs["hybrid"] = replace(configs["hybrid"], latency_objective_s=objective_s)
    return configs


def compare(
    workload: Workload,
    *,
    host: HostModel | None = None,
    settings: ReplaySettings | None = None,
    configs: dict[str, Any] | None = None,
    policies: Sequence[str] = tuple(POLICIES),
) -> list[ReplayResult]:
    """Replay ``workload`` against several policies, same host model and settings for all."""
    settings = settings or ReplaySettings()
    configs = configs or default_configs(settings.latency_objective_s)
    return [replay(workload, name, configs.get(name), host=host, settings=settings) for name in policies]
