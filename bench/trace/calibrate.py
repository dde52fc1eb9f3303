"""Calibration: the figures of the real runtime on this machine that the trace simulation uses,
measured and written as a calibration file (`warmwhisk_sim.calibration`'s format).

1. **warmwhisk host cold start and memory**, per model folder (digits, minilm, bert-base): a Redis
   and a scaler replica (`lib/hosts.py`'s rig, DockerBackend) with the model action registered by
   a routed runtime; the pool is pinned to 1 host and the time from the backend's start of the
   container to the host being warm in the registry (polled every 50 ms) is its cold start; after
   one activation through the router, the PSS of all the host container's processes and the
   resident bytes of its mapping of `model.safetensors`. Then the pool is pinned to 0.
2. **routed container cold start and memory**: `docker run` of a routed-mode container → port →
   /init (registers the action) with the same rig; then its PSS.
3. **stock cold start and memory**, per model: `docker run` → port → /init that imports torch and
   loads a private copy of the weights (safetensors, meta-device module) → first /run answer; PSS.
4. **forward**, per model, in this process with the runtime's torch threads
   (`configure_torch`): the time of one forward at batch 1, 2, 4, 8, 16 (median over ≥ 1 s), and
   requests/s of 1, 2, 4 threads each forwarding one request (the runtime's unbatched
   concurrency). Repeated while other processes keep more than `--quiet-cpu` cores busy.
5. **routed overhead**: bench_scaler's overhead section (`scaler/overhead.py`, quick form): routed −
   direct p50 of a trivial action at c=1.

Repetitions alternate the models; the medians are written. The micro-batching delay is a setting
(the examples' batcher default), not a measurement, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from trace.actions import model_action, stock_action
from trace.config import CALIBRATION_MODELS, GIB, LIVE_MODEL, log
from typing import Any

from lib.hosts import ScalerRig, docker_backend, wait_until
from lib.load import machine_busy_seconds, quietest
from lib.report import loadavg, rnd, table
from lib.targets import IMAGE, DockerEngine, RuntimeContainer, start_runtime
from scaler import overhead
from scaler.burst import CountingBackend
from scaler.config import guest_env
from warmwhisk_protocol.host import Env
from warmwhisk_scaler.pool_config import PoolConfig
from warmwhisk_sim.calibration import DEFAULT as DEFAULT_CALIBRATION
from warmwhisk_sim.calibration import FORMAT, parse_calibration

BATCHES = (1, 2, 4, 8, 16)
THREADS = (1, 2, 4)
SEQUENCE = 32  # tokens per request for the encoders
BATCH_DELAY_S = 0.005  # examples/bert's BERT_MAX_BATCH_DELAY_MS default, examples/digits' delay


class _Adopted(RuntimeContainer):
    """A container another component started (a scaler's model host), read like the benchmark's
    own: its processes' PSS and mapped bytes."""

    def __init__(self, container: Any) -> None:
        self.container = container


def _mb(n: float) -> float:
    return n / 1e6


def size_mb(models_dir: Path, model: str) -> float:
    return _mb((models_dir / model / "model.safetensors").stat().st_size)


# --- 1 and 2: warmwhisk hosts and routed containers ----------------------------------------------


def host_points(args: argparse.Namespace, dock: DockerEngine, models_dir: Path, tmp: Path) -> dict:
    owner = f"bench-cal-{dock.run_id}"
    backend = CountingBackend(docker_backend(dock, owner))
    settings = {
        "backend": "docker",
        "image": IMAGE,
        "model_dir": str(models_dir),
        "host_memory_bytes": 2 * GIB,
    }
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in CALIBRATION_MODELS}
    with ScalerRig(**settings) as rig, contextlib.ExitStack() as stack:
        routers, keys = {}, {}
        for model in CALIBRATION_MODELS:
            env = {Env.MODE: "routed", Env.REGISTRY_URL: rig.url}
            router = start_runtime(f"cal-router-{model}", tmp, env)
            stack.callback(router.stop)
            name = f"trace-cal-{model}"
            router.init(model_action(model), guest_env(name), timeout=120, name=name)
            routers[model] = router
            keys[model] = next(k for k in rig.registry.registered_actions() if f"/{name}@" in k)
        rig.start(backend, "bench-calibration", lambda: dock.remove_labelled(f"warmwhisk.owner={owner}"))
        wait_until(lambda: rig.controller.ticks >= 2, 20, "the control loop")
        for rep in range(args.cal_reps):
            for model in CALIBRATION_MODELS if rep % 2 == 0 else CALIBRATION_MODELS[::-1]:
                sample = one_host(rig, dock, backend, keys[model], routers[model])
                samples[model].append(sample)
                log(
                    f"calibrate host {model} rep {rep + 1}/{args.cal_reps}: warm after "
                    f"{sample['cold_start_s']:.2f} s, PSS {sample['memory_mb']:.0f} MB, weights resident "
                    f"{sample['weights_resident_mb']:.0f} MB; load {loadavg()}"
                )
        routed = routed_containers(args, dock, models_dir, rig)
    points = [
        {
            "model": model,
            "size_mb": rnd(size_mb(models_dir, model), 3),
            **{k: rnd(statistics.median(s[k] for s in samples[model]), 3) for k in samples[model][0]},
        }
        for model in CALIBRATION_MODELS
    ]
    return {"points": points, "routed": routed, "samples": samples}


def one_host(rig: ScalerRig, dock: DockerEngine, backend: CountingBackend, key: str, router: Any) -> dict:
    """Pin the pool to one host, time it to warm, serve one activation, read its memory, pin to 0."""
    rig.configure(key, PoolConfig(manual_hosts=1))
    (host,) = rig.wait_warm(key, 1, 300, f"a host of {key} to be warm")
    warm_at = time.time()
    cold = warm_at - backend.started[host.host_id]
    router.run({"duration_s": 0}, timeout=120)
    container = _Adopted(dock.client.containers.get(host.host_id))
    pss, resident = container.pss(), container.mapped_bytes("model.safetensors")
    rig.configure(key, PoolConfig(manual_hosts=0))
    wait_until(
        lambda: host.host_id in backend.stopped and not rig.warm_hosts(key, 1), 120, f"{key} scaled to 0"
    )
    return {"cold_start_s": cold, "memory_mb": _mb(pss), "weights_resident_mb": _mb(resident)}


def routed_containers(args: argparse.Namespace, dock: DockerEngine, models_dir: Path, rig: ScalerRig) -> dict:
    starts, memory = [], []
    env = {Env.MODE: "routed", Env.REGISTRY_URL: rig.url}
    name = f"trace-cal-{LIVE_MODEL}"
    for _ in range(args.cal_reps):
        began = time.perf_counter()
        container = dock.run(env, {str(models_dir): {"bind": "/models", "mode": "ro"}})
        try:
            container.wait_port(120, poll_s=0.003)
            container.init(model_action(LIVE_MODEL), guest_env(name), timeout=120, name=name)
            starts.append(time.perf_counter() - began)
            memory.append(_mb(container.pss()))
        finally:
            dock.discard(container)
    log(
        f"calibrate routed container: start {statistics.median(starts):.2f} s, "
        f"PSS {statistics.median(memory):.0f} MB"
    )
    return {"start_s": statistics.median(starts), "memory_mb": statistics.median(memory)}


# --- 3: stock containers -------------------------------------------------------------------------


def stock_points(args: argparse.Namespace, dock: DockerEngine, models_dir: Path) -> list[dict]:
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in CALIBRATION_MODELS}
    volumes = {str(models_dir): {"bind": "/models", "mode": "ro"}}
    for rep in range(args.cal_reps):
        for model in CALIBRATION_MODELS if rep % 2 == 0 else CALIBRATION_MODELS[::-1]:
            began = time.perf_counter()
            container = dock.run({}, volumes)
            try:
                container.wait_port(120, poll_s=0.003)
                container.init(stock_action(model), timeout=300, name=f"stock-{model}")
                container.run({}, timeout=120)
                cold = time.perf_counter() - began
                samples[model].append({"cold_start_s": cold, "memory_mb": _mb(container.pss())})
            finally:
                dock.discard(container)
            log(f"calibrate stock {model} rep {rep + 1}/{args.cal_reps}: {cold:.2f} s; load {loadavg()}")
    return [
        {
            "model": model,
            "size_mb": rnd(size_mb(models_dir, model), 3),
            **{k: rnd(statistics.median(s[k] for s in samples[model]), 3) for k in samples[model][0]},
        }
        for model in CALIBRATION_MODELS
    ]


# --- 4: forward in-process ------------------------------------------------------------------------


def _forward(model_name: str, model: Any) -> Any:
    """One forward of a batch of b requests of this model, as its action runs it."""
    import torch

    if model_name == "digits":
        return lambda b: model(torch.zeros(b, 64))
    ids = [(1 + 31 * p) % model.config.vocab_size for p in range(SEQUENCE)]
    return lambda b: model.embed(*model.pad([ids] * b), normalize=False)


def _timed(call: Any, seconds: float) -> tuple[float, list[float]]:
    """(cores other processes kept busy, call times): calls for `seconds`, at least 5."""
    machine, own, began = machine_busy_seconds(), time.process_time(), time.perf_counter()
    times: list[float] = []
    while time.perf_counter() - began < seconds or len(times) < 5:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - began
    return max(0.0, (machine_busy_seconds() - machine - (time.process_time() - own)) / wall), times


def _threads_rate(call: Any, threads: int, seconds: float) -> tuple[float, float]:
    """(cores other processes kept busy, requests/s) of `threads` threads each calling `call`."""
    counts = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        while not stop.is_set():
            call()
            counts[i] += 1

    machine, own, began = machine_busy_seconds(), time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    wall = time.perf_counter() - began
    other = max(0.0, (machine_busy_seconds() - machine - (time.process_time() - own)) / wall)
    return other, sum(counts) / wall


def forward_curves(args: argparse.Namespace, models_dir: Path) -> dict:
    import torch

    from warmwhisk_runtime.loaders import configure_torch, load_model

    configure_torch(None)  # the runtime's own setting: intra-op threads = usable CPUs, 1 inter-op
    curves, noise = [], []
    for model_name in CALIBRATION_MODELS:
        model = load_model(models_dir / model_name, None, None, None, False).value
        forward = _forward(model_name, model)
        batch_s: dict[str, float] = {}
        rps: dict[str, float] = {}
        with torch.inference_mode():
            for b in BATCHES:
                forward(b)  # warm-up (allocator, oneDNN primitives)
                (other, times), _ = quietest(
                    lambda b=b, forward=forward: _timed(lambda: forward(b), args.cal_seconds),
                    lambda r: r[0],
                    args.max_tries,
                    args.quiet_cpu,
                )
                batch_s[str(b)] = statistics.median(times)
                noise.append(other)
            for c in THREADS:
                (other, rate), _ = quietest(
                    lambda c=c, forward=forward: _threads_rate(lambda: forward(1), c, args.cal_seconds),
                    lambda r: r[0],
                    args.max_tries,
                    args.quiet_cpu,
                )
                rps[str(c)] = rate
                noise.append(other)
        curves.append(
            {
                "model": model_name,
                "size_mb": rnd(size_mb(models_dir, model_name), 3),
                "batch_s": {k: rnd(v, 6) for k, v in batch_s.items()},
                "concurrent_rps": {k: rnd(v, 2) for k, v in rps.items()},
            }
        )
        log(
            f"calibrate forward {model_name}: batch 1 {1000 * batch_s['1']:.2f} ms, batch 16 "
            f"{1000 * batch_s['16']:.1f} ms; {', '.join(f'{c} threads {r:.0f}/s' for c, r in rps.items())}"
        )
        del model
    return {"models": curves, "max_other_cpu": rnd(max(noise), 2)}


# --- the file ---------------------------------------------------------------------------------------


def calibrate(args: argparse.Namespace, dock: DockerEngine, models_dir: Path, tmp: Path, out: Path) -> Path:
    """Measure everything, write the calibration file to `out`, return its path."""
    dock.check_image()
    began = time.monotonic()
    load_before = loadavg()
    hosts = host_points(args, dock, models_dir, tmp)
    stock = stock_points(args, dock, models_dir)
    forward = forward_curves(args, models_dir)
    measured = overhead.section(argparse.Namespace(quick=True, rounds=2), tmp)
    routed_extra_ms = measured["routed_extra_p50_ms_c1"]
    routed_ms = measured["medians"]["routed_c1"]["p50_ms"]
    reps = f"median of {args.cal_reps} repetitions alternating the models"
    data = {
        "format": FORMAT,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "image": IMAGE,
            "seconds": round(time.monotonic() - began),
            "command": "make bench-trace CALIBRATE=1 (bench/trace/calibrate.py)",
        },
        "host_start": {
            "source": "warmwhisk model host started by the scaler (Controller + DockerBackend, pool pinned "
            "to 1 host): container start -> warm in the registry (polled every 50 ms); PSS of the host "
            "container's processes and resident bytes of its model.safetensors mapping after one "
            f"activation; {reps}",
            "points": hosts["points"],
        },
        "stock_start": {
            "source": "stock container of the runtime image: docker run -> port -> /init importing torch and "
            "loading a private copy of the weights (safetensors, meta-device module) -> first /run answer; "
            f"PSS of its processes then; {reps}",
            "points": stock,
        },
        "forward": {
            "source": "in-process forward with the runtime's torch threads (configure_torch): median time at "
            f"batch {', '.join(map(str, BATCHES))} (encoders: {SEQUENCE} tokens), and requests/s of "
            f"{', '.join(map(str, THREADS))} threads each forwarding one request; at least "
            f"{args.cal_seconds} s each, repeated while other processes kept > {args.quiet_cpu} cores busy "
            f"(worst kept: {forward['max_other_cpu']} cores)",
            "models": forward["models"],
        },
        "routed": {
            "overhead_s": {
                "value": round(routed_extra_ms / 1000.0, 6),
                "source": "bench_scaler's overhead section (quick, 2 rounds): routed - direct p50 of the "
                "trivial action at c=1, local processes, one warm host",
            },
            "start_s": {
                "value": round(hosts["routed"]["start_s"], 3),
                "source": "docker run of a routed-mode container -> port -> /init registering the action; "
                f"{reps}",
            },
            "memory_mb": {
                "value": round(hosts["routed"]["memory_mb"], 1),
                "source": f"PSS of that routed container's processes after /init; {reps}",
            },
            "activation_s": {
                "value": round(routed_ms / 1000.0, 6),
                "source": "bench_scaler's overhead section (quick, 2 rounds): routed p50 of the trivial "
                "action at c=1 (client -> routed runtime -> warm host -> answer), local processes",
            },
        },
        # Not measured here (it takes several serving containers at once): kept from the committed
        # calibration, with its source.
        "image_shared_mb": json.loads(DEFAULT_CALIBRATION.read_text())["image_shared_mb"],
        "batch_delay_s": {
            "value": BATCH_DELAY_S,
            "source": "a setting, not a measurement: the micro-batcher's longest wait in examples/bert "
            "(BERT_MAX_BATCH_DELAY_MS default 5) and examples/digits (max_batch_delay_ms=5)",
        },
    }
    parse_calibration(data, out)  # what is written must be readable
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    calibration_table(data)
    log(f"calibration written to {out} ({time.monotonic() - began:.0f} s)")
    return out


def calibration_table(data: dict[str, Any]) -> None:
    calibration = parse_calibration(data)
    table(
        "Calibration (measured on this machine)",
        ["figure", "value", "source"],
        [
            [what, value, source[:90] + ("…" if len(source) > 90 else "")]
            for what, value, source in calibration.describe()
        ],
    )
