"""Benchmark of the dev stack: OpenWhisk's REST API and invoker behaviour, stock settings against
warmwhisk, in ONE run on this machine.

1. overhead  The stack's own time per blocking invocation on a warm container: a stack with one
             container (`--stock --no-prewarm`, the trivial action `def main(args): return args`);
             `POST .../actions/echo?blocking=true&result=true` against the same activation sent
             straight to that container's /run, alternating in rounds, c=1, keep-alive sessions;
             `api_overhead_p50_ms` is the median over rounds of the difference of the p50s.
2. burst     bench_scaler's workload through the REST API: a burst of N blocking invocations at
             t=0 plus a linear ramp from r0 to r1 req/s over D seconds (open loop), of the bert
             action (examples/bert, sequence 16), once on a stack with OpenWhisk's own settings
             (`--stock`: one activation per container, bert in each, action memory 1 GiB) and once
             with warmwhisk's (routed to model hosts of 1 GiB that the real scaler starts; action
             memory 256 MB, concurrency 32). Same memory budget (16 GiB) and prewarms in both.
             Per mode: containers created (Docker's create events: action containers and model
             hosts), cold starts (runs whose record has OpenWhisk's `initTime`, plus runs that
             waited in Redis for a model host that was starting), p50/p99 end-to-end latency from
             the scheduled arrival (a 202 after the 60 s blocking wait is followed by polling the
             record; its end counts), errors, peak memory and memory-seconds (PSS of every process
             of every container of the stack and of its model hosts, sampled each second).

stdout: the tables, then as its LAST line a one-line JSON summary with `stack_cold_starts_ratio_
vs_stock`, `stack_p99_ratio_vs_stock`, `stack_memory_s_ratio_vs_stock`, `api_overhead_p50_ms`.
Full results: build/bench/stack.json. Containers carry `warmwhisk.bench=1` and are removed.
Usage: .venv/bin/python bench/bench_stack.py [--quick]
"""

from __future__ import annotations

import argparse
import sys

from lib.targets import REPO
from stack.bench import run


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (burst 8, ramp 1->3 req/s over 15 s)")
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "stack.json"))
    parser.add_argument("--burst", type=int, default=24, help="blocking invocations at t=0")
    parser.add_argument("--ramp-from", type=float, default=1.0)
    parser.add_argument("--ramp-to", type=float, default=6.0)
    parser.add_argument("--ramp-seconds", type=float, default=45.0)
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--overhead-requests", type=int, default=300, help="per round and path")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
