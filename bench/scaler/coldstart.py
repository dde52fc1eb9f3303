"""Section 3, cold start: `docker run` of a NEW container -> port accepts -> /init -> first /run
answer, a routed container (its /run forwarded to a warm host that already holds bert-base)
against a stock container that loads a copy of the weights at /init."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.actions import STOCK_SAFETENSORS, ActionCode
from lib.hosts import ScalerRig, docker_backend
from lib.load import http_json
from lib.report import loadavg, med, rnd, table
from lib.targets import IMAGE, REPO, DockerEngine, RuntimeContainer
from scaler.config import GIB, guest_env, log
from warmwhisk_protocol.host import Env
from warmwhisk_protocol.records import HostRecord
from warmwhisk_scaler.pool_config import PoolConfig

PHASES = ("run_s", "port_s", "init_s", "first_run_s", "total_s")


@dataclass(frozen=True)
class Kind:
    """A kind of container compared: its name, its action's name, its environment, its action."""

    name: str
    action_name: str
    env: dict[str, str]
    action: ActionCode

    def start(self, dock: DockerEngine, models_dir: Path) -> RuntimeContainer:
        return dock.run(self.env, {str(models_dir): {"bind": "/models", "mode": "ro"}})

    def init(self, container: RuntimeContainer, timeout: float) -> None:
        container.init(self.action, guest_env(self.action_name), timeout=timeout, name=self.action_name)


def kinds(rig: ScalerRig) -> tuple[Kind, Kind]:
    code = (REPO / "examples" / "bert" / "__main__.py").read_text()
    routed_env = {Env.MODE: "routed", Env.REGISTRY_URL: rig.url}
    return (
        Kind("routed", "bert", routed_env, ActionCode(code, "main", "examples/bert/__main__.py:main")),
        Kind(
            "stock", "bert-stock", {}, ActionCode(STOCK_SAFETENSORS, "main", "inline: stock safetensors copy")
        ),
    )


def cold_start_once(dock: DockerEngine, models_dir: Path, kind: Kind) -> dict[str, float]:
    t0 = time.perf_counter()
    container = kind.start(dock, models_dir)
    try:
        t_started = time.perf_counter()
        container.wait_port(120, poll_s=0.003)
        t_port = time.perf_counter()
        kind.init(container, timeout=300)
        t_init = time.perf_counter()
        value = {"value": {"length": 16}, "deadline": str(int((time.time() + 120) * 1000))}
        status, body = http_json(container.port, "POST", "/run", value, timeout=150)
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
        dock.discard(container)


def warm_pool(rig: ScalerRig, dock: DockerEngine, models_dir: Path, routed: Kind) -> tuple[str, HostRecord]:
    """Register the action the way every routed container does (one untimed /init, no host yet),
    then pin its pool to one host and wait until that host is warm: (pool key, host record)."""
    first = routed.start(dock, models_dir)
    try:
        first.wait_port(120, poll_s=0.003)
        routed.init(first, timeout=120)
    finally:
        dock.discard(first)
    key = rig.pool_key()
    rig.configure(key, PoolConfig(knobs={"initial_limit": 4}, manual_hosts=1))
    rig.start(docker_backend(dock, f"bench-cold-{dock.run_id}"), "bench-coldstart")
    started = time.monotonic()
    (host,) = rig.wait_warm(key, 1, 180, "the bert model host to be warm")
    log(
        f"coldstart: host {host.host_id} warm after {time.monotonic() - started:.1f} s "
        f"(model load {host.model_load_s} s, PSS {host.memory_bytes / 1e6:.0f} MB)"
    )
    return key, host


def repetitions(
    rig: ScalerRig, dock: DockerEngine, models_dir: Path, order: tuple[Kind, Kind], reps: int
) -> dict:
    """Rep 0: an untimed warm-up of each kind; then `reps` repetitions, alternating the order."""
    key = rig.pool_key()
    samples: dict[str, list[dict[str, float]]] = {kind.name: [] for kind in order}
    for rep in range(reps + 1):
        for kind in order if rep % 2 == 0 else order[::-1]:
            result = cold_start_once(dock, models_dir, kind)
            if kind.name == "routed":  # the forward's round trip to the host, as the router timed it
                result["host_s"] = rig.registry.pool_stats(key).recent_ms[0] / 1000.0
            log(
                f"coldstart {'warm-up' if rep == 0 else f'rep {rep}/{reps}'} {kind.name}: total "
                f"{result['total_s']:.2f} s (run {result['run_s']:.2f}, port {result['port_s']:.2f}, "
                f"init {result['init_s']:.2f}, first run {result['first_run_s']:.2f}) load {loadavg()}"
            )
            if rep:
                samples[kind.name].append(result)
    return samples


def section(args: argparse.Namespace, dock: DockerEngine, models_dir: Path) -> dict[str, Any]:
    reps = 2 if args.quick else args.reps
    memory = args.host_memory_gib * GIB
    with ScalerRig(backend="docker", image=IMAGE, model_dir=str(models_dir), host_memory_bytes=memory) as rig:
        routed, stock = kinds(rig)
        _, host = warm_pool(rig, dock, models_dir, routed)
        samples = repetitions(rig, dock, models_dir, (routed, stock), reps)
        host_pss = rig.registry.host(host.host_id)
    medians = {
        n: {p: med(x[p] for x in v if p in x) for p in (*PHASES, "host_s")} for n, v in samples.items()
    }
    ratio = medians["routed"]["total_s"] / medians["stock"]["total_s"]
    coldstart_table(samples, medians, ratio, reps)
    return {
        "routed_cold_start_ratio_vs_stock": rnd(ratio, 4),
        "medians_s": {n: {p: rnd(v, 4) for p, v in m.items()} for n, m in medians.items()},
        "samples_total_s": {n: [rnd(s["total_s"], 4) for s in v] for n, v in samples.items()},
        "reps": reps,
        "stock_loader": "meta-device build + safetensors.torch.load_file copy + load_state_dict(assign=True)",
        "warm_host_pss_mb": None if host_pss is None else rnd(host_pss.memory_bytes / 1e6, 1),
    }


def coldstart_table(samples: dict[str, list], medians: dict[str, dict], ratio: float, reps: int) -> None:
    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows = [
        [
            n,
            *(cell(medians[n][p]) for p in (*PHASES[:4], "host_s", "total_s")),
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
