"""One bench_stack.py run: the api overhead section, then the burst in each mode (a failed section
is recorded, the others run), the table, build/bench/stack.json and the JSON summary."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lib.report import finish, loadavg, rnd, table
from lib.targets import DockerEngine, stop_on_sigterm
from stack import burst, overhead
from stack.config import ACTIONS, MODES, TARGETS, log

ROWS = [
    ("containers created (action containers + model hosts)", "containers_created"),
    ("  action containers", "action_containers_created"),
    ("  model hosts", "model_hosts_created"),
    ("cold starts", "cold_starts"),
    ("  runs that started or initialised a container", "runs_with_init"),
    ("  runs queued while containers started", "runs_queued_on_starting_containers"),
    ("  runs that waited for a model host to start", "runs_waiting_for_a_host"),
    ("activations", "activations"),
    ("errors", "errors"),
    ("p50 ms (end to end, from the scheduled arrival)", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("peak memory MB (PSS of every container)", "peak_memory_mb"),
    ("memory GB*s (to the last answer)", "memory_gb_s"),
    ("run s", "run_seconds"),
]


def ratio(a: Any, b: Any) -> float | None:
    if a is None or not b:
        return None
    return rnd(a / b, 3)


def report(results: dict[str, Any]) -> None:
    runs = results.get("burst", {})
    if set(MODES) <= set(runs):
        stock, warm = runs["stock"], runs["warmwhisk"]
        rows = [[label, stock[key], warm[key], ratio(warm[key], stock[key])] for label, key in ROWS]
        notes = [
            f"{mode}: action memory {ACTIONS[mode].memory_mb} MB, concurrency {ACTIONS[mode].concurrency}"
            for mode in MODES
        ]
        table(
            "Burst + ramp through the REST API", ["", "stock", "warmwhisk", "warmwhisk / stock"], rows, notes
        )
    over = results.get("overhead")
    if over:
        rows = [
            ["blocking REST call, p50 ms", over["api_p50_ms"]],
            ["the same /run straight to the container, p50 ms", over["run_p50_ms"]],
            ["the stack's own time (api_overhead_p50_ms)", over["api_overhead_p50_ms"]],
        ]
        table("API overhead on a warm container (c=1)", ["", "value"], rows)


def summarize(
    results: dict[str, Any], errors: dict[str, str], args: argparse.Namespace, began: float
) -> dict:
    runs = results.get("burst", {})
    stock, warm = runs.get("stock", {}), runs.get("warmwhisk", {})
    summary: dict[str, Any] = {
        "stack_cold_starts_ratio_vs_stock": ratio(warm.get("cold_starts"), stock.get("cold_starts")),
        "stack_p99_ratio_vs_stock": ratio(warm.get("p99_ms"), stock.get("p99_ms")),
        "stack_memory_s_ratio_vs_stock": ratio(warm.get("memory_gb_s"), stock.get("memory_gb_s")),
        "api_overhead_p50_ms": results.get("overhead", {}).get("api_overhead_p50_ms"),
    }
    fields = (
        "containers_created",
        "cold_starts",
        "p50_ms",
        "p99_ms",
        "errors",
        "peak_memory_mb",
        "memory_gb_s",
    )
    summary["burst"] = {mode: {f: runs[mode][f] for f in fields} for mode in MODES if mode in runs}
    summary["targets_met"] = {
        f"{k}{op}{bound}": (summary[k] <= bound) if summary[k] is not None else None
        for k, (op, bound) in TARGETS.items()
    }
    summary.update(quick=args.quick, errors=errors, cpus=os.cpu_count(), loadavg_end=loadavg(),
                   seconds=round(time.monotonic() - began, 1))  # fmt: skip
    return summary


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; exit status 1 when a section failed."""
    stop_on_sigterm()
    run_id = uuid.uuid4().hex[:12]
    began = time.monotonic()
    log(f"run {run_id}{' (quick)' if args.quick else ''}; load {loadavg()}")
    dock = DockerEngine(run_id, timeout_s=60)
    dock.check_image()
    results: dict[str, Any] = {"burst": {}}
    errors: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-stack-") as tmp_name:
            tmp = Path(tmp_name)
            steps = [("overhead", lambda: overhead.section(args, dock, tmp))]
            steps += [(f"burst-{m}", lambda m=m: burst.burst_once(m, args, dock, tmp)) for m in MODES]
            for name, step in steps:
                started = time.monotonic()
                try:
                    outcome = step()
                except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
                    errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
                    log(f"{name} FAILED: {errors[name]}")
                else:
                    if name.startswith("burst-"):
                        results["burst"][outcome["mode"]] = outcome
                        o = outcome
                        log(f"{name}: {o['containers_created']} containers, {o['cold_starts']} cold starts, "
                            f"p99 {o['p99_ms']} ms, {o['errors']} errors")  # fmt: skip
                    else:
                        results[name] = outcome
                log(f"{name}: {time.monotonic() - started:.0f} s")
    finally:
        left = dock.remove_all()
        if left:
            log(f"removed {left} leftover container(s)")
    report(results)
    summary = summarize(results, errors, args, began)
    finish(Path(args.out), summary, {"results": results, "run_id": run_id}, log)
    return 1 if errors else 0
