"""`make demo`: warmwhisk the way a user reaches it, through OpenWhisk's REST API.

1. The dev stack starts (deploy/devstack: OpenWhisk's API on 127.0.0.1, a private Redis, the
   scaler), with the invoker patch's settings.
2. The example actions are created through the REST API (`PUT /api/v1/namespaces/_/actions/...`,
   kind `python:3-ml`), as `wsk action create` or the `openwhisk` npm client would.
3. sentiment and digits are invoked once each (blocking); then a burst of concurrent invocations
   arrives from zero containers at `reviews`, the same sentiment code (all-MiniLM-L6-v2) deployed
   with its micro-batched entry point.
4. What happened is printed (containers and model hosts created, cold starts, latencies, memory)
   and plotted to build/demo/demo.png.

Everything the stack started is removed at the end (it stops like `make up` on Ctrl-C).
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import statistics
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from warmwhisk_devstack.client import Invocation, StackProcess, WhiskClient
from warmwhisk_devstack.services import free_loopback_port
from warmwhisk_devstack.stack import stack_id
from warmwhisk_runtime.procmem import total_pss_bytes

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("IMAGE", "warmwhisk/runtime:dev")
OUT = REPO / "build" / "demo"
BURST = 48
IN_FLIGHT = 24
REVIEWS = [
    "An absolute delight, the staff were warm and the food was superb.",
    "Cold soup, rude waiter, and we waited an hour. Never again.",
    "The battery lasts all week and the screen is gorgeous.",
    "It broke after two days and support never answered.",
]


class Progress:
    """`with Progress("starting"):` prints the elapsed seconds while a step runs (a spinner on a
    terminal, a line every 10 s otherwise), then how long it took."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._done = threading.Event()
        self._tty = sys.stdout.isatty()

    def _tick(self) -> None:
        started = time.monotonic()
        for frame in itertools.cycle("|/-\\"):
            if self._done.wait(0.2 if self._tty else 10):
                return
            elapsed = time.monotonic() - started
            if self._tty:
                print(f"\r  {frame} {self.what}... {elapsed:4.0f} s", end="", flush=True)
            else:
                print(f"  {self.what}... {elapsed:.0f} s", flush=True)

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        clear = "\r" + " " * 60 + "\r" if self._tty else ""
        print(f"{clear}  {self.what}: {time.monotonic() - self._started:.1f} s", flush=True)


def sentiment_zip() -> str:
    """The sentiment action as OpenWhisk takes a multi-file Python action: a zip, base64."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(REPO / "examples" / "sentiment" / "__main__.py", "__main__.py")
    return base64.b64encode(buffer.getvalue()).decode()


def create_actions(client: WhiskClient) -> None:
    print("\n== 2. Create the example actions through the REST API (kind python:3-ml)")
    actions = {
        "sentiment": ({"kind": "python:3-ml", "code": sentiment_zip()}, {"concurrency": 32}),
        "digits": ({"kind": "python:3-ml", "code": (REPO / "examples/digits/__main__.py").read_text()},
                   {"concurrency": 32}),
        # The same code, micro-batched: concurrent activations share one forward pass.
        "reviews": ({"kind": "python:3-ml", "code": sentiment_zip(), "main": "main_batched"},
                    {"concurrency": 32}),
    }  # fmt: skip
    for name, (exec_, limits) in actions.items():
        doc = client.put_action(name, exec_, limits)
        exec_doc = doc["exec"]
        print(f"  PUT .../actions/{name} -> version {doc['version']}, kind {exec_doc['kind']}, "
              f"binary {exec_doc['binary']}, concurrency {doc['limits']['concurrency']}")  # fmt: skip


def invoke_once(client: WhiskClient) -> None:
    print("\n== 3. Invoke each once (POST ...?blocking=true): the first run starts a model host")
    calls = {"sentiment": {"text": REVIEWS[0]}, "digits": {"pixels": [0, 0, 5, 13, 9, 1, 0, 0] * 8}}
    for name, params in calls.items():
        with Progress(f"{name}, cold"):
            cold = client.invoke(name, params)
        warm = client.invoke(name, params)
        result = cold.record["response"]["result"] if cold.record else cold.status
        print(f"  {name}: {result}")
        cold_ms, warm_ms = 1000 * (cold.seconds or 0), 1000 * (warm.seconds or 0)
        print(f"    cold {cold_ms:.0f} ms (initTime {init_ms(cold)} ms), warm {warm_ms:.0f} ms")


def init_ms(invocation: Invocation) -> int | None:
    record = invocation.record or {}
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == "initTime"), None)


class MemorySampler:
    """PSS of every container of the stack and of its model hosts, each second."""

    def __init__(self, client: Any, labels: list[str]) -> None:
        self.client, self.labels = client, labels
        self.samples: list[tuple[float, float, int]] = []  # t, MB, containers
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            total, count = 0, 0
            for label in self.labels:
                for summary in self.client.api.containers(filters={"label": [label], "status": "running"}):
                    try:
                        rows = self.client.api.top(summary["Id"], ps_args="-o pid")["Processes"] or []
                    except docker.errors.DockerException:
                        continue
                    total += total_pss_bytes([int(row[0]) for row in rows])
                    count += 1
            self.samples.append((time.perf_counter() - self._t0, total / 1e6, count))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def burst(client: WhiskClient, sampler: MemorySampler) -> list[tuple[float, float, Invocation]]:
    print(f"\n== 4. A burst from zero containers: {BURST} REST invocations of reviews, {IN_FLIGHT} in flight")
    started = time.perf_counter()

    def one(i: int) -> tuple[float, float, Invocation]:
        sent = time.perf_counter() - started
        return (
            sent,
            time.perf_counter() - started,
            client.invoke("reviews", {"text": REVIEWS[i % len(REVIEWS)]}),
        )

    with Progress("burst"), ThreadPoolExecutor(IN_FLIGHT) as pool:
        return list(pool.map(one, range(BURST)))


def report(
    results: list[tuple[float, float, Invocation]],
    stack: StackProcess,
    docker_client: Any,
    sampler: MemorySampler,
) -> bool:
    ok = [inv for _, _, inv in results if inv.ok]
    latencies = sorted(1000 * inv.seconds for _, _, inv in results if inv.seconds is not None)
    ident = stack_id(stack.state_dir)
    events = docker_client.events(since=int(time.time() - 3600), until=int(time.time()) + 1,
                                  filters={"event": "create"}, decode=True)  # fmt: skip
    containers = hosts = 0
    for event in events:
        labels = event.get("Actor", {}).get("Attributes", {})
        containers += labels.get("warmwhisk.devstack") == ident
        hosts += labels.get("warmwhisk.owner") == f"warmwhisk-scaler.devstack-{ident}"
    peak = max((s[1] for s in sampler.samples), default=0.0)
    print(f"  {'activations':<34}{len(results)} ({len(ok)} succeeded)")
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    print(f"  {'latency p50 / p99':<34}{p50:.0f} / {p99:.0f} ms")
    print(
        f"  {'runs that started a container':<34}{sum(inv.cold for _, _, inv in results)} of {len(results)}"
    )
    print(f"  {'action containers created':<34}{containers} (2 prewarmed stem cells included)")
    print(f"  {'model hosts created':<34}{hosts} (each holds one copy of the model, shared)")
    print(f"  {'peak memory (PSS, all containers)':<34}{peak:.0f} MB")
    labels = sorted({inv.record["response"]["result"].get("label") for inv in ok if inv.record})
    print(f"  {'labels in the answers':<34}{labels}")
    plot(results, sampler)
    print(f"\n  plot: {OUT / 'demo.png'}   (`make bench-stack` compares this with OpenWhisk's own settings)")
    return len(ok) == len(results)


def plot(results: list[tuple[float, float, Invocation]], sampler: MemorySampler) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    done = sorted((sent + (inv.seconds or 0), 1000 * (inv.seconds or 0)) for sent, _, inv in results)
    top.scatter([d[0] for d in done], [d[1] for d in done], s=12)
    top.set_ylabel("latency (ms)")
    top.set_title("a burst of `reviews` through OpenWhisk's REST API (warmwhisk devstack)")
    bottom.plot(
        [s[0] for s in sampler.samples], [s[1] for s in sampler.samples], label="PSS of all containers (MB)"
    )
    bottom.set_ylabel("memory (MB)")
    bottom.set_xlabel("seconds since the burst began")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "demo.png", dpi=100)


def main() -> None:
    print("== 1. Start the dev stack: OpenWhisk's REST API, a private Redis, the scaler")
    stack = StackProcess(
        free_loopback_port(),
        OUT / "state",
        ["--image", IMAGE, "--models-dir", str(REPO / "build/models")],
        cwd=REPO,
    )
    with Progress("starting"):
        stack.start(ready_timeout_s=180)
    ok = False
    try:
        print(f"  API {stack.api_host}/api/v1, guest key in {stack.state_dir / 'auth' / 'guest'}")
        client = stack.client()
        create_actions(client)
        invoke_once(client)
        docker_client = docker.from_env()
        ident = stack_id(stack.state_dir)
        sampler = MemorySampler(
            docker_client,
            [f"warmwhisk.devstack={ident}", f"warmwhisk.owner=warmwhisk-scaler.devstack-{ident}"],
        )
        results = burst(client, sampler)
        sampler.stop()
        ok = report(results, stack, docker_client, sampler)
    finally:
        with Progress("stopping (removing every container)"):
            stack.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
