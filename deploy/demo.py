"""`make demo`: the runtime image serving concurrent activations, as OpenWhisk's invoker drives it.

Starts a container from the image (host network, 127.0.0.1), sends /init with an example action
the way the invoker does, fires concurrent /run calls, prints the results and timings, and
removes the container.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("IMAGE", "warmwhisk/runtime:dev")
LABEL = "warmwhisk.demo"
CONCURRENCY = 16
ACTIVATIONS = 64

# An ordinary OpenWhisk Python action: nothing warmwhisk-specific in it.
EXAMPLE_ACTION = '''
import os, time

def main(args):
    text = args.get("text", "")
    time.sleep(0.05)  # stands in for I/O or a model call that releases the GIL
    print(f"classified {len(text)} characters")
    return {"activation": os.environ["__OW_ACTIVATION_ID"], "words": len(text.split()),
            "shout": text.upper()}
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, path: str, body: dict[str, Any], conn: http.client.HTTPConnection | None = None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    return response.status, payload, (time.perf_counter() - started) * 1000


def wait_ready(port: int, timeout_s: float = 30) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"the runtime did not listen on :{port} within {timeout_s}s")


def main() -> None:
    client = docker.from_env()
    port, metrics_port = free_port(), free_port()
    started = time.perf_counter()
    container = client.containers.run(
        IMAGE,
        command=["/opt/warmwhisk/bin/python", "-m", "warmwhisk_runtime", "--host", "127.0.0.1",
                 "--port", str(port), "--metrics-port", str(metrics_port)],
        environment={"__OW_ALLOW_CONCURRENT": "true"},
        network_mode="host", labels={LABEL: "1"}, detach=True,
    )  # fmt: skip
    try:
        wait_ready(port)
        status, body, init_ms = post(port, "/init", {"value": {"name": "classify", "main": "main",
                                                                "code": EXAMPLE_ACTION, "binary": False}})
        first_answer_s = time.perf_counter() - started
        print(f"container {container.short_id} from {IMAGE}: /init -> {status} {body} in {init_ms:.1f} ms "
              f"({first_answer_s:.2f} s from docker run)")

        def activation(i: int) -> tuple[int, dict[str, Any], float]:
            deadline = str(int(time.time() * 1000) + 60_000)
            return post(port, "/run", {"value": {"text": f"request number {i} says hello"},
                                       "activation_id": f"demo-{i:03d}", "deadline": deadline,
                                       "namespace": "guest", "action_name": "/guest/classify"})

        wall = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(activation, range(ACTIVATIONS)))
        wall = time.perf_counter() - wall

        for status, body, ms in results[:4]:
            print(f"  {status} {ms:6.1f} ms  {body}")
        print(f"  ... {len(results) - 4} more")
        latencies = sorted(ms for _, _, ms in results)
        ok = sum(1 for status, body, _ in results if status == 200 and "error" not in body)
        isolated = all(body.get("activation") == f"demo-{i:03d}" for i, (_, body, _) in enumerate(results))
        print()
        print(f"{'activations':<28}{ACTIVATIONS} ({ok} ok), {CONCURRENCY} in flight at once, one container")
        print(f"{'wall time':<28}{wall * 1000:.0f} ms (serially: {ACTIVATIONS * 50} ms of action time)")
        print(f"{'throughput':<28}{ACTIVATIONS / wall:.0f} activations/s")
        print(f"{'latency p50 / p99':<28}{statistics.median(latencies):.1f} / "
              f"{latencies[int(0.99 * (len(latencies) - 1))]:.1f} ms")
        print(f"{'per-activation __OW_* env':<28}{'isolated' if isolated else 'MIXED UP'}")
        logs = container.logs(stdout=True, stderr=False).decode()
        print(f"{'log sentinels on stdout':<28}{logs.count('XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX')}")
        if ok != ACTIVATIONS or not isolated:
            sys.exit(1)
    finally:
        container.remove(force=True)


if __name__ == "__main__":
    main()
