"""The live slice: a time-compressed slice of the trace replayed on the real stack (a private
Redis, a scaler replica driving real model-host containers through DockerBackend, one routed
runtime per action), once per policy, next to the simulator's prediction for the same slice.

* **Slice**: minutes [start, start + minutes) of the trace, arrival times divided by `compress`
  (run times stay real); one function per popularity tercile (`mapping.slice_functions`: the
  busiest one whose compressed load fits this machine), each its own action and pool.
* **Action**: `actions.model_action(LIVE_MODEL)`: it maps the real model at /init and waits out
  each activation's run time (`duration_s`), so two shared cores do not turn concurrency into CPU
  contention; the simulator is told the same (`sleep=True`: throughput grows linearly with
  concurrency) and that every pool maps the same model file (its pages are shared).
* **Both sides alike**: each pool's knobs (`max_hosts` and, for hybrid, the action's latency
  objective) are written to the pool config the scaler reads and given to the simulator; the
  simulator calls the policy on ticks only, at most `max_starts_per_tick` starts a tick, no
  routed containers to start (the routers run before the slice begins), the routed overhead on
  each activation, cold starts and memory from the calibration file.
* **Recorded**: each activation's latency from its scheduled arrival to its answer; host starts
  (the backend) and when each host turned warm (registry, every 50 ms); activations waiting for a
  slot (the routers' waiting set per pool, every 50 ms); PSS of all host containers every second.
* **Compared** (`errors`): model loads, cold starts, p50, p99, memory GB·s and peak memory, as
  |sim − live| / live per metric and policy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from trace.actions import model_action
from trace.config import GIB, LIVE_MODEL, log
from typing import Any

from lib.hosts import ScalerRig, docker_backend, wait_until
from lib.load import http_json, open_loop
from lib.report import pct, rnd, table
from lib.targets import IMAGE, DockerEngine, LocalProcess, start_runtime
from scaler.burst import CountingBackend
from scaler.burst_report import memory_seconds
from scaler.config import guest_env
from warmwhisk_protocol.host import Env
from warmwhisk_scaler.policy import POLICIES
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_sim.calibration import Calibration
from warmwhisk_sim.cluster import TraceRun, build_run, run_variant
from warmwhisk_sim.engine import Cluster, EngineSettings
from warmwhisk_sim.mapping import map_functions, slice_functions
from warmwhisk_sim.metrics import run_metrics
from warmwhisk_sim.traces import TraceFunction
from warmwhisk_sim.variants import HYBRID, OPENWHISK, Variant

POLICIES_LIVE = ("hybrid", "openwhisk")
COMPARED = ("model_loads", "cold_starts", "p50_s", "p99_s", "memory_gb_s", "peak_memory_gb")
POLL_S = 0.05
MAX_STARTS_PER_TICK = 4  # the scaler's default (WARMWHISK_SCALER_MAX_STARTS_PER_TICK)


@dataclass(frozen=True)
class SliceSpec:
    start_minute: int
    minutes: int
    compress: float
    # Most hosts per pool, in both the live scaler and the simulator.
    max_hosts: int
    # Function choice: most offered load (concurrent activations) and median run time.
    max_concurrency: float = 1.5
    max_duration_s: float = 2.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SliceSpec:
        return cls(args.live_start_minute, args.live_minutes, args.live_compress, args.live_max_hosts)


def slice_run(
    functions: list[TraceFunction],
    calibration: Calibration,
    spec: SliceSpec,
    seed: int,
    models_dir: Path | None,
) -> TraceRun:
    """The slice's actions (each mapping the live model, shared by all) and their activations."""
    chosen = slice_functions(
        map_functions(functions, calibration),
        start_minute=spec.start_minute,
        minutes=spec.minutes,
        compress=spec.compress,
        max_concurrency=spec.max_concurrency,
        max_duration_s=spec.max_duration_s,
    )
    if not chosen:
        raise SystemExit(f"no function of the trace fits a live slice of {spec}")
    run = build_run(
        functions,
        calibration,
        seed=seed,
        start_minute=spec.start_minute,
        minutes=spec.minutes,
        compress=spec.compress,
        only=[a.fn.hash_function for a in chosen],
    )
    size = live_model_mb(calibration, models_dir)
    actions = tuple(replace(a, model_mb=size, model_id=LIVE_MODEL) for a in run.actions)
    return replace(run, actions=actions)


def live_model_mb(calibration: Calibration, models_dir: Path | None) -> float:
    """Size of the live model's weights: the file's, or the calibration's record of it."""
    if models_dir is not None and (models_dir / LIVE_MODEL / "model.safetensors").is_file():
        return (models_dir / LIVE_MODEL / "model.safetensors").stat().st_size / 1e6
    return next(p.size_mb for p in calibration.host_start if p.model == LIVE_MODEL)


def live_variant(policy: str, spec: SliceSpec) -> Variant:
    """The policy as the live scaler runs it: its defaults, the slice's host cap, ticks only."""
    base = {"hybrid": HYBRID, "openwhisk": OPENWHISK}[policy]
    return replace(
        base,
        knobs=(("max_hosts", spec.max_hosts),),
        runtime="warmwhisk",
        batching=False,
        ticks_only=True,
        evicts=False,
    )


def knobs_of(config: Any) -> dict[str, Any]:
    """The fields of a policy config that differ from the policy's defaults (a pool config's knobs)."""
    defaults = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if getattr(config, f.name) != getattr(defaults, f.name)
    }


# --- the prediction ---------------------------------------------------------------------------------


def predict(run: TraceRun, policy: str, spec: SliceSpec) -> dict[str, Any]:
    """The simulator's figures for the slice under `policy`, configured as the live run is."""
    settings = EngineSettings(ticks_only=True, max_starts_per_tick=MAX_STARTS_PER_TICK)
    out = run_variant(run, live_variant(policy, spec), Cluster(), settings=settings, sleep=True, routed=False)
    return run_metrics(run, out)


def errors(live: dict[str, Any], sim: dict[str, Any]) -> dict[str, float | None]:
    """|sim − live| / live per compared metric (0 when both are 0; None when live is 0 alone)."""
    out: dict[str, float | None] = {}
    for key in COMPARED:
        a, b = live.get(key), sim.get(key)
        if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
            out[key] = None
        elif a == 0:
            out[key] = 0.0 if b == 0 else None
        else:
            out[key] = abs(b - a) / abs(a)
    return out


# --- the live run -----------------------------------------------------------------------------------


@dataclass
class Seen:
    """What one live run recorded, times in seconds since its start."""

    t0: float = field(default_factory=time.perf_counter)
    wall0: float = field(default_factory=time.time)
    pss: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # burst_report's sample shape
    warm_at: dict[str, float] = field(default_factory=dict)
    waits: dict[tuple[str, bytes], list[float]] = field(default_factory=dict)  # (pool, id) -> [first, last]
    results: list[tuple[int, float, float, bool]] = field(default_factory=list)  # pool, at, latency, ok
    errors: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0


class Watch:
    """Threads reading the host containers' PSS (every second) and, every POLL_S, the routers'
    waiting sets and the hosts' states."""

    def __init__(self, rig: ScalerRig, dock: DockerEngine, owner: str, keys: list[str], seen: Seen) -> None:
        self.rig, self.dock, self.owner, self.keys, self.seen = rig, dock, owner, keys, seen
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.memory, self.waiting)]
        for thread in self.threads:
            thread.start()

    def memory(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            while not self.stop.is_set():
                began = time.perf_counter()
                with contextlib.suppress(Exception):
                    pss, count = self.dock.owner_pss(self.owner, pool)
                    self.seen.pss.append((began - self.seen.t0, pss, count, 0, 0))
                self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

    def waiting(self) -> None:
        registry = self.rig.registry
        while not self.stop.is_set():
            now = self.seen.now()
            with contextlib.suppress(Exception):
                for key in self.keys:
                    for member in registry.redis.zrange(registry.keys.waiting(key), 0, -1):
                        self.seen.waits.setdefault((key, member), [now, now])[1] = now
                for record in registry.hosts():
                    if record.state == "warm":
                        self.seen.warm_at.setdefault(record.host_id, now)
            self.stop.wait(POLL_S)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def host_pool(host_id: str, keys: list[str]) -> str | None:
    """The pool a DockerBackend host id belongs to (the controller names hosts h-<sha1(pool)>-...)."""
    for key in keys:
        if host_id.startswith(f"h-{hashlib.sha1(key.encode()).hexdigest()[:8]}-"):
            return key
    return None


def live_once(
    run: TraceRun, policy: str, spec: SliceSpec, dock: DockerEngine, models_dir: Path, tmp: Path
) -> dict[str, Any]:
    """Replay the slice under `policy` on the real stack; the live figures."""
    owner = f"bench-trace-{policy}-{dock.run_id}"
    backend = CountingBackend(docker_backend(dock, owner))
    settings = {"backend": "docker", "image": IMAGE, "model_dir": str(models_dir), "host_memory_bytes": GIB}
    variant = live_variant(policy, spec)
    with ScalerRig(policy=policy, **settings) as rig, contextlib.ExitStack() as stack:
        routers: list[LocalProcess] = []
        keys: list[str] = []
        for action in run.actions:
            router = start_runtime(
                f"trace-router-{action.name}",
                tmp,
                {Env.MODE: "routed", Env.MAX_CONCURRENT: "256", Env.REGISTRY_URL: rig.url},
            )
            stack.callback(router.stop)
            name = f"trace-{action.name}"
            router.init(model_action(LIVE_MODEL), guest_env(name), timeout=120, name=name)
            key = next(k for k in rig.registry.registered_actions() if f"/{name}@" in k)
            rig.configure(key, PoolConfig(knobs=knobs_of(variant.config(action))))
            routers.append(router)
            keys.append(key)
        rig.start(backend, f"bench-trace-{policy}", lambda: dock.remove_labelled(f"warmwhisk.owner={owner}"))
        wait_until(lambda: rig.controller.ticks >= 2, 20, "the control loop")
        seen = Seen()
        watch = Watch(rig, dock, owner, keys, seen)
        try:
            drive(run, routers, seen)
        finally:
            watch.close()
        t_end = seen.now()
    return analyse(run, policy, backend, keys, seen, t_end)


def drive(run: TraceRun, routers: list[LocalProcess], seen: Seen) -> None:
    """Every activation of the slice at its (compressed) arrival time, open loop; then wait for
    the last answers (each at most its timeout after its arrival) and the end of the slice."""
    schedule = sorted(
        (float(t), pool, float(d))
        for pool, (arrivals, durations) in enumerate(zip(run.arrivals, run.durations, strict=True))
        for t, d in zip(arrivals, durations, strict=True)
    )
    work = {(pool, t): d for t, pool, d in schedule}

    def activation(phase: str, at: float) -> None:
        pool = int(phase)
        ok = False
        timeout = run.actions[pool].timeout_s
        try:
            body = {
                "value": {"duration_s": work[(pool, at)]},
                "deadline": str(int((time.time() + timeout) * 1000)),
            }
            status, answer = http_json(routers[pool].port, "POST", "/run", body, timeout=timeout + 30)
            ok = status == 200 and isinstance(answer, dict) and "error" not in answer
            if not ok and len(seen.errors) < 5:
                seen.errors.append(f"{status} {str(answer)[:200]}")
        except Exception as exc:  # noqa: BLE001 - counted as an error
            if len(seen.errors) < 5:
                seen.errors.append(repr(exc)[:200])
        seen.results.append((pool, at, seen.now() - at, ok))

    log(f"live: {len(schedule)} activations over {run.horizon_s:.0f} s")
    open_loop([(str(pool), t) for t, pool, _ in schedule], activation, seen.t0)
    # open_loop waits at most 200 s after the start; the slowest answers may come later.
    last = max((t + run.actions[pool].timeout_s + 30 for t, pool, _ in schedule), default=0.0)
    while len(seen.results) < len(schedule) and seen.now() < last:
        time.sleep(0.2)
    # The simulated run lasts at least the slice (memory is integrated to its end): so does this.
    while seen.now() < run.horizon_s:
        time.sleep(0.2)


def analyse(
    run: TraceRun, policy: str, backend: CountingBackend, keys: list[str], seen: Seen, t_end: float
) -> dict[str, Any]:
    """The live figures, defined as the simulator's (`warmwhisk_sim.metrics`)."""
    starts: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    for host_id, started in backend.started.items():
        pool = host_pool(host_id, keys)
        if pool is not None:
            starts[pool].append((started - seen.wall0, seen.warm_at.get(host_id, math.inf)))
    cold = 0
    for (pool, _), (first, last) in seen.waits.items():
        if any(s < last + POLL_S and up > first for s, up in starts[pool]):
            cold += 1
    ok = [lat for _, _, lat, good in seen.results if good]
    return {
        "policy": policy,
        "invocations": len(seen.results),
        "errors": sum(1 for *_, good in seen.results if not good),
        "error_examples": seen.errors,
        "model_loads": len(backend.started),
        "cold_starts": cold,
        "waited": len(seen.waits),
        "p50_s": pct(ok, 50),
        "p99_s": pct(ok, 99),
        "memory_gb_s": memory_seconds(seen.pss, t_end, t_end) / 1e9,
        "peak_memory_gb": max((p for _, p, *_ in seen.pss), default=0) / 1e9,
        "run_s": t_end,
        "memory_samples": len(seen.pss),
        "hosts_per_pool": {k: len(v) for k, v in starts.items()},
        # Start → warm of the hosts that turned warm (s): the cold start the simulator takes from
        # the calibration, as it was during this run.
        "host_cold_start_s": sorted(
            rnd(up - s, 2) for v in starts.values() for s, up in v if math.isfinite(up)
        ),
        "timeline": [[rnd(t, 1), c, rnd(p / 1e9, 3)] for t, p, c, *_ in seen.pss],
    }


# --- the section ------------------------------------------------------------------------------------


def section(
    args: argparse.Namespace,
    functions: list[TraceFunction],
    calibration: Calibration,
    dock: DockerEngine,
    models_dir: Path,
    tmp: Path,
) -> dict[str, Any]:
    spec = SliceSpec.from_args(args)
    run = slice_run(functions, calibration, spec, args.seed, models_dir)
    described = [
        f"{a.name} ({a.tercile}, {a.fn.trigger}, {a.fn.total} invocations in the trace, "
        f"{int(arr.size)} in the slice, median {a.fn.duration_percentiles[3]:.3f} s)"
        for a, arr in zip(run.actions, run.arrivals, strict=True)
    ]
    log(
        f"live slice: minutes {spec.start_minute}-{spec.start_minute + spec.minutes} / {spec.compress:g}: "
        f"{described}"
    )
    out: dict[str, Any] = {"slice": {**spec.__dict__, "functions": described, "invocations": run.invocations}}
    for policy in POLICIES_LIVE:
        if policy not in POLICIES:
            continue
        began = time.monotonic()
        live = live_once(run, policy, spec, dock, models_dir, tmp)
        sim = predict(run, policy, spec)
        sim_view = {k: sim[k] for k in (*COMPARED, "invocations", "dropped_or_timed_out")}
        out[policy] = {"live": live, "sim": sim_view, "errors": errors(live, sim)}
        log(
            f"live [{policy}]: {live['model_loads']} hosts, {live['cold_starts']} cold, p50 {live['p50_s']}, "
            f"p99 {live['p99_s']}, {live['memory_gb_s']:.1f} GB*s, {live['errors']} errors "
            f"({time.monotonic() - began:.0f} s); sim: {sim['model_loads']} hosts, {sim['cold_starts']} cold"
        )
    worst = [e for p in POLICIES_LIVE if p in out for e in out[p]["errors"].values()]
    out["max_error"] = None if any(e is None for e in worst) or not worst else max(worst)
    live_table(out)
    return out


COMPARISON_HEADER = [
    "metric",
    "hybrid live",
    "hybrid sim",
    "error",
    "openwhisk live",
    "openwhisk sim",
    "error",
]


def comparison_rows(out: dict[str, Any], number: Callable[[Any], Any]) -> list[list[Any]]:
    """One row per compared metric: each policy's live figure, the simulated one (written by
    ``number``) and the relative error (COMPARISON_HEADER's columns)."""
    rows = []
    for key in COMPARED:
        row: list[Any] = [key]
        for policy in POLICIES_LIVE:
            r = out.get(policy)
            if r is None:
                row += ["-", "-", "-"]
                continue
            error = r["errors"][key]
            row += [number(r["live"][key]), number(r["sim"][key]), "-" if error is None else f"{error:.0%}"]
        rows.append(row)
    return rows


def live_table(out: dict[str, Any]) -> None:
    rows = comparison_rows(out, lambda x: rnd(x, 3))
    s = out["slice"]
    table(
        "Live slice on the real stack vs the simulator's prediction",
        COMPARISON_HEADER,
        rows,
        [
            f"minutes {s['start_minute']}-{s['start_minute'] + s['minutes']} of the trace "
            f"compressed {s['compress']:g}x, "
            f"{s['invocations']} activations, max_hosts {s['max_hosts']} per pool",
            *(f"  {f}" for f in s["functions"]),
            "max error: " + ("-" if out["max_error"] is None else f"{out['max_error']:.0%}"),
        ],
    )
