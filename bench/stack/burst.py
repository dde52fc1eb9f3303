"""One mode's burst through the dev stack: the stack as a user runs it (`python -m
warmwhisk_devstack`, `--stock` or not), the bert action created through the REST API, and
bench_scaler's open-loop workload (a burst at t=0 plus a linear ramp) sent as blocking REST
invocations. While it runs: the PSS of every container of the stack and of its model hosts each
second, the containers created (Docker's event stream), and (warmwhisk mode) the routers' waiting
sets and the hosts' states in the stack's Redis.

A cold start is a run that waited for a container or a model host to start: its record has
OpenWhisk's `initTime` (it started or initialised a container); or it waited for a slot in the
stack (`waitTime` of 50 ms or more) while a container was being started and initialised; or
(warmwhisk) it waited in Redis for a slot while a model host was starting. A run counted by two
rules counts twice (conservative for warmwhisk, whose runs can meet both)."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.hosts import watch_waits
from lib.load import open_loop
from lib.report import pct, rnd
from lib.targets import IMAGE, REPO, DockerEngine, free_port
from scaler.burst import ramp_times
from scaler.burst_report import memory_seconds, waits_on_starting_hosts
from stack.config import ACTIONS, HOST_MEMORY_MB, IDLE_TIMEOUT_S, SAMPLE_S, USER_MEMORY_MB, WAIT_POLL_S, log
from warmwhisk_devstack.client import Invocation, StackProcess
from warmwhisk_devstack.stack import stack_id
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.registry import RedisRegistry, connect_redis

# A run that waited this long for a slot in the stack was queued, not just scheduled.
QUEUED_S = 0.05


@dataclass(frozen=True)
class Workload:
    burst: int
    ramp: tuple[float, float, float]  # from req/s, to req/s, over seconds
    value: dict[str, Any] = field(default_factory=lambda: {"length": 16})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Workload:
        if args.quick:
            return cls(8, (1.0, 3.0, 15.0))
        return cls(args.burst, (args.ramp_from, args.ramp_to, args.ramp_seconds))

    def schedule(self) -> list[tuple[str, float]]:
        return [("burst", 0.0)] * self.burst + [("ramp", t) for t in ramp_times(*self.ramp)]


@dataclass(frozen=True)
class Result:
    """One invocation: when it was due and how long it took from then (s); from its record, when
    it started (epoch s), how long it waited for a slot and how long /init took (s)."""

    phase: str
    scheduled: float
    latency: float | None
    ok: bool
    start: float | None = None
    wait_s: float = 0.0
    init_s: float | None = None

    @classmethod
    def of(cls, phase: str, scheduled: float, latency: float | None, invocation: Invocation) -> Result:
        record = invocation.record
        if record is None:
            return cls(phase, scheduled, latency, False)
        notes = {a["key"]: a["value"] for a in record["annotations"]}
        init_ms = notes.get("initTime")
        init_s = None if init_ms is None else init_ms / 1000
        return cls(
            phase, scheduled, latency, invocation.ok, record["start"] / 1000, notes["waitTime"] / 1000, init_s
        )


@dataclass
class Seen:
    t0: float = field(default_factory=time.perf_counter)
    wall0: float = field(default_factory=time.time)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, PSS bytes, containers
    results: list[Result] = field(default_factory=list)
    waits: dict[bytes, list[float]] = field(default_factory=dict)  # router wait id -> first, last seen
    warm_at: dict[str, float] = field(default_factory=dict)  # model host id -> first seen warm (wall s)
    created: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> container id -> wall s
    errors: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0


class Monitor:
    """Background readers while the workload runs: PSS each second, container creations (Docker's
    event stream: the engine keeps too few past events to ask afterwards), and in warmwhisk mode
    the routers' waiting sets and the hosts' states every WAIT_POLL_S."""

    def __init__(
        self, dock: DockerEngine, labels: list[str], registry: RedisRegistry | None, seen: Seen
    ) -> None:
        self.dock, self.labels, self.registry, self.seen = dock, labels, registry, seen
        self.stop = threading.Event()
        self._events = dock.client.events(filters={"type": "container", "event": "create"}, decode=True)
        targets = [self._sample, self._creations] + ([self._watch] if registry is not None else [])
        self.threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self.threads:
            thread.start()

    def _sample(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            while not self.stop.is_set():
                began = time.perf_counter()
                with contextlib.suppress(Exception):
                    measured = [self.dock.labelled_pss(label, pool) for label in self.labels]
                    pss, count = sum(m[0] for m in measured), sum(m[1] for m in measured)
                    self.seen.samples.append((began - self.seen.t0, pss, count))
                self.stop.wait(max(0.0, SAMPLE_S - (time.perf_counter() - began)))

    def _creations(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when `close` closes it
            for event in self._events:
                attributes = event.get("Actor", {}).get("Attributes", {})
                for label in self.labels:
                    key, _, value = label.partition("=")
                    if attributes.get(key) == value:
                        self.seen.created.setdefault(label, {})[event["id"]] = event["timeNano"] / 1e9

    def _watch(self) -> None:
        registry = self.registry
        assert registry is not None
        seen = self.seen
        watch_waits(
            registry, registry.registered_actions, seen.waits, seen.warm_at, self.stop, time.time, WAIT_POLL_S
        )

    def close(self) -> None:
        self.stop.set()
        time.sleep(1.0)  # the last creations reach the stream
        self._events.close()
        for thread in self.threads:
            thread.join(timeout=10)


def stack_registry(state_dir: Path) -> RedisRegistry:
    """The stack's registry for namespace guest, through the scaler's admin URL file."""
    url = (state_dir / "scaler" / "redis-url").read_text().strip()
    keys = RedisKeys(f"devstack-{stack_id(state_dir)}").namespace("guest")
    return RedisRegistry(connect_redis(url), keys, heartbeat_ttl_s=1.5)


def burst_once(mode: str, args: argparse.Namespace, dock: DockerEngine, tmp: Path) -> dict[str, Any]:
    work = Workload.from_args(args)
    state_dir = tmp / mode / "state"
    flags = ["--image", IMAGE, "--models-dir", str(REPO / "build" / "models"), "--user-memory-mb",
             str(USER_MEMORY_MB), "--host-memory-mb", str(HOST_MEMORY_MB), "--idle-timeout",
             str(IDLE_TIMEOUT_S), *(["--stock"] if mode == "stock" else [])]  # fmt: skip
    stack = StackProcess(free_port(), state_dir, flags, cwd=REPO, labels=dock.labels)
    labels = {
        "stack": f"warmwhisk.devstack={stack_id(state_dir)}",
        "hosts": f"warmwhisk.owner=warmwhisk-scaler.devstack-{stack_id(state_dir)}",
    }
    stack.start(ready_timeout_s=180)
    registry = None
    try:
        client = stack.client()
        code = (REPO / "examples" / "bert" / "__main__.py").read_text()
        client.put_action("bert", {"kind": "python:3-ml", "code": code}, ACTIONS[mode].limits())
        time.sleep(3)  # the stem cells start
        registry = stack_registry(state_dir) if mode == "warmwhisk" else None
        seen = Seen()
        monitor = Monitor(dock, list(labels.values()), registry, seen)
        r0, r1, seconds = work.ramp
        log(f"burst [{mode}]: {work.burst} at t=0 + ramp {r0:g}->{r1:g} req/s over {seconds:g} s")

        def activation(phase: str, scheduled: float) -> None:
            sent = seen.now()
            try:
                invocation = client.invoke("bert", work.value, wait_s=180)
            except Exception as exc:  # noqa: BLE001 - counted as an error
                seen.errors.append(repr(exc)[:200])
                seen.results.append(Result(phase, scheduled, None, False))
                return
            latency = None if invocation.seconds is None else sent - scheduled + invocation.seconds
            if not invocation.ok:
                seen.errors.append(f"{invocation.status} {str(invocation.record)[:200]}")
            seen.results.append(Result.of(phase, scheduled, latency, invocation))

        open_loop(work.schedule(), activation, seen.t0)
        t_end = seen.now()
        monitor.close()
    finally:
        if registry is not None:
            registry.close()
        status = stack.stop()
    if status != 0:
        log(f"burst [{mode}]: the stack exited with {status}; its log: {stack.log_path}")
    containers, hosts = (seen.created.get(labels[k], {}) for k in ("stack", "hosts"))
    return analyse(mode, work, seen, t_end, containers, hosts)


def cold_starts(seen: Seen, hosts: dict[str, float]) -> dict[str, int]:
    """The three ways a run waits for a start (the module's docstring), counted apart."""
    inits = [r for r in seen.results if r.init_s is not None and r.start is not None]
    container_starts = [(r.start, r.start + (r.init_s or 0)) for r in inits]
    queued = [[r.start - r.wait_s, r.start] for r in seen.results
              if r.start is not None and r.init_s is None and r.wait_s >= QUEUED_S]  # fmt: skip
    host_starts = [(at, seen.warm_at.get(h, float("inf"))) for h, at in hosts.items()]
    return {
        "runs_with_init": len(inits),
        "runs_queued_on_starting_containers": waits_on_starting_hosts(queued, container_starts),
        "runs_waiting_for_a_host": waits_on_starting_hosts(seen.waits.values(), host_starts),
    }


def analyse(
    mode: str, work: Workload, seen: Seen, t_end: float, containers: dict[str, float], hosts: dict[str, float]
) -> dict[str, Any]:
    ok = [r.latency for r in seen.results if r.ok and r.latency is not None]
    kinds = cold_starts(seen, hosts)

    def ms(q: float) -> float | None:
        return rnd(1000 * pct(ok, q), 1) if ok else None

    return {
        "mode": mode,
        "containers_created": len(containers) + len(hosts),
        "action_containers_created": len(containers),
        "model_hosts_created": len(hosts),
        "cold_starts": sum(kinds.values()),
        **kinds,
        "activations": len(seen.results),
        "errors": sum(1 for r in seen.results if not r.ok),
        "error_examples": seen.errors[:5],
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "peak_memory_mb": rnd(max((s[1] for s in seen.samples), default=0) / 1e6, 1),
        "memory_gb_s": rnd(memory_seconds(seen.samples, t_end, t_end) / 1e9, 2),  # type: ignore[arg-type]
        "peak_containers": max((s[2] for s in seen.samples), default=0),
        "run_seconds": rnd(t_end, 1),
        "workload": {"burst": work.burst, "ramp": list(work.ramp), "arrivals": len(work.schedule())},
    }
