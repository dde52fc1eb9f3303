"""One bench_models.py run: the sections in order, models.json, the plot and the closing notes."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from lib.report import emit_summary, loadavg
from lib.targets import stop_on_sigterm
from models import coldstart, memory, throughput
from models.actions import SMALL_MODELS, ExampleActions
from models.config import log
from models.context import ModelBench, damon_schemes
from models.plot import plot
from models.summary import summary


def run_sections(bench: ModelBench) -> None:
    sections = bench.args.sections
    bert = ExampleActions("bert")
    small = {name: ExampleActions(SMALL_MODELS[name][0]) for name in SMALL_MODELS}
    bench.results["actions"] = {
        f"{name}_{mode}": getattr(actions, mode).origin
        for name, actions in {"bert": bert, **small}.items()
        for mode in ("unbatched", "batched")
    }
    started = time.perf_counter()
    if {"memory", "coldstart"} & set(sections):
        bench.prepare_stock_copy()
        bench.docker.check_image()
    steps = {
        "memory": lambda: memory.section(bench, bert.unbatched),
        "coldstart": lambda: coldstart.section(bench, bert.unbatched),
        "throughput": lambda: throughput.section(bench, bert, small),
    }
    bench.results["loadavg"] = {}
    bench.results["damon_schemes"] = damon_schemes()
    if bench.results["damon_schemes"]:
        log(
            f"note: proactive reclaim is on ({bench.results['damon_schemes']}): weight files are read "
            "into the page cache before each step and activations rerun before each PSS reading"
        )
    for name, step in steps.items():
        if name in sections:
            before = loadavg()
            bench.results["sections"][name] = step()
            bench.results["loadavg"][name] = [before, loadavg()]
    bench.results["elapsed_s"] = round(time.perf_counter() - started, 1)


def write_results(bench: ModelBench) -> dict[str, Any]:
    results, out_dir = bench.results, bench.out_dir
    results["summary"] = result = summary(results, bench.args)
    (out_dir / "models.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    plotted = plot(results, bench.args, out_dir / "models.png")
    notes = [f"results: {out_dir / 'models.json'}"] + ([f"plot: {plotted}"] if plotted else [])
    load = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in results["loadavg"].items())
    print(f"\n# {'; '.join(notes)}; elapsed {results['elapsed_s']} s")
    print(
        f"# machine load average (1 min) at the start and end of each section: {load} ({os.cpu_count()} CPUs)"
    )
    if result["targets_missed"]:
        print("# targets missed: " + "; ".join(result["targets_missed"]))
    if result["targets_not_measured"]:
        print("# NOT MEASURED (the run is invalid): " + ", ".join(result["targets_not_measured"]))
    return result


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; exit status 2 when a requested section's target has no value."""
    bench = ModelBench(args)
    stop_on_sigterm()
    try:
        bench.wait_for_models()
        os.sync()
        bench.out_dir.mkdir(parents=True, exist_ok=True)
        run_sections(bench)
        result = write_results(bench)
    finally:
        log("cleaning up")
        bench.cleanup()
    emit_summary(result)
    return 2 if result["targets_not_measured"] else 0
