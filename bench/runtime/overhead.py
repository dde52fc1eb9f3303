"""Per-activation overhead of the runtime: the rounds over every target and concurrency, the
table of medians, the JSON summary."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import warmwhisk_runtime
from lib.actions import TRIVIAL, TRIVIAL_VALUE
from lib.load import Worker, http_worker, inprocess_worker, measure
from lib.report import emit_summary, loadavg, logger, medians, source_fingerprint
from lib.targets import LocalProcess, start_runtime
from runtime import routed
from runtime.floors import start_floor
from runtime.slow import slow_clients

TARGETS_ORDER = ("in-process", "wsgi", "bare", "runtime")
HTTP_TARGETS = ("wsgi", "bare", "runtime")
CONCURRENCY = (1, 8)
RUNTIME_PACKAGE = Path(warmwhisk_runtime.__file__).resolve().parent
Key = tuple[str, int]  # (target, concurrency)
# The summary's first keys: the (#12), in its order.
HEADLINE = (
    "server_cpu_ms_per_activation", "overhead_p50_ms_c1", "throughput_ratio_vs_bare_c8",
    "p99_ratio_vs_bare_c8", "routed_extra_p50_ms_c8", "slow_clients_p50_ms",
)  # fmt: skip
log = logger("bench", clock=False)


@contextlib.contextmanager
def servers(logdir: Path, with_wsgi: bool) -> Iterator[dict[str, LocalProcess]]:
    started: dict[str, LocalProcess] = {}
    try:
        log("starting the floor apps and the runtime")
        if with_wsgi:
            started["wsgi"] = start_floor("wsgi", logdir)
        started["bare"] = start_floor("flask", logdir)
        started["runtime"] = start_runtime("runtime", logdir, {"__OW_ALLOW_CONCURRENT": "true"})
        started["runtime"].init(TRIVIAL, timeout=10.0)
        yield started
    finally:
        for server in started.values():
            server.stop()
        log("servers stopped")


def make_worker(action_main: Callable[[Any], Any], server: LocalProcess | None) -> Worker:
    """A client-thread body for `measure`: the in-process call, or HTTP to `server`."""
    if server is None:
        return inprocess_worker(action_main, TRIVIAL_VALUE)
    return http_worker(server.port, TRIVIAL_VALUE)


def run_rounds(args: argparse.Namespace, running: dict[str, LocalProcess]) -> dict[Key, list[dict]]:
    namespace: dict[str, Any] = {}
    exec(compile(TRIVIAL.code, "<action>", "exec"), namespace)
    counts = {1: args.requests_c1, 8: args.requests_c8}
    per_round: dict[Key, list[dict[str, float]]] = {}
    http_targets = [t for t in HTTP_TARGETS if t in running]
    for round_no in range(args.rounds):
        # Rotate the HTTP targets' order, so drift (neighbours, caches) hits each alike.
        shift = round_no % len(http_targets)
        for target in ["in-process", *http_targets[shift:], *http_targets[:shift]]:
            server = running.get(target)
            for concurrency in CONCURRENCY:
                worker = make_worker(namespace["main"], server)
                result = measure(worker, concurrency, counts[concurrency], args.warmup, server)
                per_round.setdefault((target, concurrency), []).append(result)
                log(
                    f"round {round_no + 1}/{args.rounds} {target:<10} c={concurrency}: "
                    f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
                    f"{result['rate']:.0f}/s  server cpu {result.get('server_cpu_us', 0):.0f} us/req"
                )
        for name, srv in running.items():
            if not srv.alive():
                raise RuntimeError(f"{name} died during the run:\n{srv.tail()}")
    return per_round


# The bounds (#12): (comparison, bound); the slow-clients bound is relative (below).
TARGETS = {
    "server_cpu_ms_per_activation": ("<=", 0.25),
    "overhead_p50_ms_c1": ("<=", 0.35),
    "throughput_ratio_vs_bare_c8": (">=", 1.5),
    "p99_ratio_vs_bare_c8": ("<=", 1.0),
    "routed_extra_p50_ms_c8": ("<=", 3.0),
}
SLOW_CLIENTS_MARGIN_MS = 10.0  # slow_clients_p50_ms <= overhead_p50_ms_c1 + this


def comparisons(results: dict[Key, dict[str, float]]) -> dict[str, Any]:
    """The runtime against the in-process call and the floors."""
    rt1, rt8 = results[("runtime", 1)], results[("runtime", 8)]
    bare1, bare8 = results[("bare", 1)], results[("bare", 8)]
    inproc1 = results[("in-process", 1)]
    summary: dict[str, Any] = {
        "server_cpu_ms_per_activation": round(rt8["server_cpu_us"] / 1000, 4),
        "overhead_p50_ms_c1": round(rt1["p50_ms"] - inproc1["p50_ms"], 4),
        "throughput_ratio_vs_bare_c8": round(rt8["rate"] / bare8["rate"], 3),
        "p99_ratio_vs_bare_c8": round(rt8["p99_ms"] / bare8["p99_ms"], 3),
        "overhead_p50_ms_c1_vs_bare": round(rt1["p50_ms"] - bare1["p50_ms"], 4),
        "throughput_ratio_vs_bare_c1": round(rt1["rate"] / bare1["rate"], 3),
        "p99_ratio_vs_bare_c1": round(rt1["p99_ms"] / bare1["p99_ms"], 3),
        "server_cpu_ratio_vs_bare_c8": round(rt8["server_cpu_us"] / bare8["server_cpu_us"], 3),
    }
    if ("wsgi", 1) in results:
        wsgi1, wsgi8 = results[("wsgi", 1)], results[("wsgi", 8)]
        summary["overhead_p50_ms_c1_vs_wsgi"] = round(rt1["p50_ms"] - wsgi1["p50_ms"], 4)
        summary["throughput_ratio_vs_wsgi_c8"] = round(rt8["rate"] / wsgi8["rate"], 3)
        summary["server_cpu_us_c1_vs_wsgi"] = round(rt1["server_cpu_us"] - wsgi1["server_cpu_us"], 1)
    return summary


def targets_met(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Each bound of the issue, True/False, or None when its section did not run."""
    met: dict[str, bool | None] = {}
    for key, (op, bound) in TARGETS.items():
        value = summary.get(key)
        met[f"{key}{op}{bound:g}"] = (
            None if value is None else (value <= bound if op == "<=" else value >= bound)
        )
    slow = summary.get("slow_clients_p50_ms")
    bound = summary["overhead_p50_ms_c1"] + SLOW_CLIENTS_MARGIN_MS
    met[f"slow_clients_p50_ms<=overhead_p50_ms_c1+{SLOW_CLIENTS_MARGIN_MS:g}"] = (
        None if slow is None else slow <= bound
    )
    return met


def _table_order(item: tuple[Key, Any]) -> tuple[int, int]:
    (target, concurrency), _ = item
    return concurrency, TARGETS_ORDER.index(target)


def render_table(results: dict[Key, dict[str, float]], per_round: dict[Key, list[dict[str, float]]]) -> str:
    header = (
        f"{'target':<12}{'conc':>5}{'p50 ms':>10}{'p99 ms':>10}{'act/s':>10}{'srv cpu':>10}{'cli cpu':>10}"
        "   p50 ms per round"
    )
    lines = [header, f"{'':<27}{'':>20}{'us/req':>10}{'us/req':>10}", "-" * len(header)]
    for (target, concurrency), r in sorted(results.items(), key=_table_order):
        server_cpu = f"{r['server_cpu_us']:.0f}" if "server_cpu_us" in r else "-"
        client_cpu = f"{r['client_cpu_us']:.0f}" if target != "in-process" else "-"
        rounds = " ".join(f"{x['p50_ms']:.3f}" for x in per_round[(target, concurrency)])
        lines.append(
            f"{target:<12}{concurrency:>5}{r['p50_ms']:>10.4f}{r['p99_ms']:>10.4f}{r['rate']:>10.0f}"
            f"{server_cpu:>10}{client_cpu:>10}   {rounds}"
        )
    return "\n".join(lines)


def extra_sections(args: argparse.Namespace, runtime: LocalProcess, tmp: Path) -> dict[str, Any]:
    """Slow clients against the runtime that was just measured, then routed mode."""
    out: dict[str, Any] = {}
    if not args.no_slow_clients:
        out["slow_clients"] = slow_clients(
            runtime, args.slow_clients, max(args.requests_c1, 5000), args.warmup
        )
    if not args.no_routed:
        log("routed mode: bench_scaler's overhead section (direct vs routed, one warm host)")
        out["routed"] = routed.section(args.routed_rounds, tmp / "routed")
    return out


def headline(summary: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The issue's keys first, in its order, then the rest of the summary."""
    if "slow_clients" in extra:
        summary["slow_clients_p50_ms"] = round(extra["slow_clients"]["p50_ms"], 4)
        summary["slow_clients_p99_ms"] = round(extra["slow_clients"]["p99_ms"], 4)
    if "routed" in extra:
        for key in ("routed_extra_p50_ms_c8", "routed_extra_p50_ms_c1"):
            summary[key] = extra["routed"][key]
        medians_ = extra["routed"]["medians"]
        summary["router_cpu_ms_per_activation_c8"] = round(medians_["routed_c8"]["router_cpu_us"] / 1000, 4)
        summary["host_cpu_ms_per_activation_c8"] = round(medians_["routed_c8"]["host_cpu_us"] / 1000, 4)
    first = [key for key in HEADLINE if key in summary]
    return {**{key: summary[key] for key in first}, **{k: v for k, v in summary.items() if k not in first}}


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    measured = source_fingerprint(RUNTIME_PACKAGE)  # the code the runtime process imports at its start
    with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-") as tmp, \
            servers(Path(tmp), not args.no_wsgi_floor) as running:  # fmt: skip
        per_round = run_rounds(args, running)
        extra = extra_sections(args, running["runtime"], Path(tmp))
    if source_fingerprint(RUNTIME_PACKAGE)["src_sha256"] != measured["src_sha256"]:
        measured["changed_on_disk_during_run"] = True
        log("note: action-runtime/ changed on disk during the run; the numbers are for the code at its start")
    results = {key: medians(rounds) for key, rounds in per_round.items()}
    summary = headline(comparisons(results), extra)
    summary["targets_met"] = targets_met(summary)
    summary.update(
        {
            "rounds": args.rounds,
            "requests": {"c1": args.requests_c1, "c8": f"8x{args.requests_c8}", "warmup": args.warmup},
            "cpus": os.cpu_count(),
            "loadavg_end": loadavg(),
            "runtime": measured,
            "seconds": round(time.monotonic() - began, 1),
            "raw": {
                f"{target}_c{c}": {k: round(v, 4 if k.endswith("_ms") else 1) for k, v in r.items()}
                for (target, c), r in sorted(results.items(), key=_table_order)
            },
        }
    )
    print(
        f"warmwhisk runtime vs floors, trivial action; median of {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs shared by client and server"
    )
    print(render_table(results, per_round))
    print(render_targets(summary))
    emit_summary(summary)
    return 0


def render_targets(summary: dict[str, Any]) -> str:
    """The issue's keys against their bounds, one line each."""
    lines = ["", f"{'key':<34}{'value':>10}  target"]
    for key, met in summary["targets_met"].items():
        name = key.split("<=")[0].split(">=")[0]
        value = summary.get(name)
        shown = "-" if value is None else f"{value:g}"
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        lines.append(f"{name:<34}{shown:>10}  {key[len(name) :]}  {verdict}")
    return "\n".join(lines)
