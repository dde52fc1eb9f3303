"""Section 4, burst: real model-host containers (DockerBackend) driven by a Controller thread under
one policy, a routed-mode runtime (local process) as the entry point, and an open-loop workload:
N concurrent activations at t=0 plus a linear ramp of arrivals. While it runs, the PSS of the host
containers is sampled every second and the routers' waiting set in Redis every 50 ms."""

from __future__ import annotations

import argparse
import contextlib
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.actions import ActionCode
from lib.hosts import ScalerRig, docker_backend, wait_until, watch_waits
from lib.load import http_json, open_loop
from lib.targets import IMAGE, REPO, DockerEngine, start_runtime
from scaler import burst_report
from scaler.config import GIB, WAIT_POLL_S, guest_env, log
from warmwhisk_protocol.host import Env
from warmwhisk_scaler.backends import HostSpec, RunningHost
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_scaler.state import DECISION_LOG_LENGTH


@dataclass(frozen=True)
class Workload:
    burst: int
    max_hosts: int
    ramp: tuple[float, float, float]  # from req/s, to req/s, over seconds
    action: str
    value: dict[str, Any]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Workload:
        quick = args.quick
        ramp = (1.0, 3.0, 15.0) if quick else (args.ramp_from, args.ramp_to, args.ramp_seconds)
        if args.burst_action == "bert":
            value: dict[str, Any] = {"length": 16}
        else:
            value = {"pixels": [float(i % 17) for i in range(64)]}
        return cls(8 if quick else args.burst, 6 if quick else args.max_hosts, ramp, args.burst_action, value)

    def schedule(self) -> list[tuple[str, float]]:
        return [("burst", 0.0)] * self.burst + [("ramp", t) for t in ramp_times(*self.ramp)]


def ramp_times(r0: float, r1: float, duration_s: float) -> list[float]:
    """Arrival times of a linear ramp from r0 to r1 req/s over duration_s (deterministic)."""
    a, b = (r1 - r0) / (2 * duration_s), r0
    total = int(b * duration_s + a * duration_s**2)
    times = []
    for k in range(1, total + 1):
        times.append(k / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * k)) / (2 * a))
    return times


class CountingBackend:
    """A HostBackend that records when each host was started and stopped (for the burst tables)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.owner = inner.owner
        self.started: dict[str, float] = {}
        self.stopped: dict[str, float] = {}

    def start(self, spec: HostSpec) -> RunningHost:
        host = self.inner.start(spec)
        self.started[spec.host_id] = host.started_at
        return host

    def stop(self, host_id: str) -> None:
        self.stopped.setdefault(host_id, time.time())
        self.inner.stop(host_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Observed:
    """What one burst run recorded, times in seconds since its start (t0)."""

    t0: float = field(default_factory=time.perf_counter)
    wall0: float = field(default_factory=time.time)
    samples: list[tuple[float, int, int, int, int]] = field(
        default_factory=list
    )  # t, PSS, containers, warm, slots
    warm_at: dict[str, float] = field(default_factory=dict)  # host id -> first seen warm
    waits: dict[bytes, list[float]] = field(default_factory=dict)  # wait id -> [first, last seen]
    results: list[tuple[str, float, float, bool]] = field(default_factory=list)  # phase, at, latency, ok
    error_examples: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0


class Monitor:
    """Threads reading the host containers' PSS (every second) and the waiting activations and
    the hosts' states (every WAIT_POLL_S) while the workload runs."""

    def __init__(self, rig: ScalerRig, dock: DockerEngine, owner: str, key: str, seen: Observed) -> None:
        self.rig, self.dock, self.owner, self.key, self.seen = rig, dock, owner, key, seen
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.sampler, self.watcher)]
        for thread in self.threads:
            thread.start()

    def sampler(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            while not self.stop.is_set():
                began = time.perf_counter()
                with contextlib.suppress(Exception):
                    pss, count = self.dock.owner_pss(self.owner, pool)
                    records = self.rig.registry.hosts()
                    warm = sum(1 for r in records if r.state == "warm")
                    busiest = max((r.slots_in_use for r in records), default=0)
                    self.seen.samples.append((began - self.seen.t0, pss, count, warm, busiest))
                self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

    def watcher(self) -> None:
        """Activations waiting for a slot (the routers' waiting set), and when hosts turn warm."""
        seen = self.seen
        watch_waits(
            self.rig.registry, lambda: [self.key], seen.waits, seen.warm_at, self.stop, seen.now, WAIT_POLL_S
        )

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def drive(port: int, work: Workload, seen: Observed) -> None:
    """The open-loop workload through the router on `port`; latency from the scheduled arrival."""

    def activation(phase: str, scheduled: float) -> None:
        ok = False
        try:
            body = {"value": work.value, "deadline": str(int((time.time() + 120) * 1000))}
            status, answer = http_json(port, "POST", "/run", body, timeout=150)
            ok = status == 200 and isinstance(answer, dict) and "error" not in answer
            if not ok and len(seen.error_examples) < 5:
                seen.error_examples.append(f"{status} {str(answer)[:200]}")
        except Exception as exc:  # noqa: BLE001 - counted as an error
            if len(seen.error_examples) < 5:
                seen.error_examples.append(repr(exc)[:200])
        seen.results.append((phase, scheduled, seen.now() - scheduled, ok))

    open_loop(work.schedule(), activation, seen.t0)


def burst_once(
    args: argparse.Namespace, dock: DockerEngine, models_dir: Path, policy: str, tmp: Path
) -> dict:
    work = Workload.from_args(args)
    owner = f"bench-{policy}-{dock.run_id}"
    backend = CountingBackend(docker_backend(dock, owner))
    settings: dict[str, Any] = {"backend": "docker", "image": IMAGE, "model_dir": str(models_dir)}
    settings.update(policy=policy, host_memory_bytes=args.host_memory_gib * GIB, tick_s=0.5)
    router_env = {Env.MODE: "routed", Env.MAX_CONCURRENT: "256"}
    with ScalerRig(**settings) as rig, contextlib.ExitStack() as stack:
        router = start_runtime(f"router-{policy}", tmp, {**router_env, Env.REGISTRY_URL: rig.url})
        stack.callback(router.stop)
        code = (REPO / "examples" / work.action / "__main__.py").read_text()
        router.init(
            ActionCode(code, "main", work.action), guest_env(work.action), timeout=120, name=work.action
        )
        key = rig.pool_key()
        rig.configure(key, PoolConfig(knobs={"max_hosts": work.max_hosts}))
        rig.start(backend, f"bench-{policy}", lambda: dock.remove_labelled(f"warmwhisk.owner={owner}"))
        wait_until(lambda: rig.controller.ticks >= 2, 10, "the control loop")
        seen = Observed()
        monitor = Monitor(rig, dock, owner, key, seen)
        log(
            f"burst [{policy}]: {work.burst} at t=0 + ramp {work.ramp[0]:g}->{work.ramp[1]:g} req/s over "
            f"{work.ramp[2]:g} s ({len(work.schedule()) - work.burst} arrivals), max_hosts {work.max_hosts}, "
            f"host memory {args.host_memory_gib} GiB"
        )
        drive(router.port, work, seen)
        t_end = seen.now()
        monitor.close()
        scaler_cold_start = rig.controller.status()["cold_start_s"].get(key)
        decisions = rig.store.decisions(DECISION_LOG_LENGTH)
    run = burst_report.Run(policy, work, backend, seen, t_end, scaler_cold_start, decisions)
    return burst_report.analyse(run, args.host_memory_gib)


def section(args: argparse.Namespace, dock: DockerEngine, models_dir: Path, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in ("hybrid", "openwhisk"):
        out[policy] = r = burst_once(args, dock, models_dir, policy, tmp)
        log(
            f"burst [{policy}]: {r['containers_created']} containers, {r['cold_starts']} cold starts, p50 "
            f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors, peak {r['peak_memory_mb']} MB, "
            f"{r['memory_gb_s']} GB*s"
        )
    burst_report.burst_table(out)
    return out
