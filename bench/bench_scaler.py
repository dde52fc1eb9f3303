"""Benchmarks of the scaler path: slot routing, routed-mode overhead, routed cold start, and a
burst + ramp on real containers under the hybrid policy against OpenWhisk's default policy.

Everything is measured side by side in ONE run on this machine; each section starts its own
password-protected redis-server on a free loopback port (no persistence).

1. registry   `acquire + release` of one slot on loopback Redis: `bench/bench_registry.py`, run as
              it is (its table is relayed; its JSON gives `acquire_release_p50_ms`).
2. overhead   The trivial action `def main(args): return args` (bench_runtime's), value {"x": 1}:
              a direct-mode runtime running it, against a routed-mode runtime forwarding every
              activation to one warm model host. All three are local processes
              (`python -m warmwhisk_runtime`, loopback); the host is started by a Controller
              (ProcessBackend, pool pinned to 1 host, per-host limit 16). Client: bench_runtime's
              `measure`/`http_worker` (one keep-alive http.client connection per client thread,
              every request timed); c=1 and c=8; rounds interleave direct and routed (the order
              rotates each round); medians of the per-round p50/p99. `routed_extra_p50_ms` is the
              c=1 figure (per-activation cost); c=8 is reported beside it.
3. coldstart  Time from `docker run` (docker SDK: create + start) of a NEW container to its first
              /run answer: the action port accepts a connection -> /init -> /run.
                routed: WARMWHISK_MODE=routed; /init registers the action (examples/bert `main`),
                        /run is forwarded to a warm model host that already holds bert-base (a
                        container started by a Controller with DockerBackend, pool pinned to 1).
                stock:  a direct-mode container whose action, at /init, imports torch, builds the
                        module on the meta device and loads a COPY of the weights with
                        `safetensors.torch.load_file` + `load_state_dict(assign=True)` (what
                        Hugging Face's `from_pretrained` does; cheaper than torch.load into an
                        initialised module, so the ratio is conservative), then answers /run.
              Both mount build/models read-only at /models; one untimed warm-up of each, then
              repetitions alternate routed/stock; medians.
4. burst      Real model-host containers (DockerBackend), driven by a Controller thread, once with
              `ScalerSettings(policy="hybrid")` and once with `policy="openwhisk"`; policy defaults
              otherwise, capped by the pool knob `max_hosts` (pool_config) and a per-host memory
              limit. Entry point: one routed-mode runtime (local process). Workload (identical for
              both, open loop): a burst of N concurrent activations at t=0, plus a linear ramp of
              arrivals from r0 to r1 req/s over D seconds. Action: examples/bert `main` at
              sequence 16 (default) or examples/digits. Per policy: containers created, cold
              starts (activations that found no free slot and waited while a host of the pool was
              starting: the routers' waiting set in Redis is read every 50 ms), p50/p99 end-to-end
              latency (from the scheduled arrival), errors, peak memory (sum of the PSS of every
              process of every host container, host PIDs from `docker top`, sampled every second)
              and memory-seconds (that sum integrated until the last answer).

stdout: the tables, then as its LAST line a one-line JSON summary (progress goes to stderr).
Full results: build/bench/scaler.json. Containers carry the labels `warmwhisk.bench=1` and
`warmwhisk.bench.run=<run id>` and are removed at the end, on errors and on SIGTERM too.
Usage: .venv/bin/python bench/bench_scaler.py [--quick] [--sections registry,overhead,coldstart,burst]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RUNTIME_SRC = REPO / "action-runtime"
SCALER_SRC = REPO / "scaler-service"
for _path in (BENCH, RUNTIME_SRC, SCALER_SRC):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from warmwhisk_scaler.keys import RedisKeys  # noqa: E402
from warmwhisk_scaler.redis_process import RedisProcess  # noqa: E402
from warmwhisk_scaler.registry import HostRecord, Registry, connect_redis  # noqa: E402

import bench_runtime  # noqa: E402  (its client: measure / http_worker, and its server processes)
from report import free_port, loadavg, rnd, table  # noqa: E402
from warmwhisk_runtime.procmem import total_pss_bytes  # noqa: E402
from warmwhisk_scaler import pool_config  # noqa: E402
from warmwhisk_scaler.backends import HostSpec, ProcessBackend, RunningHost  # noqa: E402
from warmwhisk_scaler.controller import Controller, ControlLoop  # noqa: E402
from warmwhisk_scaler.settings import ScalerSettings  # noqa: E402

IMAGE = os.environ.get("WARMWHISK_IMAGE", "warmwhisk/runtime:dev")
BENCH_LABEL = "warmwhisk.bench"
RUN_LABEL = "warmwhisk.bench.run"
CONTAINER_PYTHON = ("/opt/warmwhisk/bin/python", "-m", "warmwhisk_runtime")
HEADERS = {"Content-Type": "application/json"}
INIT_ENV = {"__OW_NAMESPACE": "guest"}
GIB = 1024**3

TARGETS = {  # key: (comparison, bound)
    "acquire_release_p50_ms": ("<=", 0.3),
    "routed_extra_p50_ms": ("<=", 1.5),
    "routed_cold_start_ratio_vs_stock": ("<=", 0.3),
}
SLOW_S = 1.0  # activations at least this slow are counted apart
WAIT_POLL_S = 0.05  # how often the waiting activations (Redis) and the hosts' states are read

# What a stock OpenWhisk Python action does at /init: import torch, build the module, load its own
# copy of the weights. Here the cheapest stock way (meta-device module + safetensors copy, as
# Hugging Face's from_pretrained): the comparison does not hinge on a slow stock loader.
STOCK_ACTION = """
import importlib.util

import torch
from safetensors.torch import load_file

_spec = importlib.util.spec_from_file_location("bert_model", "/models/bert-base/model.py")
_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_code)
with torch.device("meta"):
    model = _code.build()
model.load_state_dict(load_file("/models/bert-base/model.safetensors"), assign=True)
model.eval()


def main(args):
    length = int(args.get("length", 16))
    ids = [(1 + 31 * position) % model.config.vocab_size for position in range(length)]
    with torch.inference_mode():
        vector = model.embed(*model.pad([ids]), normalize=False)[0]
    head = [round(v, 6) for v in vector[:4].tolist()]
    return {"tokens": length, "head": head, "norm": float(vector.norm())}
"""


# ------------------------------------------------------------------------------------ helpers
def runtime_argv(port: int, metrics_port: int) -> list[str]:
    """A local runtime process on loopback (its mode comes from the environment)."""
    return [sys.executable, "-m", "warmwhisk_runtime", "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(metrics_port)]  # fmt: skip


def log(message: str) -> None:
    print(f"[bench-scaler {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def http_json(port: int, path: str, body: Any, timeout: float = 120.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body).encode(), HEADERS)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def deadline_ms(seconds: float) -> str:
    return str(int((time.time() + seconds) * 1000))


def wait_port(port: int, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    end = time.monotonic() + timeout_s
    checked = time.monotonic()
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            pass
        if time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            if not alive():
                raise RuntimeError(f"the runtime on port {port} exited during start-up")
        time.sleep(0.003)
    raise RuntimeError(f"port {port} did not open within {timeout_s}s")


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants (Linux /proc)."""
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pid_listening_on(port: int) -> int | None:
    """The process whose command line says `--port <port>` (a runtime started by a backend)."""
    needle = f"--port\0{port}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


Loop = ControlLoop  # one replica: a controller ticking in a thread


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


def scaler_settings(redis: RedisProcess, **overrides: Any) -> ScalerSettings:
    return ScalerSettings(redis_url=redis.url, host_redis_url=redis.url, token="bench", **overrides)


def registry_for(redis: RedisProcess, settings: ScalerSettings) -> Registry:
    return Registry(
        connect_redis(redis.url), RedisKeys(settings.prefix), heartbeat_ttl_s=settings.heartbeat_ttl_s
    )


def warm_hosts(registry: Registry, key: str, count: int, limit: int | None = None) -> list[HostRecord]:
    hosts = [h for h in registry.hosts() if key in h.actions and h.state == "warm"]
    if limit is not None:
        hosts = [h for h in hosts if h.scaler_limit == limit]
    return hosts if len(hosts) >= count else []


# ------------------------------------------------------------------------------------- docker
class Docker:
    """The engine, and every container this run started (all removed by `cleanup`)."""

    def __init__(self, run_id: str) -> None:
        import docker

        self.run_id = run_id
        self.client = docker.from_env()
        self.client.ping()
        try:
            self.client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            raise SystemExit(f"image {IMAGE} is missing; run `make image`") from None
        self.labels = {BENCH_LABEL: "1", RUN_LABEL: run_id}

    def run(self, port: int, metrics_port: int, env: dict[str, str], models_dir: Path) -> Any:
        return self.client.containers.run(
            IMAGE,
            command=[
                *CONTAINER_PYTHON,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
            ],
            environment=env,
            network_mode="host",
            volumes={str(models_dir): {"bind": "/models", "mode": "ro"}},
            labels=self.labels,
            detach=True,
        )

    def backend(self, owner: str) -> Any:
        from warmwhisk_scaler.backends.docker_backend import DockerBackend

        return DockerBackend(self.client, IMAGE, owner=owner, extra_labels=self.labels, stop_timeout_s=2)

    def pss(self, owner: str, pool: ThreadPoolExecutor) -> tuple[int, int]:
        """(total PSS of every process of this owner's running containers, container count)."""
        summaries = self.client.api.containers(
            filters={"label": [f"warmwhisk.owner={owner}"], "status": "running"}
        )

        def one(summary: dict[str, Any]) -> int:
            try:
                rows = self.client.api.top(summary["Id"], ps_args="-o pid")["Processes"] or []
            except Exception:  # noqa: BLE001 - stopped meanwhile
                return 0
            return total_pss_bytes([int(row[0]) for row in rows])

        return sum(pool.map(one, summaries)), len(summaries)

    def cleanup(self) -> int:
        found = self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"})

        def remove(container: Any) -> None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, found))
        return len(found)


# --------------------------------------------------------------------------- 1. registry
def section_registry(args: argparse.Namespace) -> dict[str, Any]:
    """bench_registry.py, run as it is: its table relayed, its JSON summary returned."""
    argv = [sys.executable, str(BENCH / "bench_registry.py")]
    argv += ["--requests", "1000", "--warmup", "200", "--rounds", "1"] if args.quick else []
    log(f"registry: {' '.join(argv[1:])}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_registry.py exited {done.returncode}: {done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    print("\n## 1. Registry: slot acquire + release on loopback Redis (bench/bench_registry.py)")
    for line in lines[:-1]:
        print(f"  {line}")
    return summary


# --------------------------------------------------------------------------- 2. overhead
def section_overhead(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rounds = 2 if args.quick else args.rounds
    counts = {1: 300, 8: 60} if args.quick else {1: 1500, 8: 300}
    warmup = 50 if args.quick else 200
    redis = RedisProcess().start()
    servers: list[bench_runtime.Server] = []
    loop: Loop | None = None
    backend: ProcessBackend | None = None
    try:
        pythonpath = {"PYTHONPATH": f"{RUNTIME_SRC}{os.pathsep}{SCALER_SRC}"}

        def start(name: str, env: dict[str, str]) -> bench_runtime.Server:
            port, metrics_port = free_port(), free_port()
            argv = runtime_argv(port, metrics_port)
            server = bench_runtime.Server(
                name, argv, bench_runtime.child_env({**pythonpath, **env}), port, tmp
            )
            servers.append(server)
            server.wait_ready()
            init = {
                "value": {
                    "name": "bench",
                    "main": "main",
                    "code": bench_runtime.ACTION_CODE,
                    "binary": False,
                    "env": {**INIT_ENV, "__OW_ACTION_NAME": "/guest/bench"},
                }
            }
            status, body = server.post("/init", json.dumps(init).encode())
            if status != 200:
                raise RuntimeError(f"{name} /init answered {status}: {body!r}\n{server.tail()}")
            return server

        direct = start("direct", {"__OW_ALLOW_CONCURRENT": "true"})
        routed = start("routed", {"WARMWHISK_MODE": "routed", "WARMWHISK_ROUTER_URL": redis.url})
        settings = scaler_settings(redis, backend="process", state_dir=str(tmp / "hosts"))
        registry = registry_for(redis, settings)
        (key,) = registry.registered_actions()
        host_limit = 16
        pool_config.save(
            registry.redis,
            registry.keys,
            key,
            pool_config.PoolConfig(knobs={"initial_limit": host_limit}, manual_hosts=1),
        )
        backend = ProcessBackend(
            settings.state_dir, pythonpath=pythonpath["PYTHONPATH"], owner=f"bench-{uuid.uuid4().hex[:8]}"
        )
        loop = Loop(Controller(registry, backend, settings, holder_id="bench-overhead"))
        (host,) = wait_until(
            lambda: warm_hosts(registry, key, 1, host_limit), 60, "a warm host with limit 16"
        )
        host_pid = pid_listening_on(int(host.address.rpartition(":")[2]))
        log(f"overhead: direct :{direct.port}, routed :{routed.port} -> host {host.host_id} ({host.address})")

        class Pair:
            """CPU of the routed path: the router's processes and the host's (kept apart too)."""

            def __init__(self) -> None:
                self.readings: list[tuple[float, float]] = []

            def cpu_seconds(self) -> float:
                router = cpu_seconds(tree_pids(routed.process.pid))
                host_cpu = cpu_seconds(tree_pids(host_pid)) if host_pid else 0.0
                self.readings.append((router, host_cpu))
                return router + host_cpu

        class Single:
            def cpu_seconds(self) -> float:
                return cpu_seconds(tree_pids(direct.process.pid))

        targets = {"direct": (direct, Single()), "routed": (routed, Pair())}
        per_round: dict[tuple[str, int], list[dict[str, float]]] = {}
        for round_no in range(rounds):
            order = ["direct", "routed"] if round_no % 2 == 0 else ["routed", "direct"]
            for concurrency in (1, 8):
                for name in order:
                    server, cpu = targets[name]
                    port = server.port
                    worker = lambda n, w, b, o, port=port: bench_runtime.http_worker(port, n, w, b, o)  # noqa: E731
                    result = bench_runtime.measure(worker, concurrency, counts[concurrency], warmup, cpu)
                    if isinstance(cpu, Pair) and len(cpu.readings) >= 2:
                        (r0, h0), (r1, h1) = cpu.readings[-2:]
                        n = concurrency * counts[concurrency]
                        result["router_cpu_us"], result["host_cpu_us"] = (
                            (r1 - r0) / n * 1e6,
                            (h1 - h0) / n * 1e6,
                        )
                    per_round.setdefault((name, concurrency), []).append(result)
                    log(
                        f"overhead round {round_no + 1}/{rounds} {name:<6} c={concurrency}: p50 "
                        f"{result['p50_ms']:.3f} ms p99 {result['p99_ms']:.3f} ms {result['rate']:.0f}/s "
                        f"server cpu {result.get('server_cpu_us', 0):.0f} us/req"
                    )
        stats = registry.pool_stats(key)
    finally:
        if loop is not None:
            loop.stop()
        if backend is not None:
            backend.reconcile(lambda host: False)
        for server in servers:
            server.stop()
        redis.close()

    metrics = ("p50_ms", "p99_ms", "rate", "server_cpu_us", "client_cpu_us", "router_cpu_us", "host_cpu_us")
    medians = {
        k: {m: statistics.median(r.get(m, 0.0) for r in v) for m in metrics} for k, v in per_round.items()
    }
    extra = {
        c: [
            r["p50_ms"] - d["p50_ms"]
            for r, d in zip(per_round[("routed", c)], per_round[("direct", c)], strict=True)
        ]
        for c in (1, 8)
    }
    rows = []
    for concurrency in (1, 8):
        for name in ("direct", "routed"):
            m = medians[(name, concurrency)]
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
        d, r = medians[("direct", concurrency)], medians[("routed", concurrency)]
        rows.append(
            [
                f"routed - direct c={concurrency}",
                f"{r['p50_ms'] - d['p50_ms']:+.3f}",
                f"{r['p99_ms'] - d['p99_ms']:+.3f}",
                f"{r['rate'] / d['rate']:.2f}x",
                f"{r['server_cpu_us'] - d['server_cpu_us']:+.0f}",
            ]
        )
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
    return {
        "routed_extra_p50_ms_c1": rnd(medians[("routed", 1)]["p50_ms"] - medians[("direct", 1)]["p50_ms"], 4),
        "routed_extra_p50_ms_c8": rnd(medians[("routed", 8)]["p50_ms"] - medians[("direct", 8)]["p50_ms"], 4),
        "routed_extra_p50_ms_c1_median_of_round_diffs": rnd(statistics.median(extra[1]), 4),
        "routed_extra_p50_ms_c8_median_of_round_diffs": rnd(statistics.median(extra[8]), 4),
        "routed_extra_p99_ms_c1": rnd(medians[("routed", 1)]["p99_ms"] - medians[("direct", 1)]["p99_ms"], 4),
        "routed_extra_p99_ms_c8": rnd(medians[("routed", 8)]["p99_ms"] - medians[("direct", 8)]["p99_ms"], 4),
        "medians": {f"{n}_c{c}": {m: rnd(v, 4) for m, v in r.items()} for (n, c), r in medians.items()},
        "per_round_p50_ms": {
            f"{n}_c{c}": [rnd(r["p50_ms"], 4) for r in v] for (n, c), v in per_round.items()
        },
        "rounds": rounds,
        "requests": {"c1": counts[1], "c8": f"8x{counts[8]}", "warmup": warmup},
        "host_limit": host_limit,
        "pool_completed": stats.completed,
    }


# -------------------------------------------------------------------------- 3. cold start
def bert_init_body(code: str, name: str) -> dict[str, Any]:
    env = {**INIT_ENV, "__OW_ACTION_NAME": f"/guest/{name}"}
    return {"value": {"name": name, "main": "main", "code": code, "binary": False, "env": env}}


def cold_start_once(
    dock: Docker, models_dir: Path, env: dict[str, str], init: dict[str, Any]
) -> dict[str, float]:
    port, metrics_port = free_port(), free_port()
    t0 = time.perf_counter()
    container = dock.run(port, metrics_port, env, models_dir)
    try:
        t_started = time.perf_counter()

        def alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        wait_port(port, 120, alive)
        t_port = time.perf_counter()
        status, body = http_json(port, "/init", init, timeout=300)
        if status != 200:
            raise RuntimeError(f"/init answered {status} {body}: {container.logs()[-2000:]!r}")
        t_init = time.perf_counter()
        status, body = http_json(
            port, "/run", {"value": {"length": 16}, "deadline": deadline_ms(120)}, timeout=150
        )
        t_run = time.perf_counter()
        if status != 200 or not isinstance(body, dict) or "error" in body or body.get("tokens") != 16:
            raise RuntimeError(f"/run answered {status} {body}: {container.logs()[-2000:]!r}")
        return {
            "run_s": t_started - t0,
            "port_s": t_port - t_started,
            "init_s": t_init - t_port,
            "first_run_s": t_run - t_init,
            "total_s": t_run - t0,
        }
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def section_coldstart(args: argparse.Namespace, dock: Docker, models_dir: Path) -> dict[str, Any]:
    reps = 2 if args.quick else args.reps
    code = (REPO / "examples" / "bert" / "__main__.py").read_text()
    routed_init, stock_init = bert_init_body(code, "bert"), bert_init_body(STOCK_ACTION, "bert-stock")
    redis = RedisProcess().start()
    loop: Loop | None = None
    backend = None
    samples: dict[str, list[dict[str, float]]] = {"routed": [], "stock": []}
    try:
        settings = scaler_settings(
            redis,
            backend="docker",
            image=IMAGE,
            model_dir=str(models_dir),
            host_memory_bytes=args.host_memory_gib * GIB,
        )
        registry = registry_for(redis, settings)
        routed_env = {"WARMWHISK_MODE": "routed", "WARMWHISK_ROUTER_URL": redis.url}
        # Register the action the way every routed container does: one /init (untimed, no host yet).
        port, metrics_port = free_port(), free_port()
        first = dock.run(port, metrics_port, routed_env, models_dir)
        try:
            wait_port(port, 120)
            status, body = http_json(port, "/init", routed_init)
            if status != 200:
                raise RuntimeError(f"routed /init answered {status} {body}")
        finally:
            first.remove(force=True)
        (key,) = registry.registered_actions()
        pool_config.save(
            registry.redis,
            registry.keys,
            key,
            pool_config.PoolConfig(knobs={"initial_limit": 4}, manual_hosts=1),
        )
        backend = dock.backend(f"bench-cold-{dock.run_id}")
        loop = Loop(Controller(registry, backend, settings, holder_id="bench-coldstart"))
        started = time.monotonic()
        (host,) = wait_until(lambda: warm_hosts(registry, key, 1), 180, "the bert model host to be warm")
        log(
            f"coldstart: host {host.host_id} warm after {time.monotonic() - started:.1f} s "
            f"(model load {host.model_load_s} s, PSS {host.memory_bytes / 1e6:.0f} MB)"
        )
        stock_env: dict[str, str] = {}
        order = [("routed", routed_env, routed_init), ("stock", stock_env, stock_init)]
        for rep in range(reps + 1):  # rep 0: untimed warm-up of each
            for name, env, init in order if rep % 2 == 0 else order[::-1]:
                result = cold_start_once(dock, models_dir, env, init)
                if name == "routed":  # the forward's round trip to the host, as the router timed it
                    result["host_s"] = registry.pool_stats(key).recent_ms[0] / 1000.0
                log(
                    f"coldstart {'warm-up' if rep == 0 else f'rep {rep}/{reps}'} {name}: total "
                    f"{result['total_s']:.2f} s (run {result['run_s']:.2f}, port {result['port_s']:.2f}, "
                    f"init {result['init_s']:.2f}, first run {result['first_run_s']:.2f}) load {loadavg()}"
                )
                if rep:
                    samples[name].append(result)
        host_pss = registry.host(host.host_id)
    finally:
        if loop is not None:
            loop.stop()
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.reconcile(lambda h: False)
        redis.close()

    phases = ("run_s", "port_s", "init_s", "first_run_s", "total_s")
    medians = {
        n: {p: med([x[p] for x in v if p in x]) for p in (*phases, "host_s")} for n, v in samples.items()
    }
    ratio = medians["routed"]["total_s"] / medians["stock"]["total_s"]

    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows = [
        [
            n,
            *(cell(medians[n][p]) for p in (*phases[:4], "host_s", "total_s")),
            ", ".join(f"{x['total_s']:.2f}" for x in samples[n]),
        ]
        for n in ("routed", "stock")
    ]
    rows.append(["routed / stock", "", "", "", "", "", f"{ratio:.3f}", ""])
    table(
        "3. Cold start of a new container: docker run -> first /run answer (bert-base, 340 MB)",
        [
            "container",
            "docker run s",
            "-> port s",
            "-> /init s",
            "-> /run s",
            "(host part s)",
            "total s",
            "each total s",
        ],
        rows,
        [
            f"median of {reps} repetitions (after one untimed warm-up each), alternating routed/stock",
            "routed: WARMWHISK_MODE=routed, /init registers examples/bert `main`, /run forwarded to a warm "
            "host (Controller + DockerBackend, pool pinned to 1 host) that already holds the model",
            "stock: direct mode; /init imports torch, builds the module on the meta device and loads a copy "
            "of the weights (safetensors.torch.load_file + load_state_dict(assign=True)); then /run",
            '/run: {"length": 16} in both; host part: the forward\'s round trip to the warm host, as the '
            "router timed it (the rest of -> /run is the new container's own first-request cost)",
        ],
    )
    return {
        "routed_cold_start_ratio_vs_stock": rnd(ratio, 4),
        "medians_s": {n: {p: rnd(v, 4) for p, v in m.items()} for n, m in medians.items()},
        "samples_total_s": {n: [rnd(s["total_s"], 4) for s in v] for n, v in samples.items()},
        "reps": reps,
        "stock_loader": "meta-device build + safetensors.torch.load_file copy + load_state_dict(assign=True)",
        "warm_host_pss_mb": None if host_pss is None else rnd(host_pss.memory_bytes / 1e6, 1),
    }


# ------------------------------------------------------------------------------- 4. burst
def ramp_times(r0: float, r1: float, duration_s: float) -> list[float]:
    """Arrival times of a linear ramp from r0 to r1 req/s over duration_s (deterministic)."""
    a, b = (r1 - r0) / (2 * duration_s), r0
    total = int(b * duration_s + a * duration_s**2)
    times = []
    for k in range(1, total + 1):
        times.append(k / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * k)) / (2 * a))
    return times


def burst_once(
    args: argparse.Namespace, dock: Docker, models_dir: Path, policy: str, tmp: Path
) -> dict[str, Any]:
    quick = args.quick
    burst_n = 8 if quick else args.burst
    max_hosts = 6 if quick else args.max_hosts
    r0, r1, duration = (1.0, 3.0, 15.0) if quick else (args.ramp_from, args.ramp_to, args.ramp_seconds)
    if args.burst_action == "bert":
        code, value = (REPO / "examples" / "bert" / "__main__.py").read_text(), {"length": 16}
    else:
        code, value = (
            (REPO / "examples" / "digits" / "__main__.py").read_text(),
            {"pixels": [float(i % 17) for i in range(64)]},
        )
    redis = RedisProcess().start()
    router: bench_runtime.Server | None = None
    loop: Loop | None = None
    owner = f"bench-{policy}-{dock.run_id}"
    backend = CountingBackend(dock.backend(owner))
    samples: list[tuple[float, int, int, int, int]] = []  # (t, PSS bytes, containers, warm, max slots)
    warm_at: dict[str, float] = {}  # host id -> when first seen warm (s since t0)
    waits: dict[bytes, list[float]] = {}  # wait id -> [first, last seen] (s since t0)
    results: list[tuple[str, float, float, bool]] = []  # (phase, scheduled t, latency s, ok)
    error_examples: list[str] = []
    try:
        settings = scaler_settings(
            redis,
            backend="docker",
            image=IMAGE,
            model_dir=str(models_dir),
            policy=policy,
            host_memory_bytes=args.host_memory_gib * GIB,
            tick_s=0.5,
        )
        registry = registry_for(redis, settings)
        port, metrics_port = free_port(), free_port()
        argv = runtime_argv(port, metrics_port)
        env = bench_runtime.child_env(
            {
                "PYTHONPATH": f"{RUNTIME_SRC}{os.pathsep}{SCALER_SRC}",
                "WARMWHISK_MODE": "routed",
                "WARMWHISK_ROUTER_URL": redis.url,
                "WARMWHISK_MAX_CONCURRENT": "256",
            }
        )
        router = bench_runtime.Server(f"router-{policy}", argv, env, port, tmp)
        router.wait_ready()
        status, body = router.post("/init", json.dumps(bert_init_body(code, args.burst_action)).encode())
        if status != 200:
            raise RuntimeError(f"router /init answered {status}: {body!r}")
        (key,) = registry.registered_actions()
        pool_config.save(
            registry.redis, registry.keys, key, pool_config.PoolConfig(knobs={"max_hosts": max_hosts})
        )
        loop = Loop(Controller(registry, backend, settings, holder_id=f"bench-{policy}"))
        wait_until(lambda: loop.controller.ticks >= 2, 10, "the control loop")

        stop = threading.Event()
        t0 = time.perf_counter()
        wall0 = time.time()

        def sampler() -> None:
            with ThreadPoolExecutor(8) as pool:
                while not stop.is_set():
                    began = time.perf_counter()
                    with contextlib.suppress(Exception):
                        pss, count = dock.pss(owner, pool)
                        records = registry.hosts()
                        warm = sum(1 for r in records if r.state == "warm")
                        busiest = max((r.slots_in_use for r in records), default=0)
                        samples.append((began - t0, pss, count, warm, busiest))
                    stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

        def watcher() -> None:
            """Activations waiting for a slot (the routers' waiting set), and when hosts turn warm."""
            waiting_key = registry.keys.waiting(key)
            polls = 0
            while not stop.is_set():
                now = time.perf_counter() - t0
                with contextlib.suppress(Exception):
                    for member in registry.redis.zrange(waiting_key, 0, -1):
                        waits.setdefault(member, [now, now])[1] = now
                    if polls % 4 == 0:
                        for record in registry.hosts():
                            if record.state == "warm":
                                warm_at.setdefault(record.host_id, now)
                polls += 1
                stop.wait(WAIT_POLL_S)

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        watching = threading.Thread(target=watcher, daemon=True)
        watching.start()

        def activation(phase: str, scheduled: float) -> None:
            ok = False
            try:
                status, body = http_json(
                    port, "/run", {"value": value, "deadline": deadline_ms(120)}, timeout=150
                )
                ok = status == 200 and isinstance(body, dict) and "error" not in body
                if not ok and len(error_examples) < 5:
                    error_examples.append(f"{status} {str(body)[:200]}")
            except Exception as exc:  # noqa: BLE001 - counted as an error
                if len(error_examples) < 5:
                    error_examples.append(repr(exc)[:200])
            results.append((phase, scheduled, time.perf_counter() - t0 - scheduled, ok))

        schedule = [("burst", 0.0)] * burst_n + [("ramp", t) for t in ramp_times(r0, r1, duration)]
        log(
            f"burst [{policy}]: {burst_n} at t=0 + ramp {r0:g}->{r1:g} req/s over {duration:g} s "
            f"({len(schedule) - burst_n} arrivals), max_hosts {max_hosts}, "
            f"host memory {args.host_memory_gib} GiB"
        )
        # One daemon thread per activation (open loop): an interrupted run does not wait for them.
        clients = []
        for phase, at in schedule:
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                time.sleep(delay)
            client = threading.Thread(target=activation, args=(phase, at), daemon=True)
            client.start()
            clients.append(client)
        for client in clients:
            client.join(timeout=max(1.0, 200 - (time.perf_counter() - t0)))
        t_end = time.perf_counter() - t0
        stop.set()
        sampling.join(timeout=10)
        watching.join(timeout=10)
        status_now = loop.controller.status()
        decisions = [json.loads(e) for e in registry.redis.lrange(registry.keys.decisions, 0, -1)]
    finally:
        if loop is not None:
            loop.stop()
        removed = dock.client.containers.list(all=True, filters={"label": f"warmwhisk.owner={owner}"})

        def remove(container: Any) -> None:
            with contextlib.suppress(Exception):
                container.remove(force=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, removed))
        if router is not None:
            router.stop()
        redis.close()

    latencies = [r[2] for r in results]
    ok_latencies = [r[2] for r in results if r[3]]
    by_phase = {p: [r[2] for r in results if r[0] == p and r[3]] for p in ("burst", "ramp")}

    # Memory: rectangle rule over the samples (each holds until the next, or the end).
    def memory_seconds(until: float) -> float:
        total = 0.0
        for i, (t, pss, *_) in enumerate(samples):
            nxt = samples[i + 1][0] if i + 1 < len(samples) else t_end
            total += pss * max(0.0, min(nxt, until) - t)
        return total

    mem_s = memory_seconds(t_end)
    starts = {h: t - wall0 for h, t in backend.started.items()}
    warmups = [warm_at[h] - starts[h] for h in starts if h in warm_at]
    # A cold start: an activation that found no free slot and waited while a host of the pool was
    # starting (started before its wait ended, not warm before its wait began).
    starting = [(starts[h], warm_at.get(h, math.inf)) for h in starts]
    cold = [w for w in waits.values() if any(s < w[1] + WAIT_POLL_S and up > w[0] for s, up in starting)]
    timeline = [[rnd(t, 1), c, w, rnd(p / 1e6, 0), b] for t, p, c, w, b in samples]
    return {
        "policy": policy,
        "containers_created": len(backend.started),
        "cold_starts": len(cold),
        "waited_for_a_slot": len(waits),
        "slow_activations": sum(1 for x in latencies if x >= SLOW_S),
        "activations": len(results),
        "errors": sum(1 for r in results if not r[3]),
        "error_examples": error_examples,
        "p50_ms": rnd(1000 * pct(ok_latencies, 50), 1) if ok_latencies else None,
        "p99_ms": rnd(1000 * pct(ok_latencies, 99), 1) if ok_latencies else None,
        "burst_p50_ms": rnd(1000 * pct(by_phase["burst"], 50), 1) if by_phase["burst"] else None,
        "burst_max_ms": rnd(1000 * max(by_phase["burst"]), 1) if by_phase["burst"] else None,
        "ramp_p50_ms": rnd(1000 * pct(by_phase["ramp"], 50), 1) if by_phase["ramp"] else None,
        "ramp_p99_ms": rnd(1000 * pct(by_phase["ramp"], 99), 1) if by_phase["ramp"] else None,
        "max_latency_ms": rnd(1000 * max(latencies), 1) if latencies else None,
        "peak_memory_mb": rnd(max((s[1] for s in samples), default=0) / 1e6, 1),
        "memory_gb_s": rnd(mem_s / 1e9, 2),
        "memory_gb_s_first_ramp_window": rnd(memory_seconds(duration) / 1e9, 2),
        "peak_containers": max((s[2] for s in samples), default=0),
        "host_start_to_warm_s_median": rnd(med(warmups), 2),
        "host_start_times_s": sorted(rnd(t, 2) for t in starts.values()),
        "scaler_cold_start_estimate_s": rnd(status_now["cold_start_s"].get(key), 2),
        "decisions": [
            {
                "t": rnd(d["t"] - wall0, 2),
                "kind": d["kind"],
                "count": d["count"],
                "hosts": len(d["host_ids"]),
                "limit": d["limit"],
                "reason": d["reason"],
            }
            for d in reversed(decisions)
        ],
        "run_seconds": rnd(t_end, 1),
        "memory_samples": len(samples),
        "max_slots_in_use_on_one_host": max((s[4] for s in samples), default=0),
        "timeline": timeline,  # [t s, containers, warm hosts, PSS MB, most slots in use on one host]
        "workload": {
            "burst": burst_n,
            "ramp_req_per_s": [r0, r1],
            "ramp_seconds": duration,
            "ramp_arrivals": len(schedule) - burst_n,
            "action": args.burst_action,
            "value": value,
        },
        "caps": {"max_hosts": max_hosts, "host_memory_gib": args.host_memory_gib},
    }


def section_burst(args: argparse.Namespace, dock: Docker, models_dir: Path, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in ("hybrid", "openwhisk"):
        out[policy] = burst_once(args, dock, models_dir, policy, tmp)
        r = out[policy]
        log(
            f"burst [{policy}]: {r['containers_created']} containers, {r['cold_starts']} cold starts, p50 "
            f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors, peak {r['peak_memory_mb']} MB, "
            f"{r['memory_gb_s']} GB*s"
        )
    h, o = out["hybrid"], out["openwhisk"]
    keys = [
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

    def ratio(a: Any, b: Any) -> str:
        return f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"

    w = h["workload"]
    table(
        "4. Burst + ramp on real containers: hybrid vs OpenWhisk default",
        ["metric", "hybrid", "openwhisk", "hybrid/ow"],
        [[label, h[k], o[k], ratio(h[k], o[k])] for label, k in keys],
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
    return out


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 3 minutes)")
    parser.add_argument("--sections", default="registry,overhead,coldstart,burst")
    parser.add_argument("--models", default=str(REPO / "build" / "models"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "scaler.json"))
    parser.add_argument("--rounds", type=int, default=5, help="overhead: interleaved rounds")
    parser.add_argument("--reps", type=int, default=5, help="coldstart: repetitions of each container kind")
    parser.add_argument("--burst", type=int, default=24, help="burst: concurrent activations at t=0")
    parser.add_argument(
        "--max-hosts", type=int, default=16, help="burst: pool knob max_hosts for both policies"
    )
    parser.add_argument("--host-memory-gib", type=int, default=1, help="memory limit of each host container")
    parser.add_argument("--ramp-from", type=float, default=1.0)
    parser.add_argument("--ramp-to", type=float, default=6.0)
    parser.add_argument("--ramp-seconds", type=float, default=45.0)
    parser.add_argument("--burst-action", choices=("bert", "digits"), default="bert")
    return parser.parse_args(argv)


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    models_dir = Path(args.models).resolve()
    if {"coldstart", "burst"} & set(sections) and not (
        models_dir / "bert-base" / "model.safetensors"
    ).is_file():
        raise SystemExit(f"{models_dir}/bert-base is missing; run `make models`")
    run_id = uuid.uuid4().hex[:12]
    began = time.monotonic()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    dock: Docker | None = None
    log(f"run {run_id}: sections {sections}{' (quick)' if args.quick else ''}; load {loadavg()}")
    try:
        with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-scaler-") as tmp_name:
            tmp = Path(tmp_name)
            for section in sections:
                started = time.monotonic()
                try:
                    if section == "registry":
                        results[section] = section_registry(args)
                    elif section == "overhead":
                        results[section] = section_overhead(args, tmp)
                    elif section in ("coldstart", "burst"):
                        dock = dock or Docker(run_id)
                        if section == "coldstart":
                            results[section] = section_coldstart(args, dock, models_dir)
                        else:
                            results[section] = section_burst(args, dock, models_dir, tmp)
                    else:
                        raise SystemExit(f"unknown section {section!r}")
                except (Exception, KeyboardInterrupt) as exc:
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    errors[section] = f"{type(exc).__name__}: {exc}"[:2000]
                    log(f"{section} FAILED: {errors[section]}")
                log(f"{section}: {time.monotonic() - started:.0f} s")
    finally:
        if dock is not None:
            left = dock.cleanup()
            if left:
                log(f"removed {left} leftover container(s)")

    registry_r = results.get("registry", {})
    overhead_r = results.get("overhead", {})
    cold_r = results.get("coldstart", {})
    burst_r = results.get("burst")
    summary: dict[str, Any] = {
        "acquire_release_p50_ms": registry_r.get("acquire_release_p50_ms"),
        "routed_extra_p50_ms": overhead_r.get("routed_extra_p50_ms_c1"),
        "routed_extra_p50_ms_c8": overhead_r.get("routed_extra_p50_ms_c8"),
        "routed_cold_start_ratio_vs_stock": cold_r.get("routed_cold_start_ratio_vs_stock"),
        "burst_hybrid_vs_owdefault": None,
    }
    if burst_r:
        fields = (
            "containers_created",
            "cold_starts",
            "waited_for_a_slot",
            "p50_ms",
            "p99_ms",
            "errors",
            "peak_memory_mb",
            "memory_gb_s",
            "memory_gb_s_first_ramp_window",
        )
        summary["burst_hybrid_vs_owdefault"] = {
            **{p: {f: burst_r[p][f] for f in fields} for p in ("hybrid", "openwhisk")},
            "workload": burst_r["hybrid"]["workload"] | burst_r["hybrid"]["caps"],
        }
    summary["targets_met"] = {
        f"{k}{op}{bound}": (summary[k] <= bound) if summary[k] is not None else None
        for k, (op, bound) in TARGETS.items()
    }
    summary.update(
        {
            "quick": args.quick,
            "errors": errors,
            "cpus": os.cpu_count(),
            "loadavg_end": loadavg(),
            "seconds": round(time.monotonic() - began, 1),
        }
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "sections": results, "run_id": run_id}, indent=2) + "\n")
    log(f"full results: {out}")
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
