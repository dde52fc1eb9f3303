"""The in-process ceiling: bert-base called directly in this process (the action's own
`embed(*pad(...))` of identical 64-token sequences), as rounds over batch sizes and right after
each batched runtime point at the batch size it reached."""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any

from lib.load import machine_busy_seconds, quietest
from models.config import BERT_MAX_BATCH, SEQ_LEN, log
from models.context import ModelBench


def _timed_forwards(model: Any, inputs: list[list[int]], seconds: float) -> tuple[float, list[float]]:
    """(cores other processes kept busy meanwhile, forward times in s): at least 3, for `seconds`."""
    machine, own, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
    run: list[float] = []
    end = started + seconds
    while time.perf_counter() < end or len(run) < 3:
        t = time.perf_counter()
        model.embed(*model.pad(inputs), normalize=False)
        run.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    other = (machine_busy_seconds() - machine - (time.process_time() - own)) / wall
    return max(0.0, other), run


def forward_times(
    bench: ModelBench, model: Any, batches: tuple[int, ...] | list[int], seconds: float
) -> dict:
    """Forward times (s) per batch size, at least 3 per size. Each size is measured again (up to
    --max-tries) while other processes kept more than --quiet-cpu cores busy; the quietest try is
    kept (its noise appended to `bench.in_process_noise`)."""
    ids = [(1 + 31 * p) % model.config.vocab_size for p in range(SEQ_LEN)]
    times: dict[int, list[float]] = {}
    for bs in batches:
        inputs = [ids] * bs
        model.embed(*model.pad(inputs), normalize=False)  # warm-up (allocator, oneDNN primitives)
        attempt = functools.partial(_timed_forwards, model, inputs, seconds)
        (other, times[bs]), tries = quietest(
            attempt, lambda t: t[0], bench.args.max_tries, bench.args.quiet_cpu
        )
        bench.in_process_noise.append({"batch": bs, "other_cpu_util": round(other, 2), "tries": len(tries)})
    return times


def compare_adjacent(bench: ModelBench, model: Any, point: dict[str, Any]) -> None:
    """Right after a batched bert point: in-process at the batch size it achieved; the ratio and
    the p99 bounds of the point against it."""
    args = bench.args
    bs = max(1, round(point["mean_batch"] or 1))
    forward = statistics.median(forward_times(bench, model, [bs], args.adjacent_s)[bs])
    point["in_process_batch"] = bs
    point["in_process_other_cpu_util"] = bench.in_process_noise[-1]["other_cpu_util"]
    point["in_process_forward_ms"] = round(1000 * forward, 1)
    point["in_process_rps"] = round(bs / forward, 3)
    point["ratio_vs_in_process"] = round(point["rps"] * forward / bs, 3)
    point["p99_bound_ms"] = round(args.bert_delay_ms + 1000 * forward, 1)
    point["p99_within_bound"] = point["p99_ms"] is not None and point["p99_ms"] <= point["p99_bound_ms"]
    point["queued_batches"] = math.ceil(point["concurrency"] / BERT_MAX_BATCH)
    outside = point["outside_batch_p99_ms"]
    point["outside_batch_within_delay"] = outside is not None and outside <= args.bert_delay_ms
    log(
        f"  in-process at batch {bs}: {point['in_process_rps']:.2f} req/s "
        f"-> ratio {point['ratio_vs_in_process']:.3f}"
    )


def ceiling(
    rounds: list[dict[int, list[float]]], rounds_noise: list[list[dict]], batches: tuple[int, ...]
) -> dict:
    """Per batch size, the rate of the round during which other processes used the least CPU."""
    out: dict[int, dict[str, Any]] = {}
    for i, bs in enumerate(batches):
        others = [noise[i]["other_cpu_util"] for noise in rounds_noise]
        quietest_round = min(range(len(rounds)), key=lambda r: others[r])
        forward = statistics.median(rounds[quietest_round][bs])
        out[bs] = {
            "rps": bs / forward,
            "forward_ms": 1000 * forward,
            "rps_per_round": [round(bs / statistics.median(one[bs]), 2) for one in rounds],
            "other_cpu_per_round": others,
        }
    return out
