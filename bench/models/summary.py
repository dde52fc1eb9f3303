"""bench_models.py's JSON summary: the headline ratios, the raw figures behind them, and which
targets were missed or not measured."""

from __future__ import annotations

import argparse
from typing import Any

from lib.report import rnd
from models.actions import SMALL_MODELS
from models.config import TARGETS


def headline(mem: dict | None, cold: dict | None, tp: dict | None) -> dict[str, Any]:
    return {
        "weight_copies_4": rnd(mem and mem["ours"]["weight_copies"]["4"]),
        "stock_weight_copies_4": rnd(mem and mem["stock"]["weight_copies"]["4"]),
        "memory_ratio_4_vs_1": rnd(mem and mem["ours"]["ratio_4_vs_1"]),
        "stock_memory_ratio_4_vs_1": rnd(mem and mem["stock"]["ratio_4_vs_1"]),
        "prewarm_init_ratio_vs_stock": rnd(cold and cold["prewarm"]["ratio"]),
        "docker_run_ratio_vs_stock": rnd(cold and cold["docker_run"]["ratio"]),
        "throughput_ratio_vs_inprocess": rnd(tp and tp["bert_summary"]["throughput_ratio_vs_inprocess"]),
        "batching_gain_bert": rnd(tp and tp["bert_summary"]["batching_gain"]),
        "batching_gain_small": rnd(tp and tp["digits"]["batching_gain"]),
        # the most batching could give digits if its model cost nothing (HTTP, JSON, the batcher)
        "batching_ceiling_small": rnd(tp and tp["digits"]["batching_gain_ceiling"]),
    }


def raw_memory(mem: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_mb": rnd(mem["model_bytes"] / 1e6, 1),
        "idle_pss_mb": rnd(mem["idle_per_container"] / 1e6, 1),
        "pss_1_mb": rnd(mem["ours"]["1"]["total"] / 1e6, 1),
        "pss_4_mb": rnd(mem["ours"]["4"]["total"] / 1e6, 1),
        "stock_pss_4_mb": rnd(mem["stock"]["4"]["total"] / 1e6, 1),
    }


def raw_coldstart(cold: dict[str, Any]) -> dict[str, Any]:
    return {
        "prewarm_s": rnd(cold["prewarm"]["median"]["ours"]["total_s"]),
        "stock_init_s": rnd(cold["prewarm"]["median"]["stock"]["total_s"]),
        "docker_run_s": rnd(cold["docker_run"]["median"]["ours"]["total_s"]),
        "stock_docker_run_s": rnd(cold["docker_run"]["median"]["stock"]["total_s"]),
    }


def raw_throughput(tp: dict[str, Any], quiet_cpu: float) -> dict[str, Any]:
    b = tp["bert_summary"]
    return {
        "bert_batched_rps": rnd(b["best_batched"]["rps"], 2),
        "bert_unbatched_rps": rnd(b["best_unbatched"]["rps"], 2),
        "bert_mean_batch": b["achieved_mean_batch"],
        "bert_inprocess_batch": b["compared_in_process_batch"],
        "bert_inprocess_rps": rnd(b["in_process_rps_at_that_batch"], 2),
        # the most batching could give digits if its model cost nothing (see table 3c)
        "batching_gain_small_ceiling": rnd(tp["digits"]["batching_gain_ceiling"]),
        "batching_gain_minilm": rnd(tp["minilm"]["batching_gain"]),
        **{
            f"{name}_{mode}_rps": rnd(tp[name]["best"][mode]["rps"], 1)
            for name in SMALL_MODELS
            for mode in ("unbatched", "batched", "ceiling")
        },
        # batched bert points that fit one batch (c <= max_batch_size): is p99 within the
        # delay + one batch bound, against the in-process forward and per request
        "bert_p99_within_bound": [p["concurrency"] for p in tp["bert"]["batched"] if p["p99_within_bound"]],
        "bert_p99_outside_batch_within_delay": [
            p["concurrency"] for p in tp["bert"]["batched"] if p["outside_batch_within_delay"]
        ],
        # throughput points whose quietest try still had other processes above --quiet-cpu
        "noisy_points": sum(
            p["other_cpu_util"] > quiet_cpu
            for points in [tp["bert"], *(tp[name]["points"] for name in SMALL_MODELS)]
            for mode_points in points.values()
            for p in mode_points
        ),
    }


def target_check(out: dict[str, Any], sections: list[str]) -> tuple[list[str], list[str]]:
    """(targets missed, targets of a requested section that have no value: the run is invalid)."""
    missed, unmeasured = [], []
    for key, (op, bound, section) in TARGETS.items():
        value = out[key]
        if value is None:
            if section in sections:
                unmeasured.append(key)
        elif not (value <= bound if op == "<=" else value >= bound):
            missed.append(f"{key} {value} (target {op} {bound})")
    return missed, unmeasured


def summary(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    s = results["sections"]
    mem, cold, tp = s.get("memory"), s.get("coldstart"), s.get("throughput")
    out = headline(mem, cold, tp)
    missed, unmeasured = target_check(out, args.sections)
    out["quick"] = args.quick
    if mem:
        out.update(raw_memory(mem))
    if cold:
        out.update(raw_coldstart(cold))
    if tp:
        out.update(raw_throughput(tp, args.quiet_cpu))
    out["targets_missed"] = missed
    out["targets_not_measured"] = unmeasured
    return out
