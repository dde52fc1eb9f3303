"""Section 2, overhead: the trivial action in a direct-mode runtime against a routed-mode runtime
forwarding every activation to one warm model host (all local processes; the host started by a
Controller with the ProcessBackend, the pool pinned to 1 host)."""

from __future__ import annotations

import argparse
import statistics
import uuid
from pathlib import Path
from typing import Any

from lib.actions import TRIVIAL, TRIVIAL_VALUE
from lib.hosts import ScalerRig
from lib.load import cpu_seconds, http_worker, measure, tree_pids
from lib.report import medians, rnd, table
from lib.targets import LocalProcess, pid_with_port_flag, start_runtime
from scaler.config import guest_env, log
from warmwhisk_protocol.host import Env
from warmwhisk_scaler.backends import ProcessBackend
from warmwhisk_scaler.pool_config import PoolConfig

HOST_LIMIT = 16
METRICS = ("p50_ms", "p99_ms", "rate", "server_cpu_us", "client_cpu_us", "router_cpu_us", "host_cpu_us")
Key = tuple[str, int]  # (direct or routed, concurrency)


class RoutedCpu:
    """CPU of the routed path: the router's processes and the host's (kept apart too)."""

    def __init__(self, router: LocalProcess, host_pid: int | None) -> None:
        self.router, self.host_pid = router, host_pid
        self.readings: list[tuple[float, float]] = []

    def cpu_seconds(self) -> float:
        router = cpu_seconds(tree_pids(self.router.process.pid))
        host_cpu = cpu_seconds(tree_pids(self.host_pid)) if self.host_pid else 0.0
        self.readings.append((router, host_cpu))
        return router + host_cpu

    def split(self, result: dict[str, float], requests: int) -> None:
        """The last measurement's server CPU per request, router and host apart."""
        if len(self.readings) >= 2:
            (r0, h0), (r1, h1) = self.readings[-2:]
            result["router_cpu_us"] = (r1 - r0) / requests * 1e6
            result["host_cpu_us"] = (h1 - h0) / requests * 1e6


def start(tmp: Path, name: str, env: dict[str, str], servers: list[LocalProcess]) -> LocalProcess:
    server = start_runtime(name, tmp, env)
    servers.append(server)
    server.init(TRIVIAL, env=guest_env("bench"), timeout=10.0)
    return server


def warm_host(rig: ScalerRig) -> tuple[int | None, str]:
    """The pool's one model host, warm with limit 16: (its pid, the pool key)."""
    key = rig.pool_key()
    rig.configure(key, PoolConfig(knobs={"initial_limit": HOST_LIMIT}, manual_hosts=1))
    backend = ProcessBackend(rig.settings.state_dir, owner=f"bench-{uuid.uuid4().hex[:8]}")
    rig.start(backend, "bench-overhead")
    (host,) = rig.wait_warm(key, 1, 60, "a warm host with limit 16", HOST_LIMIT)
    log(f"overhead: pool {key} -> host {host.host_id} ({host.address})")
    return pid_with_port_flag(int(host.address.rpartition(":")[2])), key


def measure_rounds(args: argparse.Namespace, targets: dict[str, tuple[LocalProcess, Any]]) -> dict[Key, list]:
    """Rounds interleaving direct and routed (the order rotates each round), c=1 and c=8."""
    rounds, counts, warmup = workload(args)
    per_round: dict[Key, list[dict[str, float]]] = {}
    for round_no in range(rounds):
        order = ["direct", "routed"] if round_no % 2 == 0 else ["routed", "direct"]
        for concurrency in (1, 8):
            for name in order:
                server, cpu = targets[name]
                worker = http_worker(server.port, TRIVIAL_VALUE)
                result = measure(worker, concurrency, counts[concurrency], warmup, cpu)
                if isinstance(cpu, RoutedCpu):
                    cpu.split(result, concurrency * counts[concurrency])
                per_round.setdefault((name, concurrency), []).append(result)
                log(
                    f"overhead round {round_no + 1}/{rounds} {name:<6} c={concurrency}: p50 "
                    f"{result['p50_ms']:.3f} ms p99 {result['p99_ms']:.3f} ms {result['rate']:.0f}/s "
                    f"server cpu {result.get('server_cpu_us', 0):.0f} us/req"
                )
    return per_round


def workload(args: argparse.Namespace) -> tuple[int, dict[int, int], int]:
    """(rounds, requests per client at each concurrency, untimed requests per client before)."""
    if args.quick:
        return 2, {1: 300, 8: 60}, 50
    return args.rounds, {1: 1500, 8: 300}, 200


def section(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    servers: list[LocalProcess] = []
    with ScalerRig(backend="process", state_dir=str(tmp / "hosts")) as rig:
        try:
            direct = start(tmp, "direct", {"__OW_ALLOW_CONCURRENT": "true"}, servers)
            routed = start(tmp, "routed", {Env.MODE: "routed", Env.REGISTRY_URL: rig.url}, servers)
            host_pid, key = warm_host(rig)
            log(f"overhead: direct :{direct.port}, routed :{routed.port}")
            targets = {"direct": (direct, direct), "routed": (routed, RoutedCpu(routed, host_pid))}
            per_round = measure_rounds(args, targets)
            completed = rig.registry.pool_stats(key).completed
        finally:
            for server in servers:
                server.stop()
    return overhead_report(args, per_round, completed)


def overhead_report(args: argparse.Namespace, per_round: dict[Key, list], completed: int) -> dict[str, Any]:
    meds = {k: medians(v, METRICS, default=0.0) for k, v in per_round.items()}
    extra = {
        c: [
            r["p50_ms"] - d["p50_ms"]
            for r, d in zip(per_round[("routed", c)], per_round[("direct", c)], strict=True)
        ]
        for c in (1, 8)
    }
    overhead_table(args, meds, extra)
    rounds, counts, warmup = workload(args)

    def diff(metric: str, c: int) -> float | None:
        return rnd(meds[("routed", c)][metric] - meds[("direct", c)][metric], 4)

    return {
        "routed_extra_p50_ms_c1": diff("p50_ms", 1),
        "routed_extra_p50_ms_c8": diff("p50_ms", 8),
        "routed_extra_p50_ms_c1_median_of_round_diffs": rnd(statistics.median(extra[1]), 4),
        "routed_extra_p50_ms_c8_median_of_round_diffs": rnd(statistics.median(extra[8]), 4),
        "routed_extra_p99_ms_c1": diff("p99_ms", 1),
        "routed_extra_p99_ms_c8": diff("p99_ms", 8),
        "medians": {f"{n}_c{c}": {m: rnd(v, 4) for m, v in r.items()} for (n, c), r in meds.items()},
        "per_round_p50_ms": {
            f"{n}_c{c}": [rnd(r["p50_ms"], 4) for r in v] for (n, c), v in per_round.items()
        },
        "rounds": rounds,
        "requests": {"c1": counts[1], "c8": f"8x{counts[8]}", "warmup": warmup},
        "host_limit": HOST_LIMIT,
        "pool_completed": completed,
    }


def overhead_table(args: argparse.Namespace, meds: dict[Key, dict], extra: dict[int, list[float]]) -> None:
    rows = []
    for concurrency in (1, 8):
        for name in ("direct", "routed"):
            m = meds[(name, concurrency)]
            split = (
                f" (router {m['router_cpu_us']:.0f} + host {m['host_cpu_us']:.0f})"
                if name == "routed"
                else ""
            )
            rows.append(
                [
                    f"{name} c={concurrency}",
                    f"{m['p50_ms']:.3f}",
                    f"{m['p99_ms']:.3f}",
                    f"{m['rate']:.0f}",
                    f"{m['server_cpu_us']:.0f}{split}",
                ]
            )
        d, r = meds[("direct", concurrency)], meds[("routed", concurrency)]
        rows.append(
            [
                f"routed - direct c={concurrency}",
                f"{r['p50_ms'] - d['p50_ms']:+.3f}",
                f"{r['p99_ms'] - d['p99_ms']:+.3f}",
                f"{r['rate'] / d['rate']:.2f}x",
                f"{r['server_cpu_us'] - d['server_cpu_us']:+.0f}",
            ]
        )
    rounds, counts, _ = workload(args)
    table(
        "2. Routed vs direct, trivial action (local processes, one warm host)",
        ["target", "p50 ms", "p99 ms", "req/s", "server CPU us/req"],
        rows,
        [
            f"median of {rounds} interleaved rounds; c=1: {counts[1]} requests, c=8: 8x{counts[8]}; "
            f"server CPU: routed = router + host processes",
            f"per-round p50 extra, c=1: {', '.join(f'{x:.3f}' for x in extra[1])} ms; "
            f"c=8: {', '.join(f'{x:.3f}' for x in extra[8])} ms",
        ],
    )
