"""Benchmarks of the scaler path: slot routing, routed-mode overhead, routed cold start, and a
burst + ramp on real containers under the hybrid policy against OpenWhisk's default policy.

Everything is measured side by side in ONE run on this machine; each section starts its own
password-protected redis-server on a free loopback port (no persistence).

1. registry   `acquire + release` of one slot on loopback Redis: `bench/bench_registry.py`, run as
              it is (its table is relayed; its JSON gives `acquire_release_p50_ms`).
2. overhead   The trivial action `def main(args): return args` (bench_runtime's), value {"x": 1}:
              a direct-mode runtime running it, against a routed-mode runtime forwarding every
              activation to one warm model host. All three are local processes
              (`python -m warmwhisk_runtime`, loopback); the host is started by a Controller
              (ProcessBackend, pool pinned to 1 host, per-host limit 16). Client: bench_runtime's,
              lib/load.py `measure`/`http_worker` (one keep-alive http.client connection per client thread,
              every request timed); c=1 and c=8; rounds interleave direct and routed (the order
              rotates each round); medians of the per-round p50/p99. `routed_extra_p50_ms` is the
              c=1 figure (per-activation cost); c=8 is reported beside it.
3. coldstart  Time from `docker run` (docker SDK: create + start) of a NEW container to its first
              /run answer: the action port accepts a connection -> /init -> /run.
                routed: WARMWHISK_MODE=routed; /init registers the action (examples/bert `main`),
                        /run is forwarded to a warm model host that already holds bert-base (a
                        container started by a Controller with DockerBackend, pool pinned to 1).
                stock:  a direct-mode container whose action, at /init, imports torch, builds the
                        module on the meta device and loads a COPY of the weights with
                        `safetensors.torch.load_file` + `load_state_dict(assign=True)` (what
                        Hugging Face's `from_pretrained` does; cheaper than torch.load into an
                        initialised module, so the ratio is conservative), then answers /run.
              Both mount build/models read-only at /models; one untimed warm-up of each, then
              repetitions alternate routed/stock; medians.
4. burst      Real model-host containers (DockerBackend), driven by a Controller thread, once with
              `ScalerSettings(policy="hybrid")` and once with `policy="openwhisk"`; policy defaults
              otherwise, capped by the pool knob `max_hosts` (pool_config) and a per-host memory
              limit. Entry point: one routed-mode runtime (local process). Workload (identical for
              both, open loop): a burst of N concurrent activations at t=0, plus a linear ramp of
              arrivals from r0 to r1 req/s over D seconds. Action: examples/bert `main` at
              sequence 16 (default) or examples/digits. Per policy: containers created, cold
              starts (activations that found no free slot and waited while a host of the pool was
              starting: the routers' waiting set in Redis is read every 50 ms), p50/p99 end-to-end
              latency (from the scheduled arrival), errors, peak memory (sum of the PSS of every
              process of every host container, host PIDs from `docker top`, sampled every second)
              and memory-seconds (that sum integrated until the last answer).

stdout: the tables, then as its LAST line a one-line JSON summary (progress goes to stderr).
Full results: build/bench/scaler.json. Containers carry the labels `warmwhisk.bench=1` and
`warmwhisk.bench.run=<run id>` and are removed at the end, on errors and on SIGTERM too.
Usage: .venv/bin/python bench/bench_scaler.py [--quick] [--sections registry,overhead,coldstart,burst]
"""

from __future__ import annotations

import argparse
import sys

from lib.targets import REPO
from scaler.bench import run
from scaler.config import SECTIONS


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 3 minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default=str(REPO / "build" / "models"))
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "scaler.json"))
    parser.add_argument("--rounds", type=int, default=5, help="overhead: interleaved rounds")
    parser.add_argument("--reps", type=int, default=5, help="coldstart: repetitions of each container kind")
    parser.add_argument("--burst", type=int, default=24, help="burst: concurrent activations at t=0")
    parser.add_argument(
        "--max-hosts", type=int, default=16, help="burst: pool knob max_hosts for both policies"
    )
    parser.add_argument("--host-memory-gib", type=int, default=1, help="memory limit of each host container")
    parser.add_argument("--ramp-from", type=float, default=1.0)
    parser.add_argument("--ramp-to", type=float, default=6.0)
    parser.add_argument("--ramp-seconds", type=float, default=45.0)
    parser.add_argument("--burst-action", choices=("bert", "digits"), default="bert")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
