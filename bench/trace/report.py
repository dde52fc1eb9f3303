"""The trace benchmark's report: the human tables on stdout, the same as markdown
(build/bench/trace/report.md), and the figures of the last-line JSON summary."""

from __future__ import annotations

import math
from pathlib import Path
from trace.config import TARGETS
from typing import Any

from lib.report import table
from warmwhisk_sim.calibration import Calibration
from warmwhisk_sim.cluster import CLUSTERS
from warmwhisk_sim.mapping import TERCILES
from warmwhisk_sim.matrix import compare
from warmwhisk_sim.variants import all_variants

HEADER = [
    "variant",
    "cold/1k",
    "loads/1k",
    "cold+loads/1k",
    "hot",
    "warm",
    "rare",
    "p50 s",
    "p99 s",
    "p99.9 s",
    "> objective %",
    "containers",
    "container·h",
    "memory GB·s",
    "peak GB",
    "dropped+timed out",
    "evicted",
    "refused starts",
]


def _f(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def row(name: str, m: dict[str, Any]) -> list[str]:
    t = m["terciles"]
    return [
        name,
        _f(m["cold_per_1000"]),
        _f(m["loads_per_1000"]),
        _f(m["cold_plus_loads_per_1000"]),
        *(_f(t[k]["cold_plus_loads_per_1000"], 1) for k in TERCILES),
        _f(m["p50_s"], 3),
        _f(m["p99_s"], 2),
        _f(m["p999_s"], 1),
        _f(m["over_objective_pct"], 2),
        f"{m['containers']:,}",
        _f(m["container_s"] / 3600, 0),
        _f(m["memory_gb_s"], 0),
        _f(m["peak_memory_gb"], 1),
        f"{m['dropped']:,}+{m['timed_out']:,}",
        f"{m['evictions']:,}",
        f"{m['refused_starts']:,}",
    ]


def by_cluster(results: dict[tuple[str, str], Any], cluster: str) -> dict[str, dict[str, Any]]:
    return {name: m for (name, c), m in results.items() if c == cluster}


def rows_of(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    groups = {v.name: v.group for v in all_variants()}
    order = {"policy": 0, "ablation": 1, "sweep": 2}
    names = sorted(results, key=lambda n: (order.get(groups.get(n, "sweep"), 3), list(results).index(n)))
    return [row(n, results[n]) for n in names]


def print_tables(
    results: dict[tuple[str, str], Any], live: dict[str, Any] | None, calibration: Calibration
) -> None:
    for cluster in CLUSTERS.values():
        these = by_cluster(results, cluster.name)
        if not these:
            continue
        table(
            f"Azure trace, simulated: {cluster.name} cluster ({cluster.note})",
            HEADER,
            rows_of(these),
            [
                "cold/1k: activations that waited for a starting host or routed container, per 1,000 "
                "invocations; loads/1k: hosts started (each loads its model); hot/warm/rare: cold+loads/1k "
                "per popularity tercile",
                "latency: arrival to answer; > objective: over run time + max(1 s, run time), dropped "
                "ones included; memory: hosts, shared weights, routed containers (GB = 1e9 B)",
            ],
        )
    table(
        "Calibration", ["figure", "value", "source"], [[w, v, s[:100]] for w, v, s in calibration.describe()]
    )


def markdown(
    results: dict[tuple[str, str], Any],
    live: dict[str, Any] | None,
    summary: dict[str, Any],
    calibration: Calibration,
    notes: list[str],
) -> str:
    lines = ["# Azure Functions trace: hybrid vs OpenWhisk, Knative, Ray Serve", ""]
    lines += [f"- {n}" for n in notes]
    for cluster in CLUSTERS.values():
        these = by_cluster(results, cluster.name)
        if not these:
            continue
        lines += ["", f"## Simulated, {cluster.name} cluster: {cluster.note}", ""]
        lines += _md_table(HEADER, rows_of(these))
    tight = by_cluster(results, "tight")
    if tight:
        lines += ["", "## Each baseline at its best setting (tight cluster, valid configurations only)", ""]
        lines += _md_table(
            ["baseline", *(f"least {label}" for label in BEST_LABELS.values())], best_rows(tight)
        )
    if live:
        from trace.live import COMPARISON_HEADER, comparison_rows

        s = live["slice"]
        lines += [
            "",
            f"## Live slice vs simulation (minutes {s['start_minute']}–{s['start_minute'] + s['minutes']}, "
            f"compressed {s['compress']:g}×, {s['invocations']} activations)",
            "",
        ]
        lines += [f"- {f}" for f in s["functions"]]
        lines += ["", *_md_table(COMPARISON_HEADER, comparison_rows(live, lambda x: _f(x, 3)))]
    lines += ["", "## Calibration", ""]
    lines += _md_table(["figure", "value", "source"], [list(x) for x in calibration.describe()])
    lines += ["", "## Summary", "", "```json", _json(summary), "```", ""]
    return "\n".join(lines)


BEST_LABELS = {"cold_plus_loads_per_1000": "cold+loads/1k", "p99_s": "p99 s", "memory_gb_s": "memory GB·s"}


def best_of(results: dict[str, dict[str, Any]], family: str) -> dict[str, tuple[str, float] | None]:
    """For one baseline, its default and every sweep point: the valid one that is best on each
    criterion alone, (name, value); None when none is valid."""
    families = {v.name: v.family for v in all_variants()}
    points = {
        n: m for n, m in results.items() if families.get(n) == family and m["dropped_or_timed_out"] == 0
    }
    out: dict[str, tuple[str, float] | None] = {}
    for key in BEST_LABELS:
        name = min(points, key=lambda n: (points[n][key], n)) if points else None
        out[key] = None if name is None else (name, points[name][key])
    return out


def best_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for family in ("openwhisk", "kpa", "rayserve"):
        best = best_of(results, family)
        rows.append(
            [family, *("none valid" if b is None else f"{_f(b[1], 2)} ({b[0]})" for b in best.values())]
        )
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return out


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2)


def summarize(results: dict[tuple[str, str], Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """The last-line JSON: the tight cluster's comparison, the loose one's beside it, the live error
    (None for what was not run)."""
    if ("hybrid", "tight") not in results or ("openwhisk", "tight") not in results:
        tight: dict[str, Any] = {
            k: None
            for k in (
                "cold_start_ratio_vs_owdefault",
                "p99_ratio_vs_owdefault",
                "memory_gbs_ratio_vs_owdefault",
                "hybrid_valid",
                "owdefault_valid",
            )
        }
        tight["dominated_by"] = None
    else:
        tight = compare(results, "tight")
    out: dict[str, Any] = {
        "trace_cold_start_ratio_vs_owdefault": _r(tight["cold_start_ratio_vs_owdefault"]),
        "trace_p99_ratio_vs_owdefault": _r(tight["p99_ratio_vs_owdefault"]),
        "trace_memory_gbs_ratio_vs_owdefault": _r(tight["memory_gbs_ratio_vs_owdefault"]),
        "trace_dominated_by": tight["dominated_by"],
        "live_vs_sim_max_error": _r(live.get("max_error")) if live else None,
        "hybrid_valid": tight["hybrid_valid"],
        "owdefault_valid": tight["owdefault_valid"],
    }
    if ("hybrid", "loose") in results and ("openwhisk", "loose") in results:
        loose = compare(results, "loose")
        out["loose"] = {k: (_r(v) if isinstance(v, float) else v) for k, v in loose.items()}
    met, missed = {}, []
    for key, (op, bound) in TARGETS.items():
        value = out.get(key)
        ok = None if value is None else value <= bound
        met[f"{key}{op}{bound}"] = ok
        if ok is not True:
            missed.append(f"{key} {value} (target {op} {bound})")
    met["trace_dominated_by==[]"] = (
        None if out["trace_dominated_by"] is None else out["trace_dominated_by"] == []
    )
    if out["trace_dominated_by"] != []:
        missed.append(f"trace_dominated_by {out['trace_dominated_by']} (target [])")
    out["targets_met"] = met
    out["targets_missed"] = missed
    return out


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
