"""Replay one workload (one pool) against scaling policies: the engine (`engine.py`) with one pool
on one node without a memory bound.

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
  cold start measured once a host turned warm) and its decisions are applied at once. The policy
  is also called the moment an activation queues while the pool has no host at all (Knative's activator, Ray's
  handle and OpenWhisk all react to a request at zero without waiting for a tick) and, for
  ``event_driven`` policies (OpenWhisk), whenever an activation queues.

Outputs per policy: activations, cold starts (hosts started), latency p50/p99 (arrival to
completion), latency-objective violations, memory (GB·s: memory_mb × host seconds alive, counted
to the end of the workload), host seconds and peak hosts. No randomness in the simulation itself:
workload generators take a seed, so a (workload, policy, config) triple always gives one result.

CLI: ``python -m warmwhisk_sim --burst`` or ``--trace DIR --function top1 --minutes 60``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from warmwhisk_scaler.policy import POLICIES, Observation, make_policy
from warmwhisk_scaler.policy.types import Decision, Policy

from .engine import EngineSettings, HostModel, PoolSpec, simulate
from .workloads import Workload

__all__ = ["HostModel", "ReplayResult", "ReplaySettings", "compare", "default_configs", "replay"]


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
    settings = settings or ReplaySettings()
    host = host or HostModel()
    spec = PoolSpec(
        workload.name,
        workload.arrivals,
        workload.durations,
        host,
        config if config is not None else p.config_type(),
    )
    engine = EngineSettings(window_s=settings.window_s, max_overrun_s=settings.max_overrun_s)
    out = simulate([spec], p, horizon_s=workload.horizon_s, settings=engine, log=log)
    ok = out.completed
    latency = out.latency[ok]
    wait = out.start[ok] - out.arrival[ok]
    n = out.arrival.size
    violations = int(np.sum(latency > settings.latency_objective_s)) + int(np.sum(~ok))
    host_s = out.container_s
    return ReplayResult(
        policy=p.name,
        workload=workload.name,
        activations=n,
        completed=int(ok.sum()),
        cold_starts=len(out.hosts),
        latency_p50_s=float(np.percentile(latency, 50)) if latency.size else math.nan,
        latency_p99_s=float(np.percentile(latency, 99)) if latency.size else math.nan,
        mean_wait_s=float(wait.mean()) if wait.size else math.nan,
        queued_pct=100.0 * float(np.sum(wait > 1e-3)) / n if n else 0.0,
        violations=violations,
        violation_pct=100.0 * violations / n if n else 0.0,
        memory_gb_s=out.memory_mb_s / 1024.0,
        host_s=host_s,
        peak_hosts=peak_hosts(out.hosts),
    )


def peak_hosts(hosts: Sequence[Any]) -> int:
    """Most hosts alive at once (a host removed at t no longer counts at t)."""
    changes = sorted(
        [(h.started_at, 1) for h in hosts]
        + [(h.removed_at, -1) for h in hosts if not math.isnan(h.removed_at)],
        key=lambda c: (c[0], c[1]),
    )
    alive = peak = 0
    for _, change in changes:
        alive += change
        peak = max(peak, alive)
    return peak


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
