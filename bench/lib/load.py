"""The load generators every benchmark drives its targets with, and the CPU accounting around them.

Closed loop, fixed count (`measure`): `concurrency` client threads, each with its own keep-alive
`http.client` connection (or an in-process call), send `warmup` untimed requests, meet at a barrier,
then send `count` back-to-back requests, each timed on its own with `time.perf_counter_ns`; the
request body is built outside the timed span. Result: p50/p99, rate, CPU per request.

Closed loop, time window (`window_point`): the clients send back to back from the start; the window
opens once every client got its first answer, plus a warm-up, and closes after `duration` seconds
once every client started `min_cycles` + 1 requests in it (or after `max_point_s`). The rate is the
sum over clients of each one's request rate (1 / cycle time), latencies are those of requests
started in the window, and the CPU other processes used meanwhile is the point's noise.

Open loop (`open_loop`): one thread per arrival, started at its scheduled time.

`quietest` repeats a measurement while other processes kept the machine busy, keeping the quietest.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lib.report import loadavg, pct, rnd

HEADERS = {"Content-Type": "application/json"}
T = TypeVar("T")
# A client thread body of `measure`: (count, warmup, barrier, latencies in ns out).
Worker = Callable[[int, int, threading.Barrier, list[int]], None]


# -------------------------------------------------------------------------------------- requests
def http_json(port: int, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    """One request on a fresh loopback connection; the answer parsed as JSON (None if empty)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=HEADERS if data is not None else {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes, bool]:
    """POST on a keep-alive connection: (status, answer, whether the server closes the connection)."""
    conn.request("POST", path, body=body, headers=HEADERS)
    response = conn.getresponse()
    data = response.read()
    return response.status, data, response.will_close


def run_body(value: Any, deadline_s: float = 60.0, invoker_context: bool = False) -> bytes:
    """A /run body: the value, a fresh activation id and a deadline `deadline_s` ahead; with
    `invoker_context`, also the namespace, action name and transaction id the invoker sends."""
    body: dict[str, Any] = {"value": value}
    if invoker_context:
        body.update(namespace="guest", action_name="/guest/bench", transaction_id=uuid.uuid4().hex)
    body["activation_id"] = uuid.uuid4().hex
    body["deadline"] = str(int(time.time() * 1000) + int(deadline_s * 1000))
    return json.dumps(body).encode()


# ------------------------------------------------------------------------------------ CPU (/proc)
def tree_pids(root: int) -> list[int]:
    """`root` and its descendants, every thread's children included (Linux /proc)."""
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes, all threads (those gone count 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy (user, nice, system, irq, softirq, steal).
    Raises when /proc/stat cannot be read: the noise of a point is then unknown, never zero."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot measure the machine's CPU use (noise) from /proc/stat: {exc}") from exc
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def quietest(
    attempt: Callable[[], T],
    noise: Callable[[T], float],
    max_tries: int,
    quiet_cpu: float,
    on_noisy: Callable[[T], None] | None = None,
) -> tuple[T, list[T]]:
    """Run `attempt` again (up to `max_tries`) while its `noise` (cores other processes kept busy)
    exceeds `quiet_cpu`: (the quietest try, every try)."""
    tries: list[T] = []
    while len(tries) < max_tries:
        tries.append(attempt())
        if noise(tries[-1]) <= quiet_cpu:
            break
        if on_noisy is not None:
            on_noisy(tries[-1])
    return min(tries, key=noise), tries


# --------------------------------------------------------------------- closed loop, fixed count
class CpuSource(Protocol):
    def cpu_seconds(self) -> float | None: ...


def http_worker(port: int, value: Any) -> Worker:
    """A client thread of `measure`: its own keep-alive connection to `port`, POST /run of `value`
    with the invoker's context; `warmup` untimed, then `count` timed requests."""
    expected = json.dumps(value).encode()

    def worker(count: int, warmup: int, barrier: threading.Barrier, out: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        clock = time.perf_counter_ns
        try:
            for _ in range(warmup):
                _keepalive(post(conn, "/run", run_body(value, invoker_context=True)))
            barrier.wait()
            append = out.append
            for _ in range(count):
                body = run_body(value, invoker_context=True)  # built outside the timed span
                start = clock()
                status, data, closing = post(conn, "/run", body)
                append(clock() - start)
                _keepalive((status, data, closing))
                if status != 200:
                    raise RuntimeError(f"status {status}: {data[:200]!r}")
            if data != expected and json.loads(data) != value:
                raise RuntimeError(f"unexpected result {data[:200]!r}")
        finally:
            conn.close()

    return worker


def _keepalive(answer: tuple[int, bytes, bool]) -> None:
    if answer[2]:
        raise RuntimeError("the server closed the keep-alive connection")


def inprocess_worker(main: Callable[[Any], Any], value: dict[str, Any]) -> Worker:
    """A client thread of `measure` that calls the action's `main` directly (a fresh dict each)."""

    def worker(count: int, warmup: int, barrier: threading.Barrier, out: list[int]) -> None:
        clock = time.perf_counter_ns
        for _ in range(warmup):
            main(dict(value))
        barrier.wait()
        append = out.append
        for _ in range(count):
            args = dict(value)  # what the runtime hands the action: a fresh dict per activation
            start = clock()
            main(args)
            append(clock() - start)

    return worker


def measure(worker: Worker, concurrency: int, count: int, warmup: int, server: CpuSource | None) -> dict:
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
        "p50_ms": pct(samples, 50) / 1e6,
        "p99_ms": pct(samples, 99) / 1e6,
        "rate": len(samples) / elapsed_s,
        "client_cpu_us": client_cpu / len(samples) * 1e6,
    }
    if server_cpu is not None and server_cpu_end is not None:
        result["server_cpu_us"] = (server_cpu_end - server_cpu) / len(samples) * 1e6
    return result


# --------------------------------------------------------------------- closed loop, time window
class WindowTarget(Protocol):
    port: int

    def cpu_seconds(self) -> float: ...
    def logs(self) -> str: ...


@dataclass(frozen=True)
class Window:
    """When a `window_point` window opens and closes (seconds)."""

    duration: float
    warmup: float
    min_cycles: int
    max_point_s: float
    max_first_s: float


class _Clients:
    """The client threads of one windowed point, and what they recorded."""

    def __init__(self, port: int, value: dict[str, Any], concurrency: int) -> None:
        self.port, self.value = port, value
        # (client, start, end, batch size, ms its batch call took)
        self.records: list[tuple[int, float, float, int | None, float | None]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.first_done = threading.Semaphore(0)
        self.window_start = math.inf
        self.starts_in_window = [0] * concurrency
        self.threads = [
            threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(concurrency)
        ]

    def client(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        first = True
        try:
            while not self.stop.is_set():
                body = run_body(self.value, deadline_s=600.0)
                t = time.perf_counter()
                if t >= self.window_start:
                    self.starts_in_window[index] += 1
                status, raw, _ = post(conn, "/run", body)
                t2 = time.perf_counter()
                self.record(index, t, t2, status, raw)
                if first:
                    first = False
                    self.first_done.release()
        except Exception as exc:  # noqa: BLE001 - reported by window_point
            with self.lock:
                self.errors.append(f"client {index}: {type(exc).__name__}: {exc}")
            if first:
                self.first_done.release()
        finally:
            conn.close()

    def record(self, index: int, t: float, t2: float, status: int, raw: bytes) -> None:
        answer = json.loads(raw)
        with self.lock:
            if status != 200 or (isinstance(answer, dict) and "error" in answer):
                self.errors.append(f"{status} {raw[:200]!r}")
            else:
                self.records.append((index, t, t2, answer.get("batch_size"), answer.get("batch_ms")))

    def hold_window(self, window: Window) -> float:
        """Wait until the window may close; returns when it opened."""
        start = self.window_start
        while True:
            time.sleep(0.02)
            elapsed = time.perf_counter() - start
            with self.lock:
                fewest, failed = min(self.starts_in_window), bool(self.errors)
            enough = elapsed >= window.duration and fewest >= window.min_cycles + 1
            if failed or enough or elapsed >= window.max_point_s:
                return start


def window_point(target: WindowTarget, value: dict[str, Any], concurrency: int, window: Window) -> dict:
    """One closed-loop point (see the module's doc), with its CPU use and the machine's noise."""
    clients = _Clients(target.port, value, concurrency)
    for thread in clients.threads:
        thread.start()
    first_deadline = time.perf_counter() + window.max_first_s
    for _ in range(concurrency):
        clients.first_done.acquire(timeout=max(0.0, first_deadline - time.perf_counter()))
    time.sleep(window.warmup)
    clients.window_start = time.perf_counter()
    cpu_start = target.cpu_seconds()
    machine_start, own_start = machine_busy_seconds(), time.process_time()
    window_start = clients.hold_window(window)
    window_end = time.perf_counter()
    cpu = target.cpu_seconds() - cpu_start
    client_cpu = time.process_time() - own_start
    other_cpu = machine_busy_seconds() - machine_start - cpu - client_cpu
    clients.stop.set()
    for thread in clients.threads:
        thread.join(timeout=600)
    errors = clients.errors
    if errors:
        logs = target.logs()[-2000:]
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[:3]}; logs:\n{logs}")
    span = (window_start, window_end)
    return {
        "concurrency": concurrency,
        **_window_stats(clients.records, span, concurrency, cpu, client_cpu, other_cpu),
    }


def _window_stats(
    records: list[tuple[int, float, float, int | None, float | None]],
    span: tuple[float, float],
    concurrency: int,
    cpu: float,
    client_cpu: float,
    other_cpu: float,
) -> dict[str, Any]:
    window_start, window_end = span
    seconds = window_end - window_start
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
    rps_window = len(done) / seconds
    # every client measured over at least one whole cycle, else the answers-per-window rate
    rps = sum(rates) if len(rates) == concurrency else rps_window
    return {
        "rps": rps,
        "rps_answers_in_window": rps_window,
        "completed": len(done),
        "started": len(started),
        "window_s": round(seconds, 2),
        "p50_ms": rnd(None if not latencies else 1000 * pct(latencies, 50), 1),
        "p99_ms": rnd(None if not latencies else 1000 * pct(latencies, 99), 1),
        # per batch (not per request): n items / sum over items of 1/(its batch size)
        "mean_batch": rnd(len(sizes) / sum(1 / s for s in sizes), 2) if sizes else None,
        "max_batch": max(sizes) if sizes else None,
        "outside_batch_p99_ms": rnd(1000 * pct(outside, 99), 1) if outside else None,
        "batch_ms_p50": rnd(pct([r[4] for r in started if r[4] is not None], 50), 2),
        "server_cpu_ms_per_req": rnd(1000 * cpu / (rps * seconds), 2) if rps else None,
        "server_cpu_util": rnd(cpu / seconds, 2),
        "client_cpu_util": rnd(client_cpu / seconds, 2),
        # cores busy with anything else on the machine during the window (noise)
        "other_cpu_util": rnd(max(0.0, other_cpu) / seconds, 2),
        "loadavg": loadavg(),
    }


# ------------------------------------------------------------------------------------ open loop
def open_loop(schedule: list[tuple[str, float]], send: Callable[[str, float], None], t0: float) -> None:
    """Start `send(phase, at)` in its own daemon thread at each scheduled time `at` (s after the
    perf_counter reading `t0`), then wait for them (at most until 200 s after t0): an interrupted
    run does not wait for them."""
    clients = []
    for phase, at in schedule:
        delay = at - (time.perf_counter() - t0)
        if delay > 0:
            time.sleep(delay)
        client = threading.Thread(target=send, args=(phase, at), daemon=True)
        client.start()
        clients.append(client)
    for client in clients:
        client.join(timeout=max(1.0, 200 - (time.perf_counter() - t0)))
