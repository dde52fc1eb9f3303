"""Section 2, cold start: (a) /init -> first answer of a container prewarmed with
WARMWHISK_PRELOAD against a ready stock container; (b) `docker run` -> first answer of both."""

from __future__ import annotations

import statistics
import time
from typing import Any

from lib.actions import STOCK_TORCH_LOAD, ActionCode
from lib.report import table
from lib.targets import RuntimeContainer
from models.config import MODEL_NAME, SEQ_LEN, log
from models.context import ModelBench, warm_page_cache

VALUE = {"length": SEQ_LEN}
STEPS = ("docker_run_s", "port_s", "init_s", "first_run_s")


def init_to_first_answer(c: RuntimeContainer, action: ActionCode) -> dict[str, float]:
    t0 = time.perf_counter()
    c.init(action)
    t1 = time.perf_counter()
    c.run(VALUE)
    t2 = time.perf_counter()
    return {"init_s": t1 - t0, "first_run_s": t2 - t1, "total_s": t2 - t0}


def prewarmed(bench: ModelBench, name: str, ours: ActionCode, stock: ActionCode) -> dict[str, float]:
    """(a) ours: started with WARMWHISK_PRELOAD, timed once it loaded the model; stock: ready, idle."""
    if name == "ours":
        c = bench.container({"WARMWHISK_PRELOAD": f"/models/{MODEL_NAME}"})
        c.wait_health(lambda h: h.get("model_loads") == 1)
        return init_to_first_answer(c, ours)
    c = bench.container()
    c.wait_health(lambda h: True)
    return init_to_first_answer(c, stock)


def docker_run(bench: ModelBench, action: ActionCode) -> dict[str, float]:
    """(b) docker run -> first answer, /init as soon as the port accepts."""
    t0 = time.perf_counter()
    c = bench.container()
    t1 = time.perf_counter()
    c.wait_port()
    t2 = time.perf_counter()
    c.init(action)
    t3 = time.perf_counter()
    c.run(VALUE)
    t4 = time.perf_counter()
    return {
        "docker_run_s": t1 - t0,
        "port_s": t2 - t1,
        "init_s": t3 - t2,
        "first_run_s": t4 - t3,
        "total_s": t4 - t0,
    }


def section(bench: ModelBench, ours: ActionCode) -> dict[str, Any]:
    stock_action = ActionCode(STOCK_TORCH_LOAD, "main", "inline: build() + torch.load(.pt)")
    reps = bench.args.cold_reps
    out: dict[str, Any] = {
        "reps": reps,
        "prewarm": {"ours": [], "stock": []},
        "docker_run": {"ours": [], "stock": []},
    }
    for rep in range(reps):
        warm_page_cache(
            bench.weights, bench.stock_weights
        )  # both weight files in the page cache at every rep
        for name in ("ours", "stock") if rep % 2 == 0 else ("stock", "ours"):
            timing = prewarmed(bench, name, ours, stock_action)
            out["prewarm"][name].append(timing)
            log(f"cold start (a) rep {rep + 1}/{reps} {name}: {timing['total_s']:.3f} s")
            bench.remove_containers()
        for name in ("stock", "ours") if rep % 2 == 0 else ("ours", "stock"):
            timing = docker_run(bench, ours if name == "ours" else stock_action)
            out["docker_run"][name].append(timing)
            log(f"cold start (b) rep {rep + 1}/{reps} {name}: {timing['total_s']:.3f} s")
            bench.remove_containers()
    for kind in ("prewarm", "docker_run"):
        runs = out[kind]
        runs["median"] = {
            name: {key: statistics.median(t[key] for t in runs[name]) for key in runs[name][0]}
            for name in ("ours", "stock")
        }
        runs["ratio"] = runs["median"]["ours"]["total_s"] / runs["median"]["stock"]["total_s"]
    coldstart_table(out)
    return out


def coldstart_table(out: dict[str, Any]) -> None:
    pw, dr = out["prewarm"], out["docker_run"]

    def row(label: str, runs: dict[str, Any]) -> list[str]:
        totals = [" ".join(f"{x['total_s']:.2f}" for x in runs[name]) for name in ("ours", "stock")]
        m = runs["median"]
        return [
            label,
            f"{m['ours']['total_s']:.3f}",
            f"{m['stock']['total_s']:.3f}",
            f"{runs['ratio']:.3f}",
            *totals,
        ]

    def steps(t: dict[str, float]) -> str:
        return " + ".join(f"{t[k]:.2f}" for k in STEPS)

    m, pm = dr["median"], pw["median"]
    table(
        f"2. Cold start, bert-base (seconds, median of {out['reps']})",
        ["", "ours", "stock", "ratio", "ours runs", "stock runs"],
        [row("(a) /init -> 1st answer, prewarmed", pw), row("(b) docker run -> 1st answer", dr)],
        [
            f"(a) ours: container started with WARMWHISK_PRELOAD=/models/{MODEL_NAME}, timed once "
            "/healthz shows model_loads == 1; stock: ready idle container, its /init imports torch, "
            "builds the module and torch.loads its own copy",
            f"    breakdown: ours /init {pm['ours']['init_s']:.3f} + "
            f"first /run {pm['ours']['first_run_s']:.3f}, "
            f"stock /init {pm['stock']['init_s']:.3f} + first /run {pm['stock']['first_run_s']:.3f}",
            "(b) docker SDK containers.run (create+start) -> port accepts -> /init -> first /run",
            f"    breakdown: ours {steps(m['ours'])}, stock {steps(m['stock'])}",
            "both weight files read into the page cache before each repetition (nothing dropped); "
            "ours/stock repetitions alternate",
        ],
    )
