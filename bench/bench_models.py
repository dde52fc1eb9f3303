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
import sys

from lib.targets import REPO
from models.bench import run
from models.config import BERT_MAX_DELAY_MS, CONCURRENCY, SECTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--quick", action="store_true", help="fewer repetitions, shorter points (debugging)")
    add(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of memory,coldstart,throughput"
    )
    add("--models", default=str(REPO / "build" / "models"), help="model folders (bert-base, digits)")
    add("--out", default=str(REPO / "build" / "bench"), help="results folder")
    add("--cold-reps", type=int, default=None, help="cold-start repetitions (default 5, quick 1)")
    add("--duration", type=float, default=None, help="seconds per throughput point (default 4, quick 2)")
    add("--warmup", type=float, default=None, help="seconds of warm-up per point (default 1, quick 0.5)")
    add("--inproc-s", type=float, default=None, help="seconds per batch size per in-process round")
    add("--concurrency", default=None, help="client concurrency levels (default 1,2,4,8,16,32)")
    add(
        "--adjacent-s",
        type=float,
        default=None,
        help="seconds of in-process forwards after each batched bert point (default 2, quick 1)",
    )
    add(
        "--min-cycles",
        type=int,
        default=None,
        help="answers per client a point's window must hold (default 2, quick 1)",
    )
    add("--max-point-s", type=float, default=None, help="longest window per point (default 30, quick 10)")
    add(
        "--quiet-cpu",
        type=float,
        default=0.3,
        help="cores other processes may keep busy during a throughput measurement before it is retried",
    )
    add("--max-tries", type=int, default=None, help="tries per noisy point (default 3, quick 2)")
    add(
        "--bert-delay-ms",
        type=float,
        default=BERT_MAX_DELAY_MS,
        help=f"max_batch_delay_ms of the batched bert action (default {BERT_MAX_DELAY_MS:g})",
    )
    add("--max-first-s", type=float, default=60.0, help="longest wait for every client's first answer")
    add("--wait-models-s", type=float, default=1200.0, help="how long to wait for build/models")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
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


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
