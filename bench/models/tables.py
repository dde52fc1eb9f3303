"""The throughput section's tables: 3a the in-process ceiling, 3b bert-base through the runtime,
3c.. the small models (each with its batching ceiling)."""

from __future__ import annotations

import argparse
from typing import Any

from lib.report import table
from models.actions import SMALL_MODELS, ExampleActions
from models.config import BERT_MAX_BATCH, RATIO_ROUNDS, SEQ_LEN

# The first columns of every runtime throughput table: one concurrency level, batching off and on.
ON_OFF_COLUMNS = [
    "clients", "unbatched", "p50", "p99", "batched", "p50", "p99", "mean batch", "batch call ms",
]  # fmt: skip


def on_off_cells(unbatched: dict[str, Any], batched: dict[str, Any], rate_format: str) -> list[Any]:
    """The cells under ON_OFF_COLUMNS for one concurrency level's unbatched and batched points."""
    return [
        f"c={unbatched['concurrency']}",
        format(unbatched["rps"], rate_format),
        unbatched["p50_ms"],
        unbatched["p99_ms"],
        format(batched["rps"], rate_format),
        batched["p50_ms"],
        batched["p99_ms"],
        batched["mean_batch"],
        batched["batch_ms_p50"],
    ]


def throughput_tables(
    args: argparse.Namespace, out: dict[str, Any], bert: ExampleActions, small: dict[str, ExampleActions]
) -> None:
    in_process_table(out)
    bert_table(args, out, bert)
    for index, (name, actions) in enumerate(small.items()):
        small_model_table(f"3{'cdefg'[index]}", name, actions, out[name])


def in_process_table(out: dict[str, Any]) -> None:
    ceiling = out["in_process"]
    rows = [
        [
            f"batch {bs}",
            f"{v['forward_ms']:.0f}",
            f"{v['rps']:.2f}",
            " / ".join(map(str, v["rps_per_round"])),
            " / ".join(map(str, v["other_cpu_per_round"])),
        ]
        for bs, v in ceiling.items()
    ]
    table(
        f"3a. In-process ceiling, bert-base, sequence {SEQ_LEN} (this process, torch threads "
        f"{out['torch_threads_in_process']})",
        [
            "",
            "forward ms",
            "req/s",
            "req/s before / after the runtime sweep",
            "other cores before / after",
        ],
        rows,
        [
            "req/s = batch / median forward time, of the round during which other processes used the "
            "least CPU; the model is the runtime's own load of build/models/bert-base",
            "the throughput ratio uses the in-process measurements taken right after each batched point "
            "(table 3b), not these rounds",
        ],
    )


def bert_table(args: argparse.Namespace, out: dict[str, Any], bert: ExampleActions) -> None:
    s = out["bert_summary"]
    rows = []
    for u, b in zip(out["bert"]["unbatched"], out["bert"]["batched"], strict=True):
        ok = "yes" if b["p99_within_bound"] else "no"
        if not b["p99_within_bound"] and b["queued_batches"] > 1:
            ok = f"no ({b['queued_batches']} batches queue)"
        rows.append(
            [
                *on_off_cells(u, b, ".2f"),
                f"{b['in_process_rps']:.2f} @{b['in_process_batch']}",
                f"{b['ratio_vs_in_process']:.2f}",
                b["p99_bound_ms"],
                ok,
                b["outside_batch_p99_ms"],
                "yes" if b["outside_batch_within_delay"] else "no",
                f"{u['other_cpu_util']}/{b['other_cpu_util']}",
            ]
        )
    pooled = s["ratio_vs_rounds_at_nearest_batch"]
    best = s["best_batched"]
    table(
        "3b. Runtime throughput, bert-base (req/s; latency ms)",
        [
            *ON_OFF_COLUMNS,
            "in-process adjacent",
            "ratio",
            "p99 bound",
            "p99 <= bound",
            "p99 outside batch",
            "<= delay",
            "other cores u/b",
        ],
        rows,
        [
            f"runtime: {out['runtime_kind']}; unbatched {bert.unbatched.origin}; "
            f"batched {bert.batched.origin}; "
            f"max_batch_size {BERT_MAX_BATCH}, max_batch_delay {args.bert_delay_ms:g} ms",
            "in-process adjacent: measured right after each batched point, at its mean batch size (rounded)",
            f"throughput ratio = median over {RATIO_ROUNDS} rounds at c={best['concurrency']} (the best "
            "batched point) of served req/s / in-process req/s measured right after it at the batch "
            "size it reached: "
            + ", ".join(f"{r['ratio_vs_in_process']:.3f}" for r in s["ratio_rounds"])
            + f" -> {s['throughput_ratio_vs_inprocess']:.3f} "
            f"(best sweep point against table 3a at batch {pooled['batch']}: {pooled['ratio']:.3f})",
            f"batching gain = {best['rps']:.2f} / best unbatched {s['best_unbatched']['rps']:.2f} "
            f"(c={s['best_unbatched']['concurrency']}) = {s['batching_gain']:.3f}",
            "p99 bound = max_batch_delay + one in-process forward at the achieved batch size; with more "
            "clients than max_batch_size a request can queue behind whole batches",
            "p99 outside batch = p99 over requests of (latency - the time its own batch call took in the "
            "runtime): HTTP, gathering and queueing, which the batcher promises to keep within the delay",
            f"other cores u/b: CPU other processes of the machine kept busy during the unbatched/batched "
            f"window (a point is measured up to {args.max_tries} times until that is <= "
            f"{args.quiet_cpu}; the quietest try is kept)",
        ],
    )


def small_model_table(number: str, name: str, actions: ExampleActions, s: dict[str, Any]) -> None:
    points = s["points"]
    rows = [
        [
            *on_off_cells(u, b, ".0f"),
            f"{c['rps']:.0f}",
            f"{u['server_cpu_ms_per_req']}/{b['server_cpu_ms_per_req']}/{c['server_cpu_ms_per_req']}",
            f"{u['other_cpu_util']}/{b['other_cpu_util']}/{c['other_cpu_util']}",
        ]
        for u, b, c in zip(points["unbatched"], points["batched"], points["ceiling"], strict=True)
    ]
    best = s["best"]
    table(
        f"{number}. Runtime throughput, {SMALL_MODELS[name][2]}, {SMALL_MODELS[name][3]} (req/s; latency ms)",
        [
            *ON_OFF_COLUMNS,
            "ceiling",
            "server cpu ms/req u/b/c",
            "other cores u/b/c",
        ],
        rows,
        [
            f"unbatched: {actions.unbatched.origin}; batched: {actions.batched.origin}",
            f"ceiling: {s['ceiling_action']}: what batching could reach if parsing and the model cost "
            "nothing (HTTP, JSON and the batcher only)",
            "batch call ms: median time of the batch entry point call, per request (the model's cost)",
            f"batching gain = best batched {best['batched']['rps']:.0f} "
            f"(c={best['batched']['concurrency']}) / best unbatched {best['unbatched']['rps']:.0f} "
            f"(c={best['unbatched']['concurrency']}) = "
            f"{s['batching_gain']:.3f}; at most {s['batching_gain_ceiling']:.3f} (ceiling "
            f"{best['ceiling']['rps']:.0f} / best unbatched)",
        ],
    )
