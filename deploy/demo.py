"""`make demo`: warmwhisk on one machine, driven the way OpenWhisk's invoker drives it.

Part 1, direct mode: one runtime container serves concurrent activations of an ordinary action.
Part 2, hybrid scaling: Redis and the scaler start; a routed container (what the invoker creates)
fronts warm model hosts the scaler starts on demand; a burst of sentiment-analysis activations on
the real all-MiniLM-L6-v2 model is answered, and the summary shows hosts, cold starts, latencies.
Every container and process it starts is removed at the end.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests")]  # the password-protected Redis launcher the tests use
from redis_harness import RedisProcess  # noqa: E402
from warmwhisk_protocol.credentials import without_credential  # noqa: E402

IMAGE = os.environ.get("IMAGE", "warmwhisk/runtime:dev")
MODELS = REPO / "build" / "models"
LABEL = "warmwhisk.demo"
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

# An ordinary OpenWhisk Python action: nothing warmwhisk-specific in it.
PLAIN_ACTION = """
import os, time

def main(args):
    text = args.get("text", "")
    time.sleep(0.05)  # stands in for I/O or a model call that releases the GIL
    print(f"classified {len(text)} characters")
    return {"activation": os.environ["__OW_ACTIVATION_ID"], "words": len(text.split())}
"""
REVIEWS = [
    "An absolute delight, the staff were warm and the food was superb.",
    "Cold soup, rude waiter, and we waited an hour. Never again.",
    "The battery lasts all week and the screen is gorgeous.",
    "It broke after two days and support never answered.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(
    port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    return response.status, payload, (time.perf_counter() - started) * 1000


def get(port: int, path: str, token: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return json.loads(conn.getresponse().read())


def wait_port(port: int, timeout_s: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listened on :{port} within {timeout_s}s")


def runtime_container(client: Any, env: dict[str, str]) -> tuple[Any, int]:
    port = free_port()
    container = client.containers.run(
        IMAGE,
        command=["/opt/warmwhisk/bin/python", "-m", "warmwhisk_runtime", "--host", "127.0.0.1",
                 "--port", str(port), "--metrics-port", str(free_port())],
        environment=env, network_mode="host", labels={LABEL: "1"}, detach=True,
    )  # fmt: skip
    return container, port


def run_burst(port: int, bodies: list[dict[str, Any]], concurrency: int) -> tuple[list, float, float]:
    """Send the bodies, `concurrency` at a time; (results, wall time, time to the first answer)."""
    deadline = str(int(time.time() * 1000) + 120_000)
    started = time.perf_counter()
    answered: list[float] = []

    def one(body: dict[str, Any]) -> tuple[int, Any, float]:
        result = post(port, "/run", {**body, "deadline": deadline})
        answered.append(time.perf_counter() - started)
        return result

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, bodies))
    return results, time.perf_counter() - started, min(answered)


def latency_line(results: list) -> str:
    ms = sorted(r[2] for r in results)
    return f"{statistics.median(ms):.0f} / {ms[int(0.99 * (len(ms) - 1))]:.0f} ms"


# --------------------------------------------------------------------------------------- part 1
def direct_mode(client: Any) -> bool:
    print("== Part 1: direct mode: one container, concurrent activations of a plain action")
    started = time.perf_counter()
    container, port = runtime_container(client, {"__OW_ALLOW_CONCURRENT": "true"})
    wait_port(port)
    status, _, init_ms = post(
        port, "/init", {"value": {"name": "classify", "main": "main", "code": PLAIN_ACTION}}
    )
    print(f"/init -> {status} in {init_ms:.1f} ms ({time.perf_counter() - started:.2f} s after docker run)")
    bodies = [{"value": {"text": f"request number {i} says hello"}, "activation_id": f"demo-{i:03d}"}
              for i in range(64)]  # fmt: skip
    results, wall, _ = run_burst(port, bodies, 16)
    ok = sum(1 for status, body, _ in results if status == 200 and "error" not in body)
    isolated = all(body.get("activation") == f"demo-{i:03d}" for i, (_, body, _) in enumerate(results))
    sentinels = container.logs(stdout=True, stderr=False).decode().count(SENTINEL)
    print(f"{'activations':<30}{len(results)} ({ok} ok), 16 in flight, one container")
    print(f"{'wall time':<30}{wall * 1000:.0f} ms (serially: {len(results) * 50} ms of action time)")
    print(f"{'latency p50 / p99':<30}{latency_line(results)}")
    print(f"{'per-activation __OW_* env':<30}{'isolated' if isolated else 'MIXED UP'}")
    print(f"{'log sentinels on stdout':<30}{sentinels} (one per activation)")
    return ok == len(results) and isolated


# --------------------------------------------------------------------------------------- part 2
@contextmanager
def scaler_service(redis: RedisProcess, prefix: str, token: str) -> Iterator[int]:
    """The scaler, its secrets in files (0600, in a 0700 folder): nothing shows in `ps`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="warmwhisk-demo-") as folder:
        url_file, token_file = Path(folder) / "redis-url", Path(folder) / "token"
        for path, value in ((url_file, redis.url), (token_file, token)):
            path.write_text(value + "\n")
            path.chmod(0o600)
        process = subprocess.Popen(
            [sys.executable, "-m", "warmwhisk_scaler", "--redis-url-file", str(url_file),
             "--token-file", str(token_file), "--port", str(port), "--backend", "docker", "--image", IMAGE,
             "--model-dir", str(MODELS), "--prefix", prefix, "--tick", "0.5", "--heartbeat", "0.5"],
            env=dict(os.environ), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_port(port)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def sentiment_zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(REPO / "examples" / "sentiment" / "__main__.py", "__main__.py")
    return base64.b64encode(buffer.getvalue()).decode()


def hybrid_scaling(client: Any) -> bool:
    print("\n== Part 2: hybrid scaling: Redis + scaler; a routed container fronts warm model hosts")
    prefix, token = f"demo-{secrets.token_hex(3)}", secrets.token_hex(16)
    with RedisProcess() as redis, scaler_service(redis, prefix, token) as scaler_port:
        # What the patched invoker gives every action container: the registry's address, no password.
        env = {
            "WARMWHISK_MODE": "routed",
            "WARMWHISK_ROUTER_URL": without_credential(redis.url),
            "WARMWHISK_REDIS_PREFIX": prefix,
        }
        # The namespace's credential, carried by its ML action as an init parameter.
        auth = {"Authorization": f"Bearer {token}"}
        credential = post(scaler_port, "/namespaces/guest/credential", {}, auth)
        assert credential[0] == 200, credential
        started = time.perf_counter()
        router, port = runtime_container(client, env)
        try:
            ready_s = wait_port(port)
            init_env = {"WARMWHISK_MODELS_DIR": "/models", "__OW_NAMESPACE": "guest",
                        "__OW_ACTION_NAME": "/guest/sentiment",
                        credential[1]["parameter"]: credential[1]["credential"]}  # fmt: skip
            status, body, init_ms = post(port, "/init", {"value": {"name": "sentiment", "main": "main",
                                                                    "binary": True, "code": sentiment_zip(),
                                                                    "env": init_env}})  # fmt: skip
            print(f"routed container: listening {ready_s:.2f} s after docker run, /init -> {status} "
                  f"in {init_ms:.0f} ms (no torch, no model: it only registers the action)")  # fmt: skip
            bodies = [
                {"value": {"text": REVIEWS[i % len(REVIEWS)]}, "activation_id": f"s-{i:03d}"}
                for i in range(48)
            ]
            results, wall, first_answer = run_burst(port, bodies, 24)
            ok = [body for status, body, _ in results if status == 200 and "label" in body]
            for text, (_, body, _) in zip(REVIEWS, results, strict=False):
                print(f"  {body.get('label', body)!s:<9} {text}")
            hosts = get(scaler_port, "/hosts", token)["hosts"]
            status_doc = get(scaler_port, "/status", token)
            decisions = get(scaler_port, "/decisions?limit=20", token)["decisions"]
            cold = [v for v in status_doc["controller"]["cold_start_s"].values() if v]
            print(f"{'activations':<30}{len(results)} ({len(ok)} answered), 24 in flight, from zero hosts")
            print(
                f"{'wall time':<30}{wall:.1f} s (first answer after {first_answer:.1f} s, incl. a cold start)"
            )
            print(f"{'latency p50 / p99':<30}{latency_line(results)}")
            print(f"{'model hosts created':<30}{len(hosts)} (limits {[h['routing_limit'] for h in hosts]})")
            print(f"{'measured host cold start':<30}{cold[0]:.1f} s" if cold else "")
            for entry in reversed(decisions[-5:]):
                print(f"  decision: {entry['kind']} x{entry['count']}: {entry['reason']}")
            print(f"{'time since docker run':<30}{time.perf_counter() - started:.1f} s")
            return len(ok) == len(results)
        finally:
            router.remove(force=True)
            for container in client.containers.list(
                all=True, filters={"label": f"warmwhisk.owner=warmwhisk-scaler.{prefix}"}
            ):
                container.remove(force=True)


def main() -> None:
    client = docker.from_env()
    try:
        ok = direct_mode(client)
        ok = hybrid_scaling(client) and ok
    finally:
        for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
            container.remove(force=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
