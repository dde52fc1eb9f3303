"""The figures of one simulated run of a trace, as the evaluation reports them.

* **cold starts**: activations that waited while a host of their pool was starting, or for a
  routed container (`SimOutput.cold`); **model loads**: hosts started (each loads its model once).
  Both per 1,000 invocations, overall and per popularity tercile.
* **latency**: arrival → answer of completed activations, p50 / p99 / p99.9; the share of all
  invocations over their objective (`mapping.objective_s`; a dropped one counts as over).
* **containers**: hosts started plus routed containers started; container-seconds of both.
* **memory**: GB·s (MB·s / 1000, MB = 10⁶ bytes) of hosts, shared weights, routed containers;
  the peak at any instant.
* **dropped / timed out**: activations dropped after waiting their timeout, or answered later
  than it; a configuration is valid only when both are 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cluster import TraceRun
from .engine import SimOutput
from .mapping import TERCILES, objective_s

# Latency quantiles kept for the CDF plots: dense in the tail.
CDF_LEVELS = tuple(
    float(q)
    for q in np.unique(np.concatenate([np.linspace(0.0, 0.9, 46), 1 - np.logspace(-1, -4, 31), [1.0]])).round(
        6
    )
)
TOP_FUNCTIONS = 3  # functions whose hosts over time are kept for the plots


def per_1000(count: float, invocations: int) -> float:
    return 1000.0 * count / invocations if invocations else 0.0


def run_metrics(run: TraceRun, out: SimOutput) -> dict[str, Any]:
    """Every figure of one run (plain numbers and lists: JSON as it is)."""
    n = out.arrival.size
    done = out.completed
    latency = out.latency
    cold = out.cold()
    timeouts = np.array([a.timeout_s for a in run.actions])[out.pool_of]
    timed_out = int(np.sum(done & (latency > timeouts)))
    dropped = int(np.sum(~done))
    over = ~done | (latency > objective_s(out.duration, run.rules))
    loads = np.bincount([h.pool for h in out.hosts], minlength=len(run.actions))
    cold_per_pool = np.bincount(out.pool_of[cold], minlength=len(run.actions))
    calls_per_pool = np.bincount(out.pool_of, minlength=len(run.actions))
    tiers = {}
    for tercile in TERCILES:
        pools = [i for i, a in enumerate(run.actions) if a.tercile == tercile]
        calls = int(calls_per_pool[pools].sum())
        c, m = int(cold_per_pool[pools].sum()), int(loads[pools].sum())
        tiers[tercile] = {
            "functions": len(pools),
            "invocations": calls,
            "cold_starts": c,
            "model_loads": m,
            "cold_per_1000": per_1000(c, calls),
            "loads_per_1000": per_1000(m, calls),
            "cold_plus_loads_per_1000": per_1000(c + m, calls),
        }
    lat = latency[done]
    p50, p99, p999 = (float(np.percentile(lat, q)) if lat.size else float("nan") for q in (50, 99, 99.9))
    cold_n, loads_n = int(cold.sum()), len(out.hosts)
    return {
        "invocations": int(n),
        "completed": int(done.sum()),
        "dropped": dropped,
        "timed_out": timed_out,
        "dropped_or_timed_out": dropped + timed_out,
        "cold_starts": cold_n,
        "model_loads": loads_n,
        "routed_starts": out.routed_starts,
        "cold_per_1000": per_1000(cold_n, n),
        "loads_per_1000": per_1000(loads_n, n),
        "cold_plus_loads_per_1000": per_1000(cold_n + loads_n, n),
        "terciles": tiers,
        "p50_s": p50,
        "p99_s": p99,
        "p999_s": p999,
        "over_objective_pct": 100.0 * float(over.sum()) / n if n else 0.0,
        "containers": loads_n + out.routed_starts,
        "container_s": out.container_s,
        "memory_gb_s": out.memory_mb_s / 1000.0,
        "peak_memory_gb": out.peak_memory_mb / 1000.0,
        "evictions": out.evictions,
        "refused_starts": out.refused_starts,
        "ticks": out.ticks,
        "cdf": {
            "levels": list(CDF_LEVELS),
            "latency_s": np.quantile(lat, CDF_LEVELS).tolist() if lat.size else [],
        },
        "timeline": timeline(run, out),
    }


def timeline(run: TraceRun, out: SimOutput) -> dict[str, Any]:
    """Memory and hosts over time, and the hosts of the busiest functions."""
    top = [i for i, a in sorted(enumerate(run.actions), key=lambda x: x[1].rank)][:TOP_FUNCTIONS]
    return {
        "t_s": [t for t, *_ in out.timeline],
        "memory_gb": [m / 1000.0 for _, m, _, _ in out.timeline],
        "hosts": [h for _, _, h, _ in out.timeline],
        "routed": [r for *_, r in out.timeline],
        "top": {run.actions[i].name: [row[i] for row in out.pool_hosts] for i in top},
    }
