"""`python -m warmwhisk_sim`: replay a workload against the scaling policies and compare them, or
run the whole trace evaluation's simulated matrix (`--matrix`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from warmwhisk_scaler.policy import POLICIES

from .calibration import DEFAULT as DEFAULT_CALIBRATION
from .calibration import CalibrationError
from .matrix import MatrixSpec, default_tasks, run_matrix, text_progress
from .matrix import compare as compare_matrix
from .replay import HostModel, ReplayResult, ReplaySettings, compare
from .traces import TraceError, find_function, read_azure_trace, trace_workload
from .workloads import burst_and_ramp

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
        prog="python -m warmwhisk_sim",
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
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="with --trace: every function, every variant (the trace evaluation)",
    )
    parser.add_argument(
        "--calibration", type=Path, default=DEFAULT_CALIBRATION, help="--matrix: calibration file"
    )
    parser.add_argument("--variants", default="all", help="--matrix: comma-separated variant names")
    parser.add_argument("--workers", type=int, default=2, help="--matrix: worker processes")
    args = parser.parse_args(argv)
    try:
        if args.matrix:
            if not args.trace:
                parser.error("--matrix needs --trace")
            return matrix(args)
        return replay_cli(args)
    except (TraceError, CalibrationError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def matrix(args: argparse.Namespace) -> int:
    """The simulated matrix: one line per run, then the comparison as JSON."""
    read_azure_trace(args.trace)  # a bad trace fails here, naming file, line and column
    spec = MatrixSpec(
        str(args.trace), str(args.calibration), seed=args.seed, tasks=default_tasks(args.variants)
    )
    results = run_matrix(spec, workers=args.workers, progress=text_progress(sys.stderr))
    keys = ("cold_plus_loads_per_1000", "p50_s", "p99_s", "memory_gb_s", "dropped_or_timed_out")
    print(f"{'variant':<34} {'cluster':<9} " + " ".join(f"{k:>24}" for k in keys))
    for (name, cluster), m in results.items():
        print(f"{name:<34} {cluster:<9} " + " ".join(f"{m[k]:>24.3f}" for k in keys))
    clusters = sorted({c for _, c in results})
    summary = {
        c: compare_matrix(results, c)
        for c in clusters
        if (("hybrid", c) in results and ("openwhisk", c) in results)
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def replay_cli(args: argparse.Namespace) -> int:

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
