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
* **Control loop.** Every ``config.tick_s`` the policy gets an ``Observation`` (rates and run-time
  percentiles over ``ReplaySettings.window_s``, mean run time of the last 256 completions, the
  host model's cold start) and its decisions are applied at once. The policy is also called the
  moment an activation queues while the pool has no host at all (Knative's activator, Ray's
  handle and OpenWhisk all react to a request at zero without waiting for a tick) and, for
  ``event_driven`` policies (OpenWhisk), whenever an activation queues.

Outputs per policy: activations, cold starts (hosts started), latency p50/p99 (arrival to
completion), latency-objective violations, memory (GB·s: memory_mb × host seconds alive, counted
to the end of the workload), host seconds and peak hosts. No randomness in the simulation itself:
workload generators take a seed, so a (workload, policy, config) triple always gives one result.

CLI: ``python -m warmwhisk_scaler.replay --burst`` or ``--trace DIR --function top1 --minutes 60``.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .policy import POLICIES, HostView, Observation, make_policy
from .policy.types import Decision, Policy

# --- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Arrivals (s, ascending) and each activation's run time alone on a host (s)."""

    name: str
    arrivals: tuple[float, ...]
    durations: tuple[float, ...]
    # End of the workload's time span (s); memory is counted at least until then.
    horizon_s: float
    # Memory of one host suggested by the source (MB), e.g. the trace's allocated memory.
    memory_mb: float | None = None

    def __post_init__(self) -> None:
        if len(self.arrivals) != len(self.durations):
            raise ValueError("arrivals and durations differ in length")
        if any(b < a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)):
            raise ValueError("arrivals must be sorted")
        if any(d <= 0 for d in self.durations):
            raise ValueError("durations must be > 0")


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
_RECENT_DURATIONS = 256  # like the registry's P:durations:<action> list
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
        self.peak = 0
        self.recent_arrivals: deque[float] = deque()
        self.recent_runs: deque[tuple[float, float]] = deque()
        self.last_runs: deque[float] = deque(maxlen=_RECENT_DURATIONS)
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
            run = now - self.start[job]
            self.recent_runs.append((now, run))
            self.last_runs.append(run)
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
        window = self.settings.window_s
        while self.recent_arrivals and self.recent_arrivals[0] <= now - window:
            self.recent_arrivals.popleft()
        while self.recent_runs and self.recent_runs[0][0] <= now - window:
            self.recent_runs.popleft()
        runs = sorted(r for _, r in self.recent_runs)
        hosts = tuple(
            HostView(h.host_id, h.state, len(h.jobs), h.limit, h.started_at, h.last_active_at)  # type: ignore[arg-type]
            for h in self.alive.values()
        )
        return Observation(
            pool=self.w.name,
            now=now,
            hosts=hosts,
            queued=len(self.queue),
            arrivals_per_s=len(self.recent_arrivals) / window,
            completions_per_s=len(runs) / window,
            latency_p50_s=_nearest_rank(runs, 0.50),
            latency_p99_s=_nearest_rank(runs, 0.99),
            service_time_s=sum(self.last_runs) / len(self.last_runs) if self.last_runs else None,
            cold_start_s=self.model.cold_start_s,
        )

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
                self.recent_arrivals.append(now)
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


def _nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


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


# --- workloads -----------------------------------------------------------------------------------


def _poisson_times(
    rng: np.random.Generator, rate_fn: Any, t0: float, t1: float, rate_max: float
) -> np.ndarray:
    """A Poisson process of rate ``rate_fn(t)`` on [t0, t1), by thinning one of rate ``rate_max``."""
    if rate_max <= 0 or t1 <= t0:
        return np.empty(0)
    n = rng.poisson(rate_max * (t1 - t0))
    t = np.sort(rng.uniform(t0, t1, n))
    keep = rng.uniform(0, rate_max, n) < rate_fn(t)
    return t[keep]


def burst_and_ramp(
    seed: int = 0,
    *,
    base_rate: float = 2.0,
    burst_at_s: float = 120.0,
    burst_size: int = 120,
    ramp_start_s: float = 240.0,
    ramp_end_s: float = 540.0,
    peak_rate: float = 30.0,
    hold_end_s: float = 660.0,
    tail_rate: float = 0.5,
    horizon_s: float = 1200.0,
    mean_duration_s: float = 0.1,
    duration_sigma: float = 0.3,
) -> Workload:
    """A synthetic inference workload: Poisson at ``base_rate``/s; ``burst_size`` activations
    within one second at ``burst_at_s``; a linear ramp from ``base_rate`` to ``peak_rate``/s
    between ``ramp_start_s`` and ``ramp_end_s``; ``peak_rate`` held until ``hold_end_s``; then
    ``tail_rate``/s until ``horizon_s``. Durations are log-normal with mean ``mean_duration_s``
    and log-space sigma ``duration_sigma``. Deterministic for a seed."""
    rng = np.random.default_rng(seed)

    def rate(t: np.ndarray) -> np.ndarray:
        ramp = base_rate + (peak_rate - base_rate) * (t - ramp_start_s) / (ramp_end_s - ramp_start_s)
        return np.select(
            [t < ramp_start_s, t < ramp_end_s, t < hold_end_s],
            [np.full_like(t, base_rate), ramp, np.full_like(t, peak_rate)],
            default=tail_rate,
        )

    background = _poisson_times(rng, rate, 0.0, horizon_s, max(base_rate, peak_rate, tail_rate))
    burst = burst_at_s + np.sort(rng.uniform(0.0, 1.0, burst_size))
    arrivals = np.sort(np.concatenate([background, burst]))
    mu = math.log(mean_duration_s) - duration_sigma**2 / 2
    durations = rng.lognormal(mu, duration_sigma, arrivals.size)
    return Workload(
        f"burst_and_ramp(seed={seed})", tuple(arrivals.tolist()), tuple(durations.tolist()), horizon_s
    )


@dataclass(frozen=True)
class TraceFunction:
    """One function of the Azure Functions 2019 trace sample."""

    hash_function: str
    trigger: str
    # Invocations per minute, from the first minute of the sample.
    per_minute: tuple[int, ...]
    # Duration percentiles (s) at 0, 1, 25, 50, 75, 99, 100 % and the average (s).
    duration_percentiles: tuple[float, ...]
    duration_average_s: float
    # Allocated memory of the function's app, average (MB).
    memory_mb: float

    @property
    def total(self) -> int:
        return sum(self.per_minute)


_DURATION_QUANTILES = (0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0)
_DURATION_COLUMNS = tuple(f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100))


def read_azure_trace(trace_dir: str | Path) -> list[TraceFunction]:
    """The functions of the trace sample (``azure2019_*.csv`` in ``trace_dir``), busiest first."""
    d = Path(trace_dir)
    with open(d / "azure2019_durations.csv", newline="") as f:
        durations = {r["HashFunction"]: r for r in csv.DictReader(f)}
    with open(d / "azure2019_memory.csv", newline="") as f:
        memory = {r["HashFunction"]: r for r in csv.DictReader(f)}
    functions = []
    with open(d / "azure2019_invocations.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        minute_cols = [i for i, name in enumerate(header) if name.isdigit()]
        fn_col, trigger_col = header.index("HashFunction"), header.index("Trigger")
        for row in reader:
            key = row[fn_col]
            dur, mem = durations.get(key), memory.get(key)
            if dur is None:
                continue
            functions.append(
                TraceFunction(
                    hash_function=key,
                    trigger=row[trigger_col],
                    per_minute=tuple(int(row[i]) for i in minute_cols),
                    duration_percentiles=tuple(float(dur[c]) / 1000.0 for c in _DURATION_COLUMNS),
                    duration_average_s=float(dur["Average"]) / 1000.0,
                    memory_mb=float(mem["AverageAllocatedMb"]) if mem else 128.0,
                )
            )
    functions.sort(key=lambda fn: (-fn.total, fn.hash_function))
    return functions


def find_function(functions: Sequence[TraceFunction], selector: str) -> TraceFunction:
    """``topN`` (the N-th busiest, from 1) or a prefix of the function hash."""
    if selector.startswith("top") and selector[3:].isdigit():
        rank = int(selector[3:])
        if not 1 <= rank <= len(functions):
            raise KeyError(f"{selector}: the trace has {len(functions)} functions")
        return functions[rank - 1]
    matches = [fn for fn in functions if fn.hash_function.startswith(selector)]
    if len(matches) != 1:
        raise KeyError(f"{selector!r} matches {len(matches)} functions (use topN or a longer hash prefix)")
    return matches[0]


def trace_workload(
    functions: Sequence[TraceFunction],
    *,
    start_minute: int = 0,
    minutes: int = 60,
    seed: int = 0,
    min_duration_s: float = 0.001,
) -> Workload:
    """Arrivals of one or several trace functions (merged into one pool: one model serving them).

    Within each minute, a function's n invocations are spread as n independent uniform times, i.e.
    a Poisson process conditioned on the minute's count. Durations are drawn from the function's
    published percentiles (0, 1, 25, 50, 75, 99, 100 %) by interpolating the inverse CDF linearly
    in log(duration), at least ``min_duration_s``: durations are roughly log-normal, and linear
    interpolation across the 99–100 % span would inflate the mean (top1: 1.5 s vs 0.93 s). Seeded.
    The host memory is the sum of the functions' allocated memory (one host holds them all)."""
    rng = np.random.default_rng(seed)
    times, runs = [], []
    for fn in functions:
        counts = np.asarray(fn.per_minute[start_minute : start_minute + minutes], dtype=int)
        minute_of = np.repeat(np.arange(counts.size), counts)
        t = (minute_of + rng.uniform(0.0, 1.0, minute_of.size)) * 60.0
        u = rng.uniform(0.0, 1.0, t.size)
        log_p = np.log(np.maximum(min_duration_s, np.asarray(fn.duration_percentiles)))
        d = np.exp(np.interp(u, _DURATION_QUANTILES, log_p))
        times.append(t)
        runs.append(d)
    t_all = np.concatenate(times) if times else np.empty(0)
    d_all = np.concatenate(runs) if runs else np.empty(0)
    order = np.argsort(t_all, kind="stable")
    name = "+".join(fn.hash_function[:8] for fn in functions) + f"[{start_minute}:{start_minute + minutes}]"
    return Workload(
        name,
        tuple(t_all[order].tolist()),
        tuple(d_all[order].tolist()),
        minutes * 60.0,
        memory_mb=sum(fn.memory_mb for fn in functions),
    )


# --- CLI -----------------------------------------------------------------------------------------

_COLUMNS = (  # (title, width, format spec, ReplayResult field)
    ("policy", 9, "", "policy"),
    ("acts", 7, "d", "activations"),
    ("cold", 5, "d", "cold_starts"),
    ("peak", 5, "d", "peak_hosts"),
    ("p50 s", 7, ".3f", "latency_p50_s"),
    ("p99 s", 7, ".3f", "latency_p99_s"),
    ("wait s", 7, ".3f", "mean_wait_s"),
    ("queued%", 7, ".2f", "queued_pct"),
    ("viol", 6, "d", "violations"),
    ("viol%", 6, ".2f", "violation_pct"),
    ("mem GB·s", 10, ".1f", "memory_gb_s"),
    ("host·s", 9, ".0f", "host_s"),
)


def format_table(results: Sequence[ReplayResult]) -> str:
    """The results as a fixed-width table, one policy per row."""
    lines = [" ".join(f"{title:<{w}}" if not spec else f"{title:>{w}}" for title, w, spec, _ in _COLUMNS)]
    for r in results:
        values = asdict(r)
        lines.append(
            " ".join(
                f"{format(values[key], spec):<{w}}" if not spec else f"{format(values[key], spec):>{w}}"
                for _, w, spec, key in _COLUMNS
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warmwhisk_scaler.replay",
        description="Replay a workload against the scaling policies and compare them.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--burst", action="store_true", help="the synthetic burst_and_ramp workload")
    src.add_argument("--trace", type=Path, help="folder of the Azure Functions 2019 sample (azure2019_*.csv)")
    src.add_argument("--list", type=Path, metavar="TRACE", help="list the trace's functions, busiest first")
    parser.add_argument(
        "--function", action="append", default=[], help="topN or a hash prefix; repeat to merge functions"
    )
    parser.add_argument("--start-minute", type=int, default=0, help="first minute of the sample to replay")
    parser.add_argument("--minutes", type=int, default=60, help="minutes of the trace to replay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold-start-s", type=float, default=2.0, help="host cold start (s)")
    parser.add_argument("--cores", type=float, default=2.0, help="cores per host")
    parser.add_argument("--memory-mb", type=float, help="host memory (MB); default the trace's, or 1024")
    parser.add_argument(
        "--objective-s", type=float, help="latency objective (s); default max(0.5, 3 × mean run time)"
    )
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policy names")
    args = parser.parse_args(argv)

    if args.list:
        for rank, fn in enumerate(read_azure_trace(args.list), start=1):
            print(
                f"top{rank:<3} {fn.hash_function[:12]} {fn.trigger:<13} {fn.total:>7} invocations, "
                f"peak {max(fn.per_minute):>4}/min, mean {fn.duration_average_s:.3f} s, {fn.memory_mb:.0f} MB"
            )
        return 0
    if args.burst:
        workload = burst_and_ramp(args.seed)
    else:
        functions = read_azure_trace(args.trace)
        chosen = [find_function(functions, s) for s in args.function or ["top1"]]
        workload = trace_workload(
            chosen, start_minute=args.start_minute, minutes=args.minutes, seed=args.seed
        )
    memory = args.memory_mb or workload.memory_mb or 1024.0
    host = HostModel(cold_start_s=args.cold_start_s, memory_mb=memory, cores=args.cores)
    mean_run = float(np.mean(workload.durations)) if workload.durations else 0.0
    objective = args.objective_s or max(0.5, 3.0 * mean_run)
    settings = ReplaySettings(latency_objective_s=objective)
    results = compare(workload, host=host, settings=settings, policies=args.policies.split(","))
    print(
        f"{workload.name}: {len(workload.arrivals)} activations over {workload.horizon_s:.0f} s, "
        f"mean run {mean_run:.3f} s; host cold start {host.cold_start_s:g} s, {host.cores:g} cores, "
        f"{host.memory_mb:g} MB; objective {objective:.2f} s"
    )
    print(format_table(results))
    summary = {
        "workload": workload.name,
        "objective_s": objective,
        "host": asdict(host),
        "results": {
            r.policy: {k: v for k, v in asdict(r).items() if k not in ("policy", "workload")} for r in results
        },
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
