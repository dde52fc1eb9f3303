"""What a burst run recorded, turned into figures (containers, cold starts, latency, memory), and
the table of both policies side by side."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lib.report import med, pct, rnd, table
from scaler.config import SLOW_S, WAIT_POLL_S

if TYPE_CHECKING:
    from scaler.burst import CountingBackend, Observed, Workload


@dataclass(frozen=True)
class Run:
    policy: str
    work: Workload
    backend: CountingBackend
    seen: Observed
    t_end: float
    scaler_cold_start_s: float | None
    decisions: list[dict[str, Any]]  # newest first


def memory_seconds(samples: list[tuple[float, int, int, int, int]], t_end: float, until: float) -> float:
    """PSS integrated over time by the rectangle rule (each sample holds until the next, or the end)."""
    total = 0.0
    for i, (t, pss, *_) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else t_end
        total += pss * max(0.0, min(nxt, until) - t)
    return total


def cold_starts(run: Run) -> tuple[list[float], int]:
    """(start -> warm seconds of each host, cold starts): a cold start is an activation that found
    no free slot and waited while a host of the pool was starting (started before its wait ended,
    not warm before its wait began)."""
    seen = run.seen
    starts = {h: t - seen.wall0 for h, t in run.backend.started.items()}
    warmups = [seen.warm_at[h] - starts[h] for h in starts if h in seen.warm_at]
    starting = [(starts[h], seen.warm_at.get(h, math.inf)) for h in starts]
    return warmups, waits_on_starting_hosts(seen.waits.values(), starting)


def waits_on_starting_hosts(waits: Iterable[list[float]], starting: Iterable[tuple[float, float]]) -> int:
    """How many waits (first and last seen, s) overlapped a host's start (started, turned warm):
    the host started before the wait ended (within a poll) and was not warm before it began."""
    windows = list(starting)
    return sum(1 for w in waits if any(s < w[1] + WAIT_POLL_S and up > w[0] for s, up in windows))


def latencies(run: Run) -> dict[str, Any]:
    results = run.seen.results
    every = [r[2] for r in results]
    ok = [r[2] for r in results if r[3]]
    by_phase = {p: [r[2] for r in results if r[0] == p and r[3]] for p in ("burst", "ramp")}

    def ms(values: list[float], q: float | None) -> float | None:
        if not values:
            return None
        return rnd(1000 * (max(values) if q is None else pct(values, q)), 1)

    return {
        "slow_activations": sum(1 for x in every if x >= SLOW_S),
        "activations": len(results),
        "errors": sum(1 for r in results if not r[3]),
        "error_examples": run.seen.error_examples,
        "p50_ms": ms(ok, 50),
        "p99_ms": ms(ok, 99),
        "burst_p50_ms": ms(by_phase["burst"], 50),
        "burst_max_ms": ms(by_phase["burst"], None),
        "ramp_p50_ms": ms(by_phase["ramp"], 50),
        "ramp_p99_ms": ms(by_phase["ramp"], 99),
        "max_latency_ms": ms(every, None),
    }


def analyse(run: Run, host_memory_gib: int) -> dict[str, Any]:
    seen, work, samples = run.seen, run.work, run.seen.samples
    warmups, cold = cold_starts(run)
    r0, r1, duration = work.ramp
    return {
        "policy": run.policy,
        "containers_created": len(run.backend.started),
        "cold_starts": cold,
        "waited_for_a_slot": len(seen.waits),
        **latencies(run),
        "peak_memory_mb": rnd(max((s[1] for s in samples), default=0) / 1e6, 1),
        "memory_gb_s": rnd(memory_seconds(samples, run.t_end, run.t_end) / 1e9, 2),
        "memory_gb_s_first_ramp_window": rnd(memory_seconds(samples, run.t_end, duration) / 1e9, 2),
        "peak_containers": max((s[2] for s in samples), default=0),
        "host_start_to_warm_s_median": rnd(med(warmups), 2),
        "host_start_times_s": sorted(rnd(t - seen.wall0, 2) for t in run.backend.started.values()),
        "scaler_cold_start_estimate_s": rnd(run.scaler_cold_start_s, 2),
        "decisions": [
            {
                "t": rnd(d["t"] - seen.wall0, 2),
                "kind": d["kind"],
                "count": d["count"],
                "hosts": len(d["host_ids"]),
                "limit": d["limit"],
                "reason": d["reason"],
            }
            for d in reversed(run.decisions)
        ],
        "run_seconds": rnd(run.t_end, 1),
        "memory_samples": len(samples),
        "max_slots_in_use_on_one_host": max((s[4] for s in samples), default=0),
        # [t s, containers, warm hosts, PSS MB, most slots in use on one host]
        "timeline": [[rnd(t, 1), c, w, rnd(p / 1e6, 0), b] for t, p, c, w, b in samples],
        "workload": {
            "burst": work.burst,
            "ramp_req_per_s": [r0, r1],
            "ramp_seconds": duration,
            "ramp_arrivals": len(work.schedule()) - work.burst,
            "action": work.action,
            "value": work.value,
        },
        "caps": {"max_hosts": work.max_hosts, "host_memory_gib": host_memory_gib},
    }


ROWS = [
    ("containers created", "containers_created"),
    ("cold starts", "cold_starts"),
    ("waited for a slot", "waited_for_a_slot"),
    (f"slow (>= {SLOW_S:g} s)", "slow_activations"),
    ("activations", "activations"),
    ("errors", "errors"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("burst p50 ms", "burst_p50_ms"),
    ("burst max ms", "burst_max_ms"),
    ("ramp p50 ms", "ramp_p50_ms"),
    ("ramp p99 ms", "ramp_p99_ms"),
    ("peak memory MB (PSS)", "peak_memory_mb"),
    ("memory GB*s (to the last answer)", "memory_gb_s"),
    ("memory GB*s (first ramp-length window)", "memory_gb_s_first_ramp_window"),
    ("host start -> warm s (median)", "host_start_to_warm_s_median"),
    ("run s", "run_seconds"),
]


def burst_table(out: dict[str, Any]) -> None:
    h, o = out["hybrid"], out["openwhisk"]

    def ratio(a: Any, b: Any) -> str:
        return f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"

    w = h["workload"]
    table(
        "4. Burst + ramp on real containers: hybrid vs OpenWhisk default",
        ["metric", "hybrid", "openwhisk", "hybrid/ow"],
        [[label, h[k], o[k], ratio(h[k], o[k])] for label, k in ROWS],
        [
            f"workload: {w['burst']} concurrent at t=0 + ramp {w['ramp_req_per_s'][0]:g}->"
            f"{w['ramp_req_per_s'][1]:g} req/s over {w['ramp_seconds']:g} s ({w['ramp_arrivals']} arrivals), "
            f"open loop; action {w['action']} "
            f"{json.dumps(w['value'])[:40]}",
            f"caps: max_hosts {h['caps']['max_hosts']} (pool knob), {h['caps']['host_memory_gib']} GiB per "
            "host container; "
            "control tick 0.5 s; every other knob at the policy's default",
            "memory: sum of PSS of every process of every host container, sampled each second; "
            "GB*s over the run",
            "cold starts: activations that found no free slot and waited while a host was starting "
            f"(routers' waiting set read every {WAIT_POLL_S:g} s); waited: all that found no free slot",
        ],
    )
    for name, r in out.items():
        steps = r["timeline"][:: max(1, len(r["timeline"]) // 12)]
        print(f"  {name} timeline [t s, containers, warm, PSS MB, max slots on a host]: {steps}")
