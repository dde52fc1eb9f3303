"""Per-activation overhead of the warmwhisk runtime, against an in-process call and bare apps.

Every target runs the same trivial action (`def main(args): return args`, value {"x": 1}):

  in-process  the handler called directly in this process (no HTTP, no JSON): the action's own cost;
  wsgi        a ten-line WSGI function (read body, json.loads, json.dumps the value) under gunicorn;
  bare        a Flask app doing the same (`request.get_json()`, `jsonify(value)`) under gunicorn:
              the HTTP floor the targets are judged against;
  runtime     `python -m warmwhisk_runtime` with __OW_ALLOW_CONCURRENT=true, after one /init.

Both floors run under the runtime's own `RuntimeServer` gunicorn setup (1 worker, gthread, the
same thread count and keep-alive, same timeouts and logging), so only the WSGI application differs.
Every HTTP target gets the same /run body (value plus activation_id, transaction_id, namespace,
action_name and a deadline 60 s ahead), freshly built for each request outside the timed span.

Each target is measured at concurrency 1 and 8: that many client threads, each with its own
keep-alive `http.client.HTTPConnection`, send back-to-back requests, each timed on its own with
`time.perf_counter_ns`, after an untimed warm-up. Rounds rotate the order of the HTTP targets and
the table reports the median of the per-round values (p50, p99, activations/s, and the server's
CPU time per request read from /proc). The client process shares the machine's cores with the
server, so latencies include client cost and scheduling noise; compare targets, not absolutes.

stdout carries only the table and, as the very last line, a one-line JSON summary; progress goes
to stderr. Usage: .venv/bin/python bench/bench_runtime.py [--rounds N] [--requests-c1 N] ...
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNTIME_SRC = REPO / "action-runtime"

ACTION_CODE = "def main(args):\n    return args\n"
VALUE = {"x": 1}
EXPECTED = json.dumps(VALUE).encode()
HEADERS = {"Content-Type": "application/json"}

TARGETS = ("in-process", "wsgi", "bare", "runtime")
HTTP_TARGETS = ("wsgi", "bare", "runtime")
FLOOR_NAMES = {"wsgi": "wsgi", "flask": "bare"}
CONCURRENCY = (1, 8)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- the floor apps
def _wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The least a JSON-in, JSON-out WSGI app can do: read, parse, answer the value."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length))
    out = json.dumps(body.get("value", body)).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def floor_server_main(kind: str, port: int) -> None:
    """`bench_runtime.py --serve-floor {flask,wsgi} PORT`: a floor app under the runtime's own
    gunicorn setup (its `RuntimeServer.load_config`: 1 worker, gthread, threads, keep-alive,
    timeouts, logging), so only the application differs from the runtime."""
    sys.path.insert(0, str(RUNTIME_SRC))
    from warmwhisk_runtime.config import load_config
    from warmwhisk_runtime.server import RuntimeServer

    if kind == "flask":
        from flask import Flask, jsonify, request

        flask_app = Flask("bare")

        @flask_app.post("/run")
        def run() -> Any:
            body = request.get_json()
            return jsonify(body.get("value", body))

        app: Any = flask_app
    else:
        app = _wsgi_echo

    class FloorServer(RuntimeServer):
        def load(self) -> Any:
            return app

    config = load_config(["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"], os.environ)
    log(f"{kind} floor: threads={config.server_threads} keepalive={config.keepalive_s}s")
    FloorServer(config).run()


# ------------------------------------------------------------------------------ server processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark dies without cleaning up (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, logdir: Path) -> None:
        self.name = name
        self.port = port
        self.out_path = logdir / f"{name}.stdout.log"
        self.err_path = logdir / f"{name}.stderr.log"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=logdir,
                preexec_fn=_die_with_parent,
            )  # fmt: skip

    def tail(self) -> str:
        text = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return text[-2000:]

    def post(self, path: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body, HEADERS)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within {timeout_s}s")

    def cpu_seconds(self) -> float | None:
        """User+system CPU of the gunicorn arbiter and its worker, all threads (Linux /proc)."""
        try:
            pids = [self.process.pid]
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
                pids += [int(pid) for pid in f.read().split()]
            ticks = 0
            for pid in pids:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful stop
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("__OW_", "WARMWHISK_"))}
    # As in the runtime image (action-runtime/Dockerfile).
    env.update({"PYTHONPATH": str(RUNTIME_SRC), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@contextlib.contextmanager
def stopped_on_error(server: Server) -> Iterator[None]:
    """Stop a server that is not yet handed to its caller when its start-up fails."""
    try:
        yield
    except BaseException:
        server.stop()
        raise


def start_runtime(logdir: Path) -> Server:
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "warmwhisk_runtime", "--host", "127.0.0.1", "--port", str(port),
            "--metrics-port", str(metrics_port)]  # fmt: skip
    server = Server("runtime", argv, child_env({"__OW_ALLOW_CONCURRENT": "true"}), port, logdir)
    with stopped_on_error(server):
        server.wait_ready()
        init = {"value": {"name": "bench", "main": "main", "code": ACTION_CODE, "binary": False, "env": {}}}
        status, body = server.post("/init", json.dumps(init).encode())
        if status != 200:
            raise RuntimeError(f"runtime /init answered {status}: {body!r}\n{server.tail()}")
    return server


def start_floor(kind: str, logdir: Path) -> Server:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", kind, str(port)]
    # The same environment as the runtime, so load_config() gives the same thread count.
    server = Server(FLOOR_NAMES[kind], argv, child_env({"__OW_ALLOW_CONCURRENT": "true"}), port, logdir)
    with stopped_on_error(server):
        server.wait_ready()
    return server


# ----------------------------------------------------------------------------------- the clients
def run_body() -> bytes:
    """A /run body as the invoker sends it: the value plus the activation context."""
    return json.dumps(
        {
            "value": VALUE,
            "namespace": "guest",
            "action_name": "/guest/bench",
            "activation_id": uuid.uuid4().hex,
            "transaction_id": uuid.uuid4().hex,
            "deadline": str(int(time.time() * 1000) + 60_000),
        }
    ).encode()


def http_worker(port: int, count: int, warmup: int, barrier: threading.Barrier, out: list[int]) -> None:
    """One client thread: its own keep-alive connection, `warmup` untimed then `count` timed requests."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    clock = time.perf_counter_ns
    try:
        for _ in range(warmup):
            _exchange(conn, run_body())
        barrier.wait()
        append = out.append
        for _ in range(count):
            body = run_body()  # built outside the timed span
            start = clock()
            status, data = _exchange(conn, body)
            append(clock() - start)
            if status != 200:
                raise RuntimeError(f"status {status}: {data[:200]!r}")
        if data != EXPECTED and json.loads(data) != VALUE:
            raise RuntimeError(f"unexpected result {data[:200]!r}")
    finally:
        conn.close()


def _exchange(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/run", body, HEADERS)
    response = conn.getresponse()
    data = response.read()
    if response.will_close:
        raise RuntimeError("the server closed the keep-alive connection")
    return response.status, data


def inprocess_worker(
    main: Callable[[Any], Any], count: int, warmup: int, barrier: threading.Barrier, out: list[int]
) -> None:
    clock = time.perf_counter_ns
    for _ in range(warmup):
        main(dict(VALUE))
    barrier.wait()
    append = out.append
    for _ in range(count):
        args = dict(VALUE)  # what the runtime hands the action: a fresh dict per activation
        start = clock()
        main(args)
        append(clock() - start)


def measure(
    worker: Callable[..., None], concurrency: int, count: int, warmup: int, server: Server | None
) -> dict[str, float]:
    """Run `concurrency` workers of `count` timed calls each; latencies in ms, rate in calls/s,
    and CPU per call in microseconds (this client process, and the server when there is one)."""
    outs: list[list[int]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)

    def target(out: list[int]) -> None:
        try:
            worker(count, warmup, barrier, out)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(out,), daemon=True) for out in outs]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    started, client_cpu = time.perf_counter_ns(), time.process_time()
    server_cpu = server.cpu_seconds() if server else None
    for thread in threads:
        thread.join()
    elapsed_s = (time.perf_counter_ns() - started) / 1e9
    client_cpu = time.process_time() - client_cpu
    server_cpu_end = server.cpu_seconds() if server else None
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}") from errors[0]
    samples = sorted(x for out in outs for x in out)
    result = {
        "p50_ms": percentile(samples, 0.50) / 1e6,
        "p99_ms": percentile(samples, 0.99) / 1e6,
        "rate": len(samples) / elapsed_s,
        "client_cpu_us": client_cpu / len(samples) * 1e6,
    }
    if server_cpu is not None and server_cpu_end is not None:
        result["server_cpu_us"] = (server_cpu_end - server_cpu) / len(samples) * 1e6
    return result


def percentile(sorted_samples: list[int], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q * len(sorted_samples)))
    return float(sorted_samples[rank - 1])


# ------------------------------------------------------------------------------------- reporting
def _table_order(item: tuple[tuple[str, int], Any]) -> tuple[int, int]:
    (target, concurrency), _ = item
    return concurrency, TARGETS.index(target)


def runtime_fingerprint() -> dict[str, Any]:
    """Which runtime code was measured: git HEAD, whether action-runtime/ differs from it, and a
    hash of the package's sources as they are on disk."""
    digest = hashlib.sha256()
    for path in sorted((RUNTIME_SRC / "warmwhisk_runtime").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    info: dict[str, Any] = {"src_sha256": digest.hexdigest()[:12]}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        quiet: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 5}
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], **quiet)
        package = str(RUNTIME_SRC / "warmwhisk_runtime")
        dirty = subprocess.run([*git, "status", "--porcelain", "--", package], **quiet)
        if head.returncode == 0:
            info["git_head"] = head.stdout.strip()
            info["dirty"] = bool(dirty.stdout.strip())
    return info


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def render_table(
    results: dict[tuple[str, int], dict[str, float]], per_round: dict[tuple[str, int], list[dict[str, float]]]
) -> str:
    header = (
        f"{'target':<12}{'conc':>5}{'p50 ms':>10}{'p99 ms':>10}{'act/s':>10}{'srv cpu':>10}{'cli cpu':>10}"
        "   p50 ms per round"
    )
    lines = [header, f"{'':<27}{'':>20}{'us/req':>10}{'us/req':>10}", "-" * len(header)]
    for concurrency in CONCURRENCY:
        for target in TARGETS:
            if (target, concurrency) not in results:
                continue
            r = results[(target, concurrency)]
            server_cpu = f"{r['server_cpu_us']:.0f}" if "server_cpu_us" in r else "-"
            client_cpu = f"{r['client_cpu_us']:.0f}" if target != "in-process" else "-"
            rounds = " ".join(f"{x['p50_ms']:.3f}" for x in per_round[(target, concurrency)])
            lines.append(
                f"{target:<12}{concurrency:>5}{r['p50_ms']:>10.4f}{r['p99_ms']:>10.4f}{r['rate']:>10.0f}"
                f"{server_cpu:>10}{client_cpu:>10}   {rounds}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds; medians are reported")
    parser.add_argument("--requests-c1", type=int, default=3000, help="timed requests per round at c=1")
    parser.add_argument("--requests-c8", type=int, default=1500, help="timed requests per client at c=8")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per client before each")
    parser.add_argument("--no-wsgi-floor", action="store_true", help="skip the plain-WSGI floor")
    parser.add_argument("--serve-floor", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests_c1, args.requests_c8) < 1 or args.warmup < 0:
        parser.error("--rounds and --requests-* must be >= 1, --warmup >= 0")
    return args


def make_worker(action_main: Callable[[Any], Any], server: Server | None) -> Callable[..., None]:
    """A client-thread body for `measure`: the in-process call, or HTTP to `server`."""
    if server is None:
        return lambda n, w, b, o: inprocess_worker(action_main, n, w, b, o)
    port = server.port
    return lambda n, w, b, o: http_worker(port, n, w, b, o)


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def servers(logdir: Path, with_wsgi: bool) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        log("starting the floor apps and the runtime")
        if with_wsgi:
            started["wsgi"] = start_floor("wsgi", logdir)
        started["bare"] = start_floor("flask", logdir)
        started["runtime"] = start_runtime(logdir)
        yield started
    finally:
        for server in started.values():
            server.stop()
        log("servers stopped")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.serve_floor is not None:
        floor_server_main(args.serve_floor[0], int(args.serve_floor[1]))
        return 0
    signal.signal(signal.SIGTERM, _raise_on_sigterm)

    namespace: dict[str, Any] = {}
    exec(compile(ACTION_CODE, "<action>", "exec"), namespace)
    action_main = namespace["main"]
    counts = {1: args.requests_c1, 8: args.requests_c8}

    per_round: dict[tuple[str, int], list[dict[str, float]]] = {}
    began = time.monotonic()
    measured = runtime_fingerprint()  # the code the runtime process imports at its start
    with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-") as tmp, \
            servers(Path(tmp), not args.no_wsgi_floor) as running:  # fmt: skip
        http_targets = [t for t in HTTP_TARGETS if t in running]
        for round_no in range(args.rounds):
            # Rotate the HTTP targets' order, so drift (neighbours, caches) hits each alike.
            shift = round_no % len(http_targets)
            order = ["in-process", *http_targets[shift:], *http_targets[:shift]]
            for target in order:
                server = running.get(target)
                for concurrency in CONCURRENCY:
                    worker = make_worker(action_main, server)
                    result = measure(worker, concurrency, counts[concurrency], args.warmup, server)
                    per_round.setdefault((target, concurrency), []).append(result)
                    log(
                        f"round {round_no + 1}/{args.rounds} {target:<10} c={concurrency}: "
                        f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
                        f"{result['rate']:.0f}/s  server cpu {result.get('server_cpu_us', 0):.0f} us/req"
                    )
            for name, srv in running.items():
                if srv.process.poll() is not None:
                    raise RuntimeError(f"{name} died during the run:\n{srv.tail()}")

    if runtime_fingerprint()["src_sha256"] != measured["src_sha256"]:
        measured["changed_on_disk_during_run"] = True
        log("note: action-runtime/ changed on disk during the run; the numbers are for the code at its start")
    results = {key: median_of(rounds) for key, rounds in per_round.items()}
    rt1, rt8 = results[("runtime", 1)], results[("runtime", 8)]
    bare1, bare8 = results[("bare", 1)], results[("bare", 8)]
    inproc1 = results[("in-process", 1)]
    summary: dict[str, Any] = {
        "overhead_p50_ms_c1": round(rt1["p50_ms"] - inproc1["p50_ms"], 4),
        "throughput_ratio_vs_bare_c8": round(rt8["rate"] / bare8["rate"], 3),
        "p99_ratio_vs_bare_c8": round(rt8["p99_ms"] / bare8["p99_ms"], 3),
        "overhead_p50_ms_c1_vs_bare": round(rt1["p50_ms"] - bare1["p50_ms"], 4),
        "throughput_ratio_vs_bare_c1": round(rt1["rate"] / bare1["rate"], 3),
        "p99_ratio_vs_bare_c1": round(rt1["p99_ms"] / bare1["p99_ms"], 3),
    }
    if ("wsgi", 1) in results:
        wsgi1, wsgi8 = results[("wsgi", 1)], results[("wsgi", 8)]
        summary["overhead_p50_ms_c1_vs_wsgi"] = round(rt1["p50_ms"] - wsgi1["p50_ms"], 4)
        summary["throughput_ratio_vs_wsgi_c8"] = round(rt8["rate"] / wsgi8["rate"], 3)
        if "server_cpu_us" in rt1 and "server_cpu_us" in wsgi1:
            summary["server_cpu_us_c1_vs_wsgi"] = round(rt1["server_cpu_us"] - wsgi1["server_cpu_us"], 1)
    summary["targets_met"] = {
        "overhead_p50_ms_c1<=0.5": summary["overhead_p50_ms_c1"] <= 0.5,
        "throughput_ratio_vs_bare_c8>=0.8": summary["throughput_ratio_vs_bare_c8"] >= 0.8,
        "p99_ratio_vs_bare_c8<=1.2": summary["p99_ratio_vs_bare_c8"] <= 1.2,
    }
    summary.update(
        {
            "rounds": args.rounds,
            "requests": {"c1": args.requests_c1, "c8": f"8x{args.requests_c8}", "warmup": args.warmup},
            "cpus": os.cpu_count(),
            "runtime": measured,
            "seconds": round(time.monotonic() - began, 1),
            "raw": {
                f"{target}_c{c}": {k: round(v, 4 if k.endswith("_ms") else 1) for k, v in r.items()}
                for (target, c), r in sorted(results.items(), key=_table_order)
            },
        }
    )
    print(
        f"warmwhisk runtime vs floors, trivial action; median of {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs shared by client and server"
    )
    print(render_table(results, per_round))
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
