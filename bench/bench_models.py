"""Model benchmarks of the warmwhisk runtime: memory, cold start and throughput, each against
the stock behaviour or the in-process torch ceiling, measured side by side in ONE run.

Model: the BERT-base-sized encoder folder `build/models/bert-base` (340 MB of safetensors; built by
`examples/build_models.py`), mounted read-only at /models in every container. The actions are the
repository's own examples (`examples/bert/__main__.py`: `main` and the micro-batched
`main_batched`; `examples/digits/__main__.py`; `examples/sentiment/__main__.py`: `main` and
`main_batched`), sent as plain code in /init.

1. Memory. Total PSS (sum over every process of each container, host PIDs from `docker top`,
   read from /proc/PID/smaps_rollup) of 1, 2 and 4 containers, each after /init and one
   activation (so the weights are touched):
     ours   the example action; the runtime maps the model file read-only, so the containers
            share its page-cache pages;
     stock  an action that builds the module and `load_state_dict(torch.load(<.pt copy>,
            weights_only=True))` at import, as a stock OpenWhisk Python action would.
   Baseline: 4 idle containers at once (action `import torch`, no model), so shared libraries
   are split four ways in both measurements; "idle per container" = their total / 4.
   weight copies = (PSS of 4 serving - 4 x idle per container) / model file size. Each PSS
   reading follows one more activation in every container, because proactive reclaim (DAMON
   `pageout`, on this machine) unmaps file pages it finds cold; the RSS of each container's
   mapping of the model file is reported to show the weights were counted.
2. Cold start. (a) prewarm: a container started with WARMWHISK_PRELOAD=/models/bert-base, once its
   /healthz shows model_loads == 1: time from sending /init to the first /run answer, against a
   stock container (ready, idle) whose /init imports torch and loads its own copy.
   (b) docker run: time from `docker run` (docker SDK: create + start) to the first /run answer,
   /init sent as soon as the action port accepts a connection; ours maps the model at /init,
   stock loads its copy with torch.load. Repetitions alternate ours/stock; medians are reported.
   Both weight files are read into the page cache before every repetition.
3. Throughput. In-process ceiling: the model called directly in this process (the action's own
   `embed(*pad(...))`, torch.inference_mode, default threads) at batch 1, 4, 8, 16, sequence 64,
   before and after the runtime sweep, and at the batcher's achieved mean batch size right after
   each batched point (the throughput ratio uses the latter). Runtime: local runtime processes
   (`python -m warmwhisk_runtime`, __OW_ALLOW_CONCURRENT=true) serving the unbatched and the
   micro-batched action, at client concurrency 1..32 (closed loop: one keep-alive
   http.client connection per client thread, each request one sequence of 64 tokens; rate =
   sum over clients of their request rate, p50/p99 over requests started in the window). The
   batched action is the example's batch entry point, wrapped only to report each item's batch
   size and its batch call's time. Same on/off comparison for two small models, the digits MLP
   (0.1 ms a forward: HTTP dominates) and MiniLM-L6 sentiment (a few ms a forward), each with a
   third target, the ceiling: a batched action answering a constant per item, i.e. the most
   any batching can reach for that request through HTTP, JSON and the batcher.
   The machine is shared: every measurement records the CPU other processes used meanwhile
   ("other cores") and is repeated (up to --max-tries) while that exceeds --quiet-cpu.

stdout: one table per section, then as the very LAST line a one-line JSON summary. Progress goes
to stderr. Full results: build/bench/models.json; plot: build/bench/models.png (if matplotlib is
installed). Usage: .venv/bin/python bench/bench_models.py [--quick] [--sections memory,coldstart,throughput]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNTIME_SRC = REPO / "action-runtime"
sys.path.insert(0, str(RUNTIME_SRC))

from report import free_port, loadavg, rnd, table  # noqa: E402
from warmwhisk_runtime.procmem import total_pss_bytes  # noqa: E402

IMAGE = os.environ.get("WARMWHISK_IMAGE", "warmwhisk/runtime:dev")
BENCH_LABEL = "warmwhisk.bench"
RUN_LABEL = "warmwhisk.bench.run"
HEADERS = {"Content-Type": "application/json"}
MODEL_NAME = "bert-base"
SEQ_LEN = 64
IN_PROCESS_BATCHES = (1, 4, 8, 16)
CONCURRENCY = (1, 2, 4, 8, 16, 32)
BERT_MAX_BATCH = 16
# 25 ms: on this 2-core machine 16 closed-loop clients need 10-20 ms to get a batch's answers and
# send again; with 5 ms the batches split into two alternating groups (mean batch 9.3 at c=16)
# and each request also waited for the other group's batch. The batcher stops waiting once
# every expected request is there, so the delay is rarely spent in full.
BERT_MAX_DELAY_MS = 25.0

TARGETS = {  # key: (comparison, bound, the section that measures it)
    "weight_copies_4": ("<=", 1.15, "memory"),
    "memory_ratio_4_vs_1": ("<=", 2.0, "memory"),
    "prewarm_init_ratio_vs_stock": ("<=", 0.1, "coldstart"),
    "throughput_ratio_vs_inprocess": (">=", 0.9, "throughput"),
    "batching_gain_bert": (">=", 1.25, "throughput"),
    "batching_gain_small": (">=", 2.5, "throughput"),
}
# Rounds of (served point, in-process forward right after it) behind throughput_ratio_vs_inprocess.
RATIO_ROUNDS = 3

IDLE_ACTION = "import torch\n\ndef main(args):\n    return {'threads': torch.get_num_threads()}\n"

# What a stock OpenWhisk Python action does: import torch, build the module, load its own copy of
# the weights with torch.load at import time, one forward per activation.
STOCK_ACTION = """
import importlib.util

import torch

_spec = importlib.util.spec_from_file_location("bert_model", "/models/bert-base/model.py")
_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_code)
model = _code.build()
model.load_state_dict(torch.load("/stock/bert-base.pt", weights_only=True))
model.eval()


def main(args):
    length = int(args.get("length", 64))
    ids = [(1 + 31 * position) % model.config.vocab_size for position in range(length)]
    vector = model.embed(*model.pad([ids]), normalize=False)[0]
    head = [round(v, 6) for v in vector[:4].tolist()]
    return {"tokens": length, "head": head, "norm": float(vector.norm())}
"""

# Appended to an example action: a batched entry that reports each item's batch size and the
# time its batch call took (so the client sees the achieved batches), and an unbatched entry
# that calls the batch body with a batch of one (for examples that only have a batched entry).
WRAPPERS = """

# ---- added by bench/bench_models.py ----
import time as _bench_time

import warmwhisk as _bench_ww
from warmwhisk_runtime.batching import batch_policy as _bench_policy

_bench_batched = globals()[{batched!r}]
_bench_p = _bench_policy(_bench_batched)


@_bench_ww.batch(_bench_p.max_batch_size, _bench_p.max_batch_delay_ms)
def bench_batched(batch, models):
    size, started = len(batch), _bench_time.perf_counter()
    results = _bench_batched(batch, models)
    ms = 1000 * (_bench_time.perf_counter() - started)
    return [dict(r, batch_size=size, batch_ms=ms) if isinstance(r, dict) else r for r in results]


def bench_unbatched(args, models):
    result = _bench_batched([args], models)[0]
    if isinstance(result, BaseException):
        raise result
    return result
"""


def log(message: str) -> None:
    print(f"[bench-models {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def http_json(port: int, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=HEADERS if data is not None else {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy (user, nice, system, irq, softirq, steal).
    Raises when /proc/stat cannot be read: the noise of a point is then unknown, never zero."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot measure the machine's CPU use (noise) from /proc/stat: {exc}") from exc
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def warm_page_cache(*paths: Path) -> None:
    """Read files through once: "the model is already on the host" means in the page cache, and
    proactive reclaim may have dropped pages of a file nobody used for a minute."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def damon_schemes() -> list[str]:
    """Running DAMON schemes (proactive reclaim) of this kernel, e.g. ['paddr:pageout']."""
    found = []
    root = Path("/sys/kernel/mm/damon/admin/kdamonds")
    with contextlib.suppress(OSError, ValueError):
        for kdamond in sorted(root.glob("[0-9]*")):
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for context in sorted((kdamond / "contexts").glob("[0-9]*")):
                ops = (context / "operations").read_text().strip()
                for scheme in sorted((context / "schemes").glob("[0-9]*")):
                    found.append(f"{ops}:{(scheme / 'action').read_text().strip()}")
    return found


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f}"


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# The first columns of every runtime throughput table: one concurrency level, batching off and on.
ON_OFF_COLUMNS = [
    "clients", "unbatched", "p50", "p99", "batched", "p50", "p99", "mean batch", "batch call ms",
]  # fmt: skip


def on_off_cells(unbatched: dict[str, Any], batched: dict[str, Any], rate_format: str) -> list[Any]:
    """The cells under ON_OFF_COLUMNS for one concurrency level's unbatched and batched points."""
    return [
        f"c={unbatched['concurrency']}",
        format(unbatched["rps"], rate_format),
        unbatched["p50_ms"],
        unbatched["p99_ms"],
        format(batched["rps"], rate_format),
        batched["p50_ms"],
        batched["p99_ms"],
        batched["mean_batch"],
        batched["batch_ms_p50"],
    ]


# ----------------------------------------------------------------------------------- the actions
def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_example_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ActionCode:
    """An action sent as plain code in /init: source text + entry point name + where it came from."""

    def __init__(self, code: str, main: str, origin: str) -> None:
        self.code, self.main, self.origin = code, main, origin


# The example actions measured: folder under examples/, its unbatched entry (None: the batch
# entry is called with a batch of one) and its micro-batched entry.
EXAMPLES = {
    "bert": ("bert", "main", "main_batched"),
    "digits": ("digits", None, "main"),
    "minilm": ("sentiment", "main", "main_batched"),
}

# The small models of the batching comparison: example, request, model, request described.
SMALL_MODELS = {
    "digits": ("digits", {"pixels": [float((3 * i) % 17) for i in range(64)]}, "digits MLP (69 KB)", "8x8"),
    "minilm": (
        "minilm",
        {"text": "The staff were friendly and the food arrived quickly."},
        "MiniLM-L6 sentiment (87 MB, 22 M parameters)",
        "one sentence of 13 tokens",
    ),
}

# The batching ceiling for a request shape: a batched action that answers a constant per item.
CEILING_ACTION = """
import warmwhisk


@warmwhisk.batch(max_batch_size={size}, max_batch_delay_ms={delay})
def bench_batched(batch):
    return [{{"batch_size": len(batch), "batch_ms": 0.0}} for _ in batch]
"""


class ExampleActions:
    """An example's unbatched and batched actions (the latter wrapped to report its batches)."""

    def __init__(self, kind: str) -> None:
        from warmwhisk_runtime.batching import batch_policy

        folder, unbatched, batched = EXAMPLES[kind]
        path = REPO / "examples" / folder / "__main__.py"
        policy = batch_policy(getattr(_import_file(path), batched))
        if policy is None:
            raise SystemExit(f"{path}:{batched} is not a micro-batched entry point")
        self.policy = policy
        source = path.read_text()
        where = str(path.relative_to(REPO))
        wrapped = source + WRAPPERS.format(batched=batched)
        self.batched = ActionCode(
            wrapped, "bench_batched", f"{where}:{batched} (+batch_size, batch_ms fields)"
        )
        if unbatched is not None:
            self.unbatched = ActionCode(source, unbatched, f"{where}:{unbatched}")
        else:
            self.unbatched = ActionCode(wrapped, "bench_unbatched", f"{where}:{batched} called with [args]")


class Target:
    """Common HTTP surface of a container or a local runtime process."""

    port: int
    metrics_port: int

    def alive(self) -> bool:
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    def wait_port(self, timeout_s: float = 120.0) -> None:
        end = time.monotonic() + timeout_s
        checked = time.monotonic()
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if not self.alive():
                    raise RuntimeError(f"runtime exited during start-up:\n{self.logs()[-3000:]}")
            time.sleep(0.005)
        raise RuntimeError(f"the action port did not open within {timeout_s}s")

    def health(self) -> dict[str, Any] | None:
        try:
            status, body = http_json(self.metrics_port, "GET", "/healthz", timeout=5)
        except OSError:
            return None
        return body if status == 200 else None

    def wait_health(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 180.0) -> dict:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            health = self.health()
            if health is not None and predicate(health):
                return health
            if health is None and not self.alive():
                raise RuntimeError(f"runtime exited:\n{self.logs()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"timed out after {timeout_s}s waiting on /healthz; logs:\n{self.logs()[-3000:]}")

    def init(self, action: ActionCode, env: dict[str, str] | None = None, timeout: float = 600.0) -> None:
        body = {
            "value": {
                "name": "bench",
                "main": action.main,
                "code": action.code,
                "binary": False,
                "env": env or {},
            }
        }
        status, answer = http_json(self.port, "POST", "/init", body, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"/init answered {status} {answer}; logs:\n{self.logs()[-3000:]}")

    def run(self, value: dict[str, Any], timeout: float = 600.0) -> Any:
        status, answer = http_json(self.port, "POST", "/run", {"value": value}, timeout=timeout)
        if status != 200 or (isinstance(answer, dict) and "error" in answer):
            raise RuntimeError(f"/run answered {status} {answer}; logs:\n{self.logs()[-3000:]}")
        return answer


class BenchContainer(Target):
    def __init__(self, client: Any, run_id: str, env: dict[str, str], volumes: dict[str, Any]) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.container = client.containers.run(
            IMAGE,
            command=[
                "/opt/warmwhisk/bin/python",
                "-m",
                "warmwhisk_runtime",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--metrics-port",
                str(self.metrics_port),
            ],
            environment=env,
            network_mode="host",
            volumes=volumes,
            detach=True,
            labels={BENCH_LABEL: "1", RUN_LABEL: run_id},
        )

    def alive(self) -> bool:
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - gone
            return False
        return self.container.status in ("created", "running")

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            return self.container.logs().decode(errors="replace")
        return ""

    def pids(self) -> list[int]:
        return [int(row[0]) for row in self.container.top(ps_args="-o pid")["Processes"]]

    def pss(self) -> int:
        return total_pss_bytes(self.pids())

    def mapped_bytes(self, name: str) -> int:
        """Resident bytes of this container's mappings of files whose path ends with `name`."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                inside = False
                for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                    fields = line.split()
                    if fields and "-" in fields[0] and not fields[0].endswith(":"):
                        inside = len(fields) >= 6 and fields[-1].endswith(name)
                    elif inside and fields[0] == "Rss:":
                        total += int(fields[1]) * 1024
        return total

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


class LocalRuntime(Target):
    """`python -m warmwhisk_runtime` as a child process of this benchmark (dies with it)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self._log_path = workdir / "runtime.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("__OW_", "WARMWHISK_"))}
        full_env.update({"PYTHONPATH": str(RUNTIME_SRC), "PYTHONUNBUFFERED": "1", **env})
        with open(self._log_path, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "warmwhisk_runtime",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                preexec_fn=_die_with_parent,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        return self._log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the runtime's processes (gunicorn master and worker)."""
        total, pending = 0.0, [self.process.pid]
        while pending:
            pid = pending.pop()
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(c) for c in (task / "children").read_text().split()]
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --------------------------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.models_dir = Path(args.models).resolve()
        self.model_dir = self.models_dir / MODEL_NAME
        self.out_dir = Path(args.out).resolve()
        self.stock_dir = self.out_dir / "stock"
        self.run_id = uuid.uuid4().hex[:12]
        self.containers: list[BenchContainer] = []
        self.locals: list[LocalRuntime] = []
        self.results: dict[str, Any] = {"quick": self.quick, "image": IMAGE, "sections": {}}
        self.in_process_noise: list[dict[str, Any]] = []
        self._docker: Any = None

    # -- set-up -------------------------------------------------------------------------------
    @property
    def docker(self) -> Any:
        if self._docker is None:
            import docker

            self._docker = docker.from_env(timeout=600)
        return self._docker

    def wait_for_models(self) -> None:
        weights = self.model_dir / "model.safetensors"
        deadline = time.monotonic() + self.args.wait_models_s
        while not (weights.is_file() and (self.models_dir / "digits" / "model.safetensors").is_file()):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{weights} (and {self.models_dir}/digits) not found: run "
                    f".venv/bin/python examples/build_models.py --out {self.models_dir}"
                )
            log(f"waiting for {weights} ...")
            time.sleep(30)

    def prepare_stock_copy(self) -> Path:
        """The stock action's state-dict .pt, made once from the safetensors, world-readable."""
        target = self.stock_dir / f"{MODEL_NAME}.pt"
        source = self.model_dir / "model.safetensors"
        if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            import torch
            from safetensors.torch import load_file

            log(f"writing the stock state-dict copy {target}")
            self.stock_dir.mkdir(parents=True, exist_ok=True)
            state = load_file(str(source))
            partial = target.with_suffix(".pt.partial")
            torch.save(state, str(partial))
            del state
            os.replace(partial, target)
        for path in (self.out_dir, self.stock_dir):
            path.chmod(0o755)
        target.chmod(0o444)
        os.sync()  # pages of a just-written file count as private (dirty) until written back
        return target

    def volumes(self) -> dict[str, Any]:
        return {
            str(self.models_dir): {"bind": "/models", "mode": "ro"},
            str(self.stock_dir): {"bind": "/stock", "mode": "ro"},
        }

    def container(self, env: dict[str, str] | None = None) -> BenchContainer:
        c = BenchContainer(self.docker, self.run_id, env or {}, self.volumes())
        self.containers.append(c)
        return c

    def remove_containers(self) -> None:
        for c in self.containers:
            c.remove()
        self.containers.clear()
        with contextlib.suppress(Exception):  # anything of this run that escaped the list
            for leftover in self.docker.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"}
            ):
                leftover.remove(force=True)

    def cleanup(self) -> None:
        for r in self.locals:
            r.stop()
        self.locals.clear()
        if self._docker is not None:
            self.remove_containers()

    # -- 1. memory ----------------------------------------------------------------------------
    def serving_container(self, action: ActionCode) -> BenchContainer:
        c = self.container()
        c.wait_health(lambda h: True)
        c.init(action)
        c.run({"length": SEQ_LEN})
        return c

    def settle_pss(self, containers: list[BenchContainer]) -> tuple[int, list[int], list[int]]:
        """Total PSS, the median of three readings 0.5 s apart, each taken 0.1 s after one more
        activation in every container: proactive reclaim (DAMON `pageout` on this machine) unmaps
        file pages it sees as cold, which would hide mapped weights. Also the bytes of the model
        file each container has mapped (RSS of its mapping), to show the weights were counted."""
        readings = []
        for _ in range(3):
            time.sleep(0.5)
            for c in containers:
                c.run({"length": SEQ_LEN})
            time.sleep(0.1)  # idle, as the invoker keeps them between activations (pause grace 50 ms)
            per = [c.pss() for c in containers]
            mapped = [c.mapped_bytes("model.safetensors") for c in containers]
            readings.append((sum(per), per, mapped))
        readings.sort(key=lambda r: r[0])
        return readings[1]

    def section_memory(self, ours: ActionCode) -> dict[str, Any]:
        model_bytes = (self.model_dir / "model.safetensors").stat().st_size
        stock_bytes = (self.stock_dir / f"{MODEL_NAME}.pt").stat().st_size
        idle_action = ActionCode(IDLE_ACTION, "main", "inline: import torch, no model")
        stock_action = ActionCode(STOCK_ACTION, "main", "inline: build() + torch.load(.pt)")
        out: dict[str, Any] = {"model_bytes": model_bytes, "stock_pt_bytes": stock_bytes}
        warm_page_cache(self.model_dir / "model.safetensors", self.stock_dir / f"{MODEL_NAME}.pt")

        log("memory: 4 idle containers (torch imported, no model)")
        idle = [self.serving_container(idle_action) for _ in range(4)]
        total, per, _ = self.settle_pss(idle)
        out["idle_4_total"] = total
        out["idle_4_per_container"] = per
        out["idle_per_container"] = total / 4
        self.remove_containers()

        for name, action in (("ours", ours), ("stock", stock_action)):
            running: list[BenchContainer] = []
            out[name] = {}
            for n in (1, 2, 4):
                while len(running) < n:
                    log(f"memory: {name} container {len(running) + 1}")
                    running.append(self.serving_container(action))
                total, per, mapped = self.settle_pss(running)
                out[name][str(n)] = {"total": total, "per_container": per, "model_file_mapped": mapped}
                log(f"memory: {name} x{n}: {mb(total)} MB (model file mapped per container: {mapped})")
            self.remove_containers()

        idle_each = out["idle_per_container"]
        for name, size in (("ours", model_bytes), ("stock", stock_bytes)):
            pss = out[name]
            out[name]["weight_copies"] = {
                n: (pss[n]["total"] - int(n) * idle_each) / size for n in ("1", "2", "4")
            }
            out[name]["ratio_4_vs_1"] = pss["4"]["total"] / pss["1"]["total"]
            out[name]["ratio_2_vs_1"] = pss["2"]["total"] / pss["1"]["total"]

        ours_pss, stock_pss = out["ours"], out["stock"]
        rows = []
        for n in ("1", "2", "4"):
            rows.append(
                [
                    f"{n} container(s)",
                    mb(out["ours"][n]["total"]),
                    mb(out["stock"][n]["total"]),
                    mb(int(n) * idle_each),
                    f"{out['ours']['weight_copies'][n]:.2f}",
                    f"{out['stock']['weight_copies'][n]:.2f}",
                ]
            )
        table(
            "1. Memory: total PSS (MB) of N containers serving bert-base, after /init + one activation",
            [
                "",
                "ours (shared ro mmap)",
                "stock (torch.load copy)",
                "N x idle",
                "ours copies",
                "stock copies",
            ],
            rows,
            [
                f"model file {mb(model_bytes)} MB (stock .pt {mb(stock_bytes)} MB); idle baseline: "
                f"4 idle containers (import torch, no model) running at once = {mb(out['idle_4_total'])} MB, "
                "so one idle = "
                f"{mb(idle_each)} MB (shared torch libraries split 4 ways, as in the serving measurement)",
                "copies = (total PSS - N x idle) / model file size; each reading 0.1 s after one more "
                "activation per container (this machine's DAMON pageout unmaps cold file pages)",
                "model file mapped by each ours container (RSS of the mapping, MB): "
                + "; ".join(
                    f"{n}: " + " ".join(mb(x) for x in ours_pss[n]["model_file_mapped"])
                    for n in ("1", "2", "4")
                ),
                f"4 vs 1 container: ours x{ours_pss['ratio_4_vs_1']:.2f}, "
                f"stock x{stock_pss['ratio_4_vs_1']:.2f} "
                f"(2 vs 1: ours x{ours_pss['ratio_2_vs_1']:.2f}, stock x{stock_pss['ratio_2_vs_1']:.2f})",
            ],
        )
        return out

    # -- 2. cold start ------------------------------------------------------------------------
    def section_coldstart(self, ours: ActionCode) -> dict[str, Any]:
        stock_action = ActionCode(STOCK_ACTION, "main", "inline: build() + torch.load(.pt)")
        reps = self.args.cold_reps
        out: dict[str, Any] = {
            "reps": reps,
            "prewarm": {"ours": [], "stock": []},
            "docker_run": {"ours": [], "stock": []},
        }
        value = {"length": SEQ_LEN}

        def init_to_first_answer(c: BenchContainer, action: ActionCode) -> dict[str, float]:
            t0 = time.perf_counter()
            c.init(action)
            t1 = time.perf_counter()
            c.run(value)
            t2 = time.perf_counter()
            return {"init_s": t1 - t0, "first_run_s": t2 - t1, "total_s": t2 - t0}

        files = (self.model_dir / "model.safetensors", self.stock_dir / f"{MODEL_NAME}.pt")
        for rep in range(reps):
            warm_page_cache(*files)  # both weight files in the page cache at every repetition
            # (a) a prewarmed container vs a ready stock container: /init -> first answer
            for name in ("ours", "stock") if rep % 2 == 0 else ("stock", "ours"):
                if name == "ours":
                    c = self.container({"WARMWHISK_PRELOAD": f"/models/{MODEL_NAME}"})
                    c.wait_health(lambda h: h.get("model_loads") == 1)
                    timing = init_to_first_answer(c, ours)
                else:
                    c = self.container()
                    c.wait_health(lambda h: True)
                    timing = init_to_first_answer(c, stock_action)
                out["prewarm"][name].append(timing)
                log(f"cold start (a) rep {rep + 1}/{reps} {name}: {timing['total_s']:.3f} s")
                self.remove_containers()
            # (b) docker run -> first answer, /init as soon as the port accepts
            for name in ("stock", "ours") if rep % 2 == 0 else ("ours", "stock"):
                action = ours if name == "ours" else stock_action
                t0 = time.perf_counter()
                c = self.container()
                t1 = time.perf_counter()
                c.wait_port()
                t2 = time.perf_counter()
                c.init(action)
                t3 = time.perf_counter()
                c.run(value)
                t4 = time.perf_counter()
                timing = {
                    "docker_run_s": t1 - t0,
                    "port_s": t2 - t1,
                    "init_s": t3 - t2,
                    "first_run_s": t4 - t3,
                    "total_s": t4 - t0,
                }
                out["docker_run"][name].append(timing)
                log(f"cold start (b) rep {rep + 1}/{reps} {name}: {timing['total_s']:.3f} s")
                self.remove_containers()

        def median_of(kind: str, name: str, key: str) -> float:
            return statistics.median(t[key] for t in out[kind][name])

        for kind in ("prewarm", "docker_run"):
            out[kind]["median"] = {
                name: {key: median_of(kind, name, key) for key in out[kind][name][0]}
                for name in ("ours", "stock")
            }
            out[kind]["ratio"] = (
                out[kind]["median"]["ours"]["total_s"] / out[kind]["median"]["stock"]["total_s"]
            )

        pw, dr = out["prewarm"], out["docker_run"]
        fmt = lambda xs: " ".join(f"{x['total_s']:.2f}" for x in xs)  # noqa: E731
        rows = [
            [
                "(a) /init -> 1st answer, prewarmed",
                f"{pw['median']['ours']['total_s']:.3f}",
                f"{pw['median']['stock']['total_s']:.3f}",
                f"{pw['ratio']:.3f}",
                fmt(pw["ours"]),
                fmt(pw["stock"]),
            ],
            [
                "(b) docker run -> 1st answer",
                f"{dr['median']['ours']['total_s']:.3f}",
                f"{dr['median']['stock']['total_s']:.3f}",
                f"{dr['ratio']:.3f}",
                fmt(dr["ours"]),
                fmt(dr["stock"]),
            ],
        ]
        m, pm = dr["median"], pw["median"]

        def steps(t: dict[str, float]) -> str:
            return " + ".join(f"{t[k]:.2f}" for k in ("docker_run_s", "port_s", "init_s", "first_run_s"))

        table(
            f"2. Cold start, bert-base (seconds, median of {reps})",
            ["", "ours", "stock", "ratio", "ours runs", "stock runs"],
            rows,
            [
                f"(a) ours: container started with WARMWHISK_PRELOAD=/models/{MODEL_NAME}, timed once "
                "/healthz shows model_loads == 1; stock: ready idle container, its /init imports torch, "
                "builds the module and torch.loads its own copy",
                f"    breakdown: ours /init {pm['ours']['init_s']:.3f} + "
                f"first /run {pm['ours']['first_run_s']:.3f}, "
                f"stock /init {pm['stock']['init_s']:.3f} + first /run {pm['stock']['first_run_s']:.3f}",
                "(b) docker SDK containers.run (create+start) -> port accepts -> /init -> first /run",
                f"    breakdown: ours {steps(m['ours'])}, stock {steps(m['stock'])}",
                "both weight files read into the page cache before each repetition (nothing dropped); "
                "ours/stock repetitions alternate",
            ],
        )
        return out

    # -- 3. throughput ------------------------------------------------------------------------
    def in_process(
        self, model: Any, batches: tuple[int, ...] | list[int], seconds: float
    ) -> dict[int, list[float]]:
        """Forward times (s) of the model called directly here, per batch size: the action's own
        computation (`embed(*pad(...))` of identical 64-token sequences), at least 3 per size.
        Each size is measured again (up to --max-tries) while other processes kept more than
        --quiet-cpu cores busy; the quietest try is kept (noise in `self.in_process_noise`)."""
        ids = [(1 + 31 * p) % model.config.vocab_size for p in range(SEQ_LEN)]
        times: dict[int, list[float]] = {}
        for bs in batches:
            inputs = [ids] * bs
            model.embed(*model.pad(inputs), normalize=False)  # warm-up (allocator, oneDNN primitives)
            tries: list[tuple[float, list[float]]] = []
            while len(tries) < self.args.max_tries:
                machine, own, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
                run: list[float] = []
                end = started + seconds
                while time.perf_counter() < end or len(run) < 3:
                    t = time.perf_counter()
                    model.embed(*model.pad(inputs), normalize=False)
                    run.append(time.perf_counter() - t)
                wall = time.perf_counter() - started
                other = (machine_busy_seconds() - machine - (time.process_time() - own)) / wall
                tries.append((max(0.0, other), run))
                if other <= self.args.quiet_cpu:
                    break
            other, times[bs] = min(tries, key=lambda t: t[0])
            self.in_process_noise.append(
                {"batch": bs, "other_cpu_util": round(other, 2), "tries": len(tries)}
            )
        return times

    def load_point(self, target: LocalRuntime, value: dict[str, Any], concurrency: int) -> dict[str, Any]:
        """One point, measured again (up to --max-tries) while other processes kept more than
        --quiet-cpu cores busy during its window; the quietest try is kept."""
        tries: list[dict[str, Any]] = []
        while len(tries) < self.args.max_tries:
            tries.append(self.measure_point(target, value, concurrency))
            if tries[-1]["other_cpu_util"] <= self.args.quiet_cpu:
                break
            log(f"  (c={concurrency}: other processes kept {tries[-1]['other_cpu_util']} cores busy; again)")
        point = min(tries, key=lambda p: p["other_cpu_util"])
        point["tries"] = len(tries)
        point["other_cpu_util_tries"] = [p["other_cpu_util"] for p in tries]
        return point

    def measure_point(self, target: LocalRuntime, value: dict[str, Any], concurrency: int) -> dict[str, Any]:
        """Closed loop: `concurrency` clients, each a keep-alive connection sending back to back.
        The window opens once every client got its first answer, plus a warm-up; it closes after
        `duration` seconds once every client started at least `min_cycles` + 1 requests in it, or
        after `max_point_s`.

        Throughput is the sum over clients of each one's request rate between its first and last
        request start in the window (closed loop: X = sum of 1 / cycle time). Unlike answers per
        window, this does not depend on where the window cuts the bursts in which a batch's
        answers arrive (16 answers at once, about once a second, for bert at batch 16)."""
        args = self.args
        # (client, start, end, batch size, ms its batch call took)
        records: list[tuple[int, float, float, int | None, float | None]] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        first_done = threading.Semaphore(0)
        window_start = math.inf
        starts_in_window = [0] * concurrency

        def client(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=600)
            first = True
            try:
                while not stop.is_set():
                    body = json.dumps(
                        {
                            "value": value,
                            "activation_id": uuid.uuid4().hex,
                            "deadline": str(int(time.time() * 1000) + 600_000),
                        }
                    ).encode()
                    t = time.perf_counter()
                    if t >= window_start:
                        starts_in_window[index] += 1
                    conn.request("POST", "/run", body=body, headers=HEADERS)
                    response = conn.getresponse()
                    raw = response.read()
                    t2 = time.perf_counter()
                    answer = json.loads(raw)
                    with lock:
                        if response.status != 200 or (isinstance(answer, dict) and "error" in answer):
                            errors.append(f"{response.status} {raw[:200]!r}")
                        else:
                            records.append((index, t, t2, answer.get("batch_size"), answer.get("batch_ms")))
                    if first:
                        first = False
                        first_done.release()
            except Exception as exc:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"client {index}: {type(exc).__name__}: {exc}")
                if first:
                    first_done.release()
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
        for thread in threads:
            thread.start()
        first_deadline = time.perf_counter() + args.max_first_s
        for _ in range(concurrency):
            first_done.acquire(timeout=max(0.0, first_deadline - time.perf_counter()))
        time.sleep(args.warmup)
        window_start = time.perf_counter()
        cpu_start = target.cpu_seconds()
        machine_start, own_start = machine_busy_seconds(), time.process_time()
        while True:
            time.sleep(0.02)
            elapsed = time.perf_counter() - window_start
            with lock:
                fewest, failed = min(starts_in_window), bool(errors)
            enough = elapsed >= args.duration and fewest >= args.min_cycles + 1
            if failed or enough or elapsed >= args.max_point_s:
                break
        window_end = time.perf_counter()
        cpu = target.cpu_seconds() - cpu_start
        client_cpu = time.process_time() - own_start
        other_cpu = machine_busy_seconds() - machine_start - cpu - client_cpu
        stop.set()
        for thread in threads:
            thread.join(timeout=600)
        if errors:
            raise RuntimeError(
                f"{len(errors)} failed requests, e.g. {errors[:3]}; logs:\n{target.logs()[-2000:]}"
            )
        done = [r for r in records if window_start <= r[2] <= window_end]
        started = [r for r in records if window_start <= r[1] <= window_end]
        latencies = [r[2] - r[1] for r in started]
        sizes = [r[3] for r in started if r[3] is not None]
        # time each request spent outside its own batch call (HTTP, gathering, queueing)
        outside = [r[2] - r[1] - r[4] / 1000 for r in started if r[4] is not None]
        per_client: dict[int, list[float]] = {}
        for r in started:
            per_client.setdefault(r[0], []).append(r[1])
        rates = [(len(ts) - 1) / (max(ts) - min(ts)) for ts in per_client.values() if len(ts) >= 2]
        rps_window = len(done) / (window_end - window_start)
        # every client measured over at least one whole cycle, else the answers-per-window rate
        rps = sum(rates) if len(rates) == concurrency else rps_window
        return {
            "concurrency": concurrency,
            "rps": rps,
            "rps_answers_in_window": rps_window,
            "completed": len(done),
            "started": len(started),
            "window_s": round(window_end - window_start, 2),
            "p50_ms": rnd(None if not latencies else 1000 * pct(latencies, 50), 1),
            "p99_ms": rnd(None if not latencies else 1000 * pct(latencies, 99), 1),
            # per batch (not per request): n items / sum over items of 1/(its batch size)
            "mean_batch": rnd(len(sizes) / sum(1 / s for s in sizes), 2) if sizes else None,
            "max_batch": max(sizes) if sizes else None,
            "outside_batch_p99_ms": rnd(1000 * pct(outside, 99), 1) if outside else None,
            "batch_ms_p50": rnd(pct([r[4] for r in started if r[4] is not None], 50), 2),
            "server_cpu_ms_per_req": rnd(1000 * cpu / (rps * (window_end - window_start)), 2)
            if rps
            else None,
            "server_cpu_util": rnd(cpu / (window_end - window_start), 2),
            "client_cpu_util": rnd(client_cpu / (window_end - window_start), 2),
            # cores busy with anything else on the machine during the window (noise)
            "other_cpu_util": rnd(max(0.0, other_cpu) / (window_end - window_start), 2),
            "loadavg": loadavg(),
        }

    def start_local(self, name: str, action: ActionCode, init_env: dict[str, str]) -> LocalRuntime:
        r = LocalRuntime(
            self.out_dir / "runtimes" / name,
            {"__OW_ALLOW_CONCURRENT": "true", "WARMWHISK_MAX_CONCURRENT": "64"},
        )
        self.locals.append(r)
        r.wait_health(lambda h: True, timeout_s=60)
        r.init(action, env={"WARMWHISK_MODELS_DIR": str(self.models_dir), **init_env})
        return r

    def sweep(
        self,
        title: str,
        targets: dict[str, LocalRuntime],
        value: dict[str, Any],
        after_point: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Every concurrency level for each target, alternating which target goes first."""
        points: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for index, c in enumerate(self.args.concurrency):
            for name in list(targets) if index % 2 == 0 else list(reversed(targets)):
                point = self.load_point(targets[name], value, c)
                points[name].append(point)
                log(
                    f"{title} {name} c={c}: {point['rps']:.1f} req/s ({point['completed']} in "
                    f"{point['window_s']} s) p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms "
                    f"batch {point['mean_batch']} cpu: server {point['server_cpu_util']} "
                    f"client {point['client_cpu_util']} other {point['other_cpu_util']}"
                )
                if after_point is not None:
                    after_point(name, point)
        return points

    def section_throughput(self, bert: ExampleActions, small: dict[str, ExampleActions]) -> dict[str, Any]:
        import torch

        from warmwhisk_runtime.loaders import load_model

        args = self.args
        out: dict[str, Any] = {
            "runtime_kind": "local process (python -m warmwhisk_runtime, this venv), not a container",
            "client": "closed loop, one http.client keep-alive connection per client thread, in this "
            "process (it shares the machine's cores with the server)",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "min_cycles": args.min_cycles,
            "max_point_s": args.max_point_s,
            "torch_threads_in_process": torch.get_num_threads(),
            "runtime_torch_threads": "set by the runtime: usable CPUs intra-op, 1 inter-op",
            "bert_actions": {"unbatched": bert.unbatched.origin, "batched": bert.batched.origin},
            "bert_batch_policy": {"max_batch_size": BERT_MAX_BATCH, "max_batch_delay_ms": args.bert_delay_ms},
        }
        bert_env = {
            "BERT_MAX_BATCH_SIZE": str(BERT_MAX_BATCH),
            "BERT_MAX_BATCH_DELAY_MS": str(args.bert_delay_ms),
        }
        log("throughput: starting local runtimes (bert-base)")
        warm_page_cache(self.model_dir / "model.safetensors")
        targets = {
            "unbatched": self.start_local("bert-unbatched", bert.unbatched, bert_env),
            "batched": self.start_local("bert-batched", bert.batched, bert_env),
        }
        for r in targets.values():
            r.run({"length": SEQ_LEN})  # model resident, first forward done
        model = load_model(self.model_dir, None, None, None, False).value

        log("throughput: in-process round (before)")
        noise_from = len(self.in_process_noise)
        rounds = [self.in_process(model, IN_PROCESS_BATCHES, args.inproc_s)]
        rounds_noise = [self.in_process_noise[noise_from:]]

        def adjacent(name: str, point: dict[str, Any]) -> None:
            """Right after each batched point: in-process at the batch size it achieved."""
            if name != "batched":
                return
            bs = max(1, round(point["mean_batch"] or 1))
            forward = statistics.median(self.in_process(model, [bs], args.adjacent_s)[bs])
            point["in_process_batch"] = bs
            point["in_process_other_cpu_util"] = self.in_process_noise[-1]["other_cpu_util"]
            point["in_process_forward_ms"] = round(1000 * forward, 1)
            point["in_process_rps"] = round(bs / forward, 3)
            point["ratio_vs_in_process"] = round(point["rps"] * forward / bs, 3)
            point["p99_bound_ms"] = round(args.bert_delay_ms + 1000 * forward, 1)
            point["p99_within_bound"] = (
                point["p99_ms"] is not None and point["p99_ms"] <= point["p99_bound_ms"]
            )
            point["queued_batches"] = math.ceil(point["concurrency"] / BERT_MAX_BATCH)
            outside = point["outside_batch_p99_ms"]
            point["outside_batch_within_delay"] = outside is not None and outside <= args.bert_delay_ms
            log(
                f"  in-process at batch {bs}: {point['in_process_rps']:.2f} req/s "
                f"-> ratio {point['ratio_vs_in_process']:.3f}"
            )

        bert_points = self.sweep("bert", targets, {"length": SEQ_LEN}, adjacent)
        best_c = max(bert_points["batched"], key=lambda p: p["rps"])["concurrency"]
        ratio_rounds = self.ratio_rounds(targets["batched"], best_c, adjacent)
        log("throughput: in-process round (after)")
        noise_from = len(self.in_process_noise)
        rounds.append(self.in_process(model, IN_PROCESS_BATCHES, args.inproc_s))
        rounds_noise.append(self.in_process_noise[noise_from:])
        for r in targets.values():
            r.stop()
        self.locals.clear()

        ceiling: dict[int, dict[str, Any]] = {}
        for i, bs in enumerate(IN_PROCESS_BATCHES):
            others = [noise[i]["other_cpu_util"] for noise in rounds_noise]
            quietest = min(range(len(rounds)), key=lambda r: others[r])
            forward = statistics.median(rounds[quietest][bs])
            ceiling[bs] = {
                "rps": bs / forward,
                "forward_ms": 1000 * forward,
                "rps_per_round": [round(bs / statistics.median(one[bs]), 2) for one in rounds],
                "other_cpu_per_round": others,
            }
        out["in_process"] = {str(k): v for k, v in ceiling.items()}
        out["bert"] = bert_points
        best_b = max(bert_points["batched"], key=lambda p: p["rps"])
        best_u = max(bert_points["unbatched"], key=lambda p: p["rps"])

        nearest = min(IN_PROCESS_BATCHES, key=lambda bs: (abs(bs - (best_b["mean_batch"] or 1)), bs))
        out["bert_summary"] = {
            "best_batched": best_b,
            "best_unbatched": best_u,
            "achieved_mean_batch": best_b["mean_batch"],
            "compared_in_process_batch": best_b["in_process_batch"],
            "in_process_rps_at_that_batch": best_b["in_process_rps"],
            # median over rounds of (served rps, in-process forward right after): not the best
            # sweep point over one in-process reading, which the noise would bias upwards
            "throughput_ratio_vs_inprocess": statistics.median(
                r["ratio_vs_in_process"] for r in ratio_rounds
            ),
            "ratio_rounds": ratio_rounds,
            "ratio_vs_rounds_at_nearest_batch": {
                "batch": nearest,
                "ratio": best_b["rps"] / ceiling[nearest]["rps"],
            },
            "in_process_best_rps_rounds": max(v["rps"] for v in ceiling.values()),
            "batching_gain": best_b["rps"] / best_u["rps"],
        }

        for name in SMALL_MODELS:
            out[name] = self.small_model_sweep(name, small[name])
        out["in_process_noise"] = self.in_process_noise
        self.throughput_tables(out, bert, small)
        return out

    def ratio_rounds(
        self, target: LocalRuntime, concurrency: int, adjacent: Callable[[str, dict[str, Any]], None]
    ) -> list[dict[str, Any]]:
        """RATIO_ROUNDS served points at `concurrency`, each followed by the in-process forward at
        the batch size it reached (`adjacent`): the ratio's median is what the summary reports."""
        rounds = []
        for i in range(RATIO_ROUNDS):
            point = self.load_point(target, {"length": SEQ_LEN}, concurrency)
            adjacent("batched", point)
            ratio = point["ratio_vs_in_process"]
            log(f"  ratio round {i + 1}/{RATIO_ROUNDS} at c={concurrency}: {ratio:.3f}")
            rounds.append(point)
        return rounds

    def small_model_sweep(self, name: str, actions: ExampleActions) -> dict[str, Any]:
        """Unbatched and batched, plus the batching ceiling for this request: a batched action that
        returns a constant per item (no parsing, no model), through the same HTTP and batcher."""
        example, value, _, _ = SMALL_MODELS[name]
        policy = actions.policy
        ceiling = ActionCode(
            CEILING_ACTION.format(size=policy.max_batch_size, delay=policy.max_batch_delay_ms),
            "bench_batched",
            f"constant answers, batched like {example} (max_batch_size {policy.max_batch_size}, "
            f"max_batch_delay {policy.max_batch_delay_ms:g} ms)",
        )
        log(f"throughput: starting local runtimes ({name})")
        targets = {
            "unbatched": self.start_local(f"{name}-unbatched", actions.unbatched, {}),
            "batched": self.start_local(f"{name}-batched", actions.batched, {}),
            "ceiling": self.start_local(f"{name}-ceiling", ceiling, {}),
        }
        for r in targets.values():
            r.run(value)
        points = self.sweep(name, targets, value)
        for r in targets.values():
            r.stop()
        self.locals.clear()
        best = {mode: max(points[mode], key=lambda p: p["rps"]) for mode in points}
        return {
            "points": points,
            "ceiling_action": ceiling.origin,
            "best": best,
            "batching_gain": best["batched"]["rps"] / best["unbatched"]["rps"],
            # what batching could give at most if the model cost nothing
            "batching_gain_ceiling": best["ceiling"]["rps"] / best["unbatched"]["rps"],
        }

    def throughput_tables(
        self, out: dict[str, Any], bert: ExampleActions, small: dict[str, ExampleActions]
    ) -> None:
        ceiling = out["in_process"]
        rows = [
            [
                f"batch {bs}",
                f"{v['forward_ms']:.0f}",
                f"{v['rps']:.2f}",
                " / ".join(map(str, v["rps_per_round"])),
                " / ".join(map(str, v["other_cpu_per_round"])),
            ]
            for bs, v in ceiling.items()
        ]
        table(
            f"3a. In-process ceiling, bert-base, sequence {SEQ_LEN} (this process, torch threads "
            f"{out['torch_threads_in_process']})",
            [
                "",
                "forward ms",
                "req/s",
                "req/s before / after the runtime sweep",
                "other cores before / after",
            ],
            rows,
            [
                "req/s = batch / median forward time, of the round during which other processes used the "
                "least CPU; the model is the runtime's own load of build/models/bert-base",
                "the throughput ratio uses the in-process measurements taken right after each batched point "
                "(table 3b), not these rounds",
            ],
        )
        s = out["bert_summary"]
        rows = []
        for u, b in zip(out["bert"]["unbatched"], out["bert"]["batched"], strict=True):
            ok = "yes" if b["p99_within_bound"] else "no"
            if not b["p99_within_bound"] and b["queued_batches"] > 1:
                ok = f"no ({b['queued_batches']} batches queue)"
            rows.append(
                [
                    *on_off_cells(u, b, ".2f"),
                    f"{b['in_process_rps']:.2f} @{b['in_process_batch']}",
                    f"{b['ratio_vs_in_process']:.2f}",
                    b["p99_bound_ms"],
                    ok,
                    b["outside_batch_p99_ms"],
                    "yes" if b["outside_batch_within_delay"] else "no",
                    f"{u['other_cpu_util']}/{b['other_cpu_util']}",
                ]
            )
        pooled = s["ratio_vs_rounds_at_nearest_batch"]
        best = s["best_batched"]
        table(
            "3b. Runtime throughput, bert-base (req/s; latency ms)",
            [
                *ON_OFF_COLUMNS,
                "in-process adjacent",
                "ratio",
                "p99 bound",
                "p99 <= bound",
                "p99 outside batch",
                "<= delay",
                "other cores u/b",
            ],
            rows,
            [
                f"runtime: {out['runtime_kind']}; unbatched {bert.unbatched.origin}; "
                f"batched {bert.batched.origin}; "
                f"max_batch_size {BERT_MAX_BATCH}, max_batch_delay {self.args.bert_delay_ms:g} ms",
                "in-process adjacent: measured right after each batched point, at its mean batch size "
                "(rounded)",
                f"throughput ratio = median over {RATIO_ROUNDS} rounds at c={best['concurrency']} (the best "
                "batched point) of served req/s / in-process req/s measured right after it at the batch "
                "size it reached: "
                + ", ".join(f"{r['ratio_vs_in_process']:.3f}" for r in s["ratio_rounds"])
                + f" -> {s['throughput_ratio_vs_inprocess']:.3f} "
                f"(best sweep point against table 3a at batch {pooled['batch']}: {pooled['ratio']:.3f})",
                f"batching gain = {best['rps']:.2f} / best unbatched {s['best_unbatched']['rps']:.2f} "
                f"(c={s['best_unbatched']['concurrency']}) = {s['batching_gain']:.3f}",
                "p99 bound = max_batch_delay + one in-process forward at the achieved batch size; with more "
                "clients than max_batch_size a request can queue behind whole batches",
                "p99 outside batch = p99 over requests of (latency - the time its own batch call took in the "
                "runtime): HTTP, gathering and queueing, which the batcher promises to keep within the delay",
                f"other cores u/b: CPU other processes of the machine kept busy during the unbatched/batched "
                f"window (a point is measured up to {self.args.max_tries} times until that is <= "
                f"{self.args.quiet_cpu}; the quietest try is kept)",
            ],
        )
        for index, (name, actions) in enumerate(small.items()):
            self.small_model_table(f"3{'cdefg'[index]}", name, actions, out[name])

    def small_model_table(self, number: str, name: str, actions: ExampleActions, s: dict[str, Any]) -> None:
        points = s["points"]
        rows = [
            [
                *on_off_cells(u, b, ".0f"),
                f"{c['rps']:.0f}",
                f"{u['server_cpu_ms_per_req']}/{b['server_cpu_ms_per_req']}/{c['server_cpu_ms_per_req']}",
                f"{u['other_cpu_util']}/{b['other_cpu_util']}/{c['other_cpu_util']}",
            ]
            for u, b, c in zip(points["unbatched"], points["batched"], points["ceiling"], strict=True)
        ]
        best = s["best"]
        table(
            f"{number}. Runtime throughput, {SMALL_MODELS[name][2]}, {SMALL_MODELS[name][3]} "
            "(req/s; latency ms)",
            [
                *ON_OFF_COLUMNS,
                "ceiling",
                "server cpu ms/req u/b/c",
                "other cores u/b/c",
            ],
            rows,
            [
                f"unbatched: {actions.unbatched.origin}; batched: {actions.batched.origin}",
                f"ceiling: {s['ceiling_action']}: what batching could reach if parsing and the model cost "
                "nothing (HTTP, JSON and the batcher only)",
                "batch call ms: median time of the batch entry point call, per request (the model's cost)",
                f"batching gain = best batched {best['batched']['rps']:.0f} "
                f"(c={best['batched']['concurrency']}) / best unbatched {best['unbatched']['rps']:.0f} "
                f"(c={best['unbatched']['concurrency']}) = "
                f"{s['batching_gain']:.3f}; at most {s['batching_gain_ceiling']:.3f} (ceiling "
                f"{best['ceiling']['rps']:.0f} / best unbatched)",
            ],
        )

    # -- output -------------------------------------------------------------------------------
    def plot(self, path: Path) -> str | None:
        tp = self.results["sections"].get("throughput")
        if tp is None:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log("matplotlib is not installed: no plot")
            return None
        panels = [("bert", "bert-base (340 MB), sequence 64", tp["bert"])]
        panels += [(name, SMALL_MODELS[name][2], tp[name]["points"]) for name in SMALL_MODELS]
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.6))
        for ax, (key, title, points) in zip(axes, panels, strict=True):
            noisy: list[dict[str, Any]] = []
            for mode, style in (("unbatched", "o--"), ("batched", "s-"), ("ceiling", "^:")):
                if mode not in points:
                    continue
                pts = points[mode]
                best_batched = max(p["rps"] for p in points["batched"])
                if mode == "ceiling" and max(p["rps"] for p in pts) > 3 * best_batched:
                    top = max(p["rps"] for p in pts)
                    ax.plot([], [], style, label=f"runtime, ceiling: up to {top:.0f} (off the scale)")
                    continue
                ax.plot(
                    [p["concurrency"] for p in pts], [p["rps"] for p in pts], style, label=f"runtime, {mode}"
                )
                noisy += [p for p in pts if p["other_cpu_util"] > self.args.quiet_cpu]
            if noisy:
                ax.plot(
                    [p["concurrency"] for p in noisy],
                    [p["rps"] for p in noisy],
                    "o",
                    ms=13,
                    mfc="none",
                    mec="red",
                    label=f"measured while other processes kept > {self.args.quiet_cpu:g} cores busy",
                )
            if key == "bert":
                adjacent = [p for p in points["batched"] if p.get("in_process_rps")]
                ax.plot(
                    [p["concurrency"] for p in adjacent],
                    [p["in_process_rps"] for p in adjacent],
                    "kx",
                    label="in-process at the batcher's mean batch (measured right after)",
                )
                ip = tp["in_process"]
                best_bs = max(ip, key=lambda k: ip[k]["rps"])
                ax.axhline(
                    ip[best_bs]["rps"], color="k", ls=":", label=f"in-process ceiling (batch {best_bs})"
                )
                ax.axhline(ip["1"]["rps"], color="grey", ls=":", label="in-process, batch 1")
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(self.args.concurrency), [str(c) for c in self.args.concurrency])
            ax.set_xlabel("client concurrency")
            ax.set_ylabel("requests / s")
            ax.set_title(title)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("warmwhisk runtime throughput: micro-batching on/off vs in-process")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return str(path)

    def summary(self) -> dict[str, Any]:
        s = self.results["sections"]
        mem, cold, tp = s.get("memory"), s.get("coldstart"), s.get("throughput")
        out: dict[str, Any] = {
            "weight_copies_4": rnd(mem and mem["ours"]["weight_copies"]["4"]),
            "stock_weight_copies_4": rnd(mem and mem["stock"]["weight_copies"]["4"]),
            "memory_ratio_4_vs_1": rnd(mem and mem["ours"]["ratio_4_vs_1"]),
            "stock_memory_ratio_4_vs_1": rnd(mem and mem["stock"]["ratio_4_vs_1"]),
            "prewarm_init_ratio_vs_stock": rnd(cold and cold["prewarm"]["ratio"]),
            "docker_run_ratio_vs_stock": rnd(cold and cold["docker_run"]["ratio"]),
            "throughput_ratio_vs_inprocess": rnd(tp and tp["bert_summary"]["throughput_ratio_vs_inprocess"]),
            "batching_gain_bert": rnd(tp and tp["bert_summary"]["batching_gain"]),
            "batching_gain_small": rnd(tp and tp["digits"]["batching_gain"]),
        }
        raw: dict[str, Any] = {"quick": self.quick}
        if mem:
            raw.update(
                model_mb=rnd(mem["model_bytes"] / 1e6, 1),
                idle_pss_mb=rnd(mem["idle_per_container"] / 1e6, 1),
                pss_1_mb=rnd(mem["ours"]["1"]["total"] / 1e6, 1),
                pss_4_mb=rnd(mem["ours"]["4"]["total"] / 1e6, 1),
                stock_pss_4_mb=rnd(mem["stock"]["4"]["total"] / 1e6, 1),
            )
        if cold:
            raw.update(
                prewarm_s=rnd(cold["prewarm"]["median"]["ours"]["total_s"]),
                stock_init_s=rnd(cold["prewarm"]["median"]["stock"]["total_s"]),
                docker_run_s=rnd(cold["docker_run"]["median"]["ours"]["total_s"]),
                stock_docker_run_s=rnd(cold["docker_run"]["median"]["stock"]["total_s"]),
            )
        if tp:
            b = tp["bert_summary"]
            raw.update(
                bert_batched_rps=rnd(b["best_batched"]["rps"], 2),
                bert_unbatched_rps=rnd(b["best_unbatched"]["rps"], 2),
                bert_mean_batch=b["achieved_mean_batch"],
                bert_inprocess_batch=b["compared_in_process_batch"],
                bert_inprocess_rps=rnd(b["in_process_rps_at_that_batch"], 2),
                # the most batching could give digits if its model cost nothing (see table 3c)
                batching_gain_small_ceiling=rnd(tp["digits"]["batching_gain_ceiling"]),
                batching_gain_minilm=rnd(tp["minilm"]["batching_gain"]),
                **{
                    f"{name}_{mode}_rps": rnd(tp[name]["best"][mode]["rps"], 1)
                    for name in SMALL_MODELS
                    for mode in ("unbatched", "batched", "ceiling")
                },
                # batched bert points that fit one batch (c <= max_batch_size): is p99 within the
                # delay + one batch bound, against the in-process forward and per request
                bert_p99_within_bound=[
                    p["concurrency"] for p in tp["bert"]["batched"] if p["p99_within_bound"]
                ],
                bert_p99_outside_batch_within_delay=[
                    p["concurrency"] for p in tp["bert"]["batched"] if p["outside_batch_within_delay"]
                ],
                # throughput points whose quietest try still had other processes above --quiet-cpu
                noisy_points=sum(
                    p["other_cpu_util"] > self.args.quiet_cpu
                    for points in [tp["bert"], *(tp[name]["points"] for name in SMALL_MODELS)]
                    for mode_points in points.values()
                    for p in mode_points
                ),
            )
        missed, unmeasured = [], []
        for key, (op, bound, section) in TARGETS.items():
            value = out[key]
            if value is None:
                if section in self.args.sections:  # asked for, yet no value: the run is not valid
                    unmeasured.append(key)
            elif not (value <= bound if op == "<=" else value >= bound):
                missed.append(f"{key} {value} (target {op} {bound})")
        out.update(raw)
        out["targets_missed"] = missed
        out["targets_not_measured"] = unmeasured
        return out

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        sections = self.args.sections
        self.wait_for_models()
        os.sync()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        bert = ExampleActions("bert")
        small = {name: ExampleActions(SMALL_MODELS[name][0]) for name in SMALL_MODELS}
        self.results["actions"] = {
            f"{name}_{mode}": getattr(actions, mode).origin
            for name, actions in {"bert": bert, **small}.items()
            for mode in ("unbatched", "batched")
        }
        started = time.perf_counter()
        if {"memory", "coldstart"} & set(sections):
            self.prepare_stock_copy()
            self.docker.images.get(IMAGE)  # fail early when the image is missing
        steps = {
            "memory": lambda: self.section_memory(bert.unbatched),
            "coldstart": lambda: self.section_coldstart(bert.unbatched),
            "throughput": lambda: self.section_throughput(bert, small),
        }
        self.results["loadavg"] = {}
        self.results["damon_schemes"] = damon_schemes()
        if self.results["damon_schemes"]:
            log(
                f"note: proactive reclaim is on ({self.results['damon_schemes']}): weight files are read "
                "into the page cache before each step and activations rerun before each PSS reading"
            )
        for name, step in steps.items():
            if name in sections:
                before = loadavg()
                self.results["sections"][name] = step()
                self.results["loadavg"][name] = [before, loadavg()]
        self.results["elapsed_s"] = round(time.perf_counter() - started, 1)
        self.results["summary"] = summary = self.summary()
        (self.out_dir / "models.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        plot = self.plot(self.out_dir / "models.png")
        notes = [f"results: {self.out_dir / 'models.json'}"] + ([f"plot: {plot}"] if plot else [])
        load = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in self.results["loadavg"].items())
        print(f"\n# {'; '.join(notes)}; elapsed {self.results['elapsed_s']} s")
        print(
            f"# machine load average (1 min) at the start and end of each section: {load} "
            f"({os.cpu_count()} CPUs)"
        )
        if summary["targets_missed"]:
            print("# targets missed: " + "; ".join(summary["targets_missed"]))
        if summary["targets_not_measured"]:
            print("# NOT MEASURED (the run is invalid): " + ", ".join(summary["targets_not_measured"]))
        return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter points (debugging)")
    parser.add_argument(
        "--sections",
        default="memory,coldstart,throughput",
        help="comma-separated subset of memory,coldstart,throughput",
    )
    parser.add_argument(
        "--models", default=str(REPO / "build" / "models"), help="model folders (bert-base, digits)"
    )
    parser.add_argument("--out", default=str(REPO / "build" / "bench"), help="results folder")
    parser.add_argument(
        "--cold-reps", type=int, default=None, help="cold-start repetitions (default 5, quick 1)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per throughput point (default 4, quick 2)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds of warm-up per point (default 1, quick 0.5)"
    )
    parser.add_argument(
        "--inproc-s", type=float, default=None, help="seconds per batch size per in-process round"
    )
    parser.add_argument(
        "--concurrency", default=None, help="client concurrency levels (default 1,2,4,8,16,32)"
    )
    parser.add_argument(
        "--adjacent-s",
        type=float,
        default=None,
        help="seconds of in-process forwards after each batched bert point (default 2, quick 1)",
    )
    parser.add_argument(
        "--min-cycles",
        type=int,
        default=None,
        help="answers per client a point's window must hold (default 2, quick 1)",
    )
    parser.add_argument(
        "--max-point-s", type=float, default=None, help="longest window per point (default 30, quick 10)"
    )
    parser.add_argument(
        "--quiet-cpu",
        type=float,
        default=0.3,
        help="cores other processes may keep busy during a throughput measurement before it is retried",
    )
    parser.add_argument(
        "--max-tries", type=int, default=None, help="tries per noisy point (default 3, quick 2)"
    )
    parser.add_argument(
        "--bert-delay-ms",
        type=float,
        default=BERT_MAX_DELAY_MS,
        help=f"max_batch_delay_ms of the batched bert action (default {BERT_MAX_DELAY_MS:g})",
    )
    parser.add_argument(
        "--max-first-s", type=float, default=60.0, help="longest wait for every client's first answer"
    )
    parser.add_argument(
        "--wait-models-s", type=float, default=1200.0, help="how long to wait for build/models"
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - {"memory", "coldstart", "throughput"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    q = args.quick
    args.cold_reps = args.cold_reps or (1 if q else 5)
    args.duration = args.duration or (2.0 if q else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if q else 1.0)
    args.inproc_s = args.inproc_s or (1.0 if q else 2.0)
    args.adjacent_s = args.adjacent_s or (1.0 if q else 2.0)
    args.min_cycles = args.min_cycles or (1 if q else 2)
    args.max_tries = args.max_tries or (2 if q else 3)
    args.max_point_s = args.max_point_s or (10.0 if q else 30.0)
    args.concurrency = (
        tuple(int(c) for c in args.concurrency.split(","))
        if args.concurrency
        else ((1, 4, 16, 32) if q else CONCURRENCY)
    )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    bench = Bench(args)

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        summary = bench.run()
    finally:
        log("cleaning up")
        bench.cleanup()
    print(json.dumps(summary, separators=(",", ":")))
    return 2 if summary["targets_not_measured"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
