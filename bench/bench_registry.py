"""Latency of the scaler registry's slot routing: acquire plus release on a loopback Redis.

Starts its own password-protected redis-server on a free 127.0.0.1 port (no persistence), registers
`--hosts` warm model hosts for one action (each with room to spare, so every acquire scans them all),
then times `--requests` operations after `--warmup` untimed ones, each on its own with
`time.perf_counter_ns`, from one client thread:

  raw ping         PING written to and read from a plain socket: the loopback round-trip floor;
  ping             PING through redis-py: the floor plus the client library's own cost;
  acquire          `RedisRegistry.acquire`: one EVALSHA of the acquire script, on the connection
                   the registry pins to the calling thread (no pool checkout, no per-command hooks);
  release          `RedisRegistry.release` with a duration: one EVALSHA of the release script,
                   likewise;
  acquire+release  the two back to back: what one routed activation adds (`acquire_release_p50_ms`);
  acquire+release  again with `--many-hosts` hosts serving the action, to show how the scan grows.

Besides wall-clock latency, each row gives the client's CPU time per operation (process time of this
process) and Redis's own time per operation (`INFO commandstats`, i.e. script execution): on a
shared machine these two stay put while the wall-clock figures absorb scheduling noise.
`--rounds` repeats everything; the table reports the median of the per-round values.

stdout carries only the table and, as the very last line, a one-line JSON summary; progress goes
to stderr. Usage: .venv/bin/python bench/bench_registry.py [--requests N] [--rounds N] [--hosts N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable

from lib.report import emit_summary, medians, pct_nearest_index
from lib.targets import redis_server
from warmwhisk_protocol.keys import RedisKeys
from warmwhisk_protocol.records import HostRecord, Slot
from warmwhisk_protocol.registry import RedisRegistry, connect_redis

ACTION = "/bench/echo"
ACTION_MANY = "/bench/echo-many"  # served by its own `--many-hosts` hosts
HOST_LIMIT = 64
TARGET_P50_MS = 0.3
METRICS = ("p50", "p99", "mean", "client_us", "redis_us")


def heartbeat_hosts(registry: RedisRegistry, count: int, action: str) -> None:
    for i in range(count):
        registry.heartbeat(
            HostRecord(
                host_id=f"{action.rsplit('/', 1)[1]}-{i:03d}",
                address=f"127.0.0.1:{20000 + i}",
                namespace="bench",
                actions=(action,),
                models=("echo",),
                state="warm",
                limit=HOST_LIMIT,
            )
        )


def run(registry: RedisRegistry, ops: list[Callable[[], object]], warmup: list[Callable[[], object]]) -> dict:
    """Time each op; client CPU and Redis time are per op, over the whole timed span."""
    for op in warmup:
        op()
    registry.redis.config_resetstat()
    samples = []
    cpu_start = time.process_time()
    for op in ops:
        start = time.perf_counter_ns()
        op()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    cpu = time.process_time() - cpu_start
    stats = registry.redis.info("commandstats")
    redis_us = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_config")
    samples.sort()
    return {
        "p50": pct_nearest_index(samples, 0.5),
        "p99": pct_nearest_index(samples, 0.99),
        "mean": statistics.fmean(samples),
        "client_us": cpu * 1e6 / len(ops),
        "redis_us": redis_us / len(ops),
    }


def raw_ping(host: str, port: int, password: str) -> Callable[[], object]:
    """PING over a bare, authenticated TCP socket (RESP by hand): no client library in the way."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    secret = password.encode()
    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
    assert sock.recv(64) == b"+OK\r\n"

    def ping() -> None:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        if sock.recv(64) != b"+PONG\r\n":
            raise AssertionError("unexpected reply to PING")

    return ping


def one_round(
    registry: RedisRegistry, raw: Callable[[], object], hosts: int, many_hosts: int, n: int, warmup: int
) -> dict[str, dict]:
    def pair(action: str = ACTION) -> None:
        slot = registry.acquire(action)
        assert slot is not None
        registry.release(slot, duration_s=0.001)

    def pair_many() -> None:
        pair(ACTION_MANY)

    held: list[Slot] = []

    def acquire() -> None:
        slot = registry.acquire(ACTION)
        assert slot is not None
        held.append(slot)

    def release() -> None:
        registry.release(held.pop(), duration_s=0.001)

    # Acquire and release are timed apart in batches that never run out of room.
    batch = min(n, hosts * HOST_LIMIT // 2)
    results: dict[str, dict] = {
        "raw ping": run(registry, [raw] * n, [raw] * warmup),
        "ping": run(registry, [registry.redis.ping] * n, [registry.redis.ping] * warmup),
    }
    acquires, releases = [], []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        acquires.append(run(registry, [acquire] * size, []))
        releases.append(run(registry, [release] * size, []))
    results["acquire"] = medians(acquires, METRICS)
    results["release"] = medians(releases, METRICS)
    results["acquire+release"] = run(registry, [pair] * n, [pair] * warmup)
    results[f"acquire+release, {many_hosts} hosts"] = run(registry, [pair_many] * n, [pair_many] * warmup)
    busy = [record.host_id for record in registry.hosts() if record.slots_in_use]
    assert not busy, f"slots left in use on {busy}"
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="timed operations per row and round")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--many-hosts", type=int, default=64)
    return parser.parse_args(argv)


def measure_rounds(args: argparse.Namespace) -> tuple[str, list[dict[str, dict]]]:
    """(the redis-server version, each round's rows)."""
    rounds = []
    server = redis_server()
    try:
        keys = RedisKeys().namespace("bench")
        registry = RedisRegistry(connect_redis(server.url), keys, heartbeat_ttl_s=3600.0)
        version = registry.redis.info("server")["redis_version"]
        heartbeat_hosts(registry, args.hosts, ACTION)
        heartbeat_hosts(registry, args.many_hosts, ACTION_MANY)
        raw = raw_ping(server.host, server.port, server.password)
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds} ...", file=sys.stderr)
            rounds.append(one_round(registry, raw, args.hosts, args.many_hosts, args.requests, args.warmup))
    finally:
        server.close()
    return version, rounds


def print_table(args: argparse.Namespace, version: str, table: dict[str, dict[str, float]]) -> None:
    print(
        f"registry slot routing: redis-server {version} on loopback, one client thread, {args.hosts} hosts "
        f"unless noted; median of {args.rounds} rounds of {args.requests}"
    )
    print(f"{'operation':<30}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'client µs':>11}{'redis µs':>10}")
    for name, row in table.items():
        print(
            f"{name:<30}{row['p50']:>9.3f}{row['p99']:>9.3f}{row['mean']:>9.3f}"
            f"{row['client_us']:>11.1f}{row['redis_us']:>10.1f}"
        )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    version, rounds = measure_rounds(args)
    table = {name: medians([r[name] for r in rounds], METRICS) for name in rounds[0]}
    print_table(args, version, table)
    pair = table["acquire+release"]
    emit_summary(
        {
            "acquire_release_p50_ms": round(pair["p50"], 4),
            "acquire_release_p99_ms": round(pair["p99"], 4),
            "acquire_p50_ms": round(table["acquire"]["p50"], 4),
            "release_p50_ms": round(table["release"]["p50"], 4),
            "ping_p50_ms": round(table["ping"]["p50"], 4),
            "raw_ping_p50_ms": round(table["raw ping"]["p50"], 4),
            "acquire_release_client_cpu_us": round(pair["client_us"], 1),
            "acquire_release_redis_us": round(pair["redis_us"], 1),
            f"acquire_release_p50_ms_{args.many_hosts}_hosts": round(
                table[f"acquire+release, {args.many_hosts} hosts"]["p50"], 4
            ),
            "hosts": args.hosts,
            "requests": args.requests,
            "rounds": args.rounds,
            "target_p50_ms": TARGET_P50_MS,
            "meets_target": pair["p50"] <= TARGET_P50_MS,
        }
    )


if __name__ == "__main__":
    main(sys.argv[1:])
