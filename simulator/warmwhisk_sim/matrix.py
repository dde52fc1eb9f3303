"""The simulated matrix of the trace evaluation: every variant on the tight cluster, the policies
also on the loose one, run in worker processes (each builds the workload once; every run is
deterministic, so the order they finish in changes nothing), and the comparisons drawn from it."""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calibration import load_calibration
from .cluster import CLUSTERS, LOOSE, TIGHT, TraceRun, build_run, run_variant
from .mapping import MappingRules
from .metrics import run_metrics
from .traces import read_azure_trace
from .variants import POLICY_VARIANTS, Variant, all_variants, by_name

# The three criteria of the comparison, all "less is better".
CRITERIA = ("cold_plus_loads_per_1000", "p99_s", "memory_gb_s")
Task = tuple[str, str]  # (variant name, cluster name)
Progress = Callable[[int, int, str, float], None]


@dataclass(frozen=True)
class MatrixSpec:
    trace_dir: str
    calibration_path: str
    seed: int = 0
    rules: MappingRules = field(default_factory=MappingRules)
    tasks: tuple[Task, ...] = ()

    def variants(self) -> dict[str, Variant]:
        return {v.name: v for v in all_variants()}


def default_tasks(names: str | None = None) -> tuple[Task, ...]:
    """Every (chosen) variant on the tight cluster, and the policies also on the loose one."""
    chosen = by_name(names)
    tasks = [(v.name, TIGHT.name) for v in chosen]
    tasks += [(v.name, LOOSE.name) for v in chosen if v in POLICY_VARIANTS]
    return tuple(tasks)


# --- running ---------------------------------------------------------------------------------------

_RUN: TraceRun | None = None  # the workload, built once per worker process


def _init_worker(spec: MatrixSpec) -> None:
    global _RUN
    _RUN = load_run(spec)


def load_run(spec: MatrixSpec) -> TraceRun:
    functions = read_azure_trace(spec.trace_dir)
    return build_run(functions, load_calibration(spec.calibration_path), seed=spec.seed, rules=spec.rules)


def _run_task(task: Task) -> tuple[Task, dict[str, Any], float]:
    assert _RUN is not None
    variant = {v.name: v for v in all_variants()}[task[0]]
    began = time.perf_counter()
    out = run_variant(_RUN, variant, CLUSTERS[task[1]].cluster)
    return task, run_metrics(_RUN, out), time.perf_counter() - began


def run_matrix(spec: MatrixSpec, *, workers: int = 2, progress: Progress | None = None) -> dict[Task, Any]:
    """Run every task of ``spec`` (default: `default_tasks()`); results in task order, each with
    the seconds it took."""
    tasks = spec.tasks or default_tasks()
    # Longest first (the policies that keep the most hosts ticking), so workers finish together.
    weight = {"rayserve": 0, "kpa": 1, "hybrid": 2, "openwhisk": 3}
    order = sorted(tasks, key=lambda t: (weight.get(t[0].split("[")[0].split("-")[0], 4), t))
    results: dict[Task, Any] = {}
    began = time.perf_counter()
    if workers <= 1:
        _init_worker(spec)
        for i, task in enumerate(order, start=1):
            _, metrics, seconds = _run_task(task)
            results[task] = dict(metrics, seconds=seconds)
            if progress:
                progress(i, len(order), f"{task[0]} @ {task[1]}", time.perf_counter() - began)
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(spec,)
        ) as pool:
            futures = [pool.submit(_run_task, task) for task in order]
            for i, future in enumerate(as_completed(futures), start=1):
                task, metrics, seconds = future.result()
                results[task] = dict(metrics, seconds=seconds)
                if progress:
                    progress(i, len(order), f"{task[0]} @ {task[1]}", time.perf_counter() - began)
    return {task: results[task] for task in tasks}


# --- comparing -------------------------------------------------------------------------------------


def valid(metrics: dict[str, Any]) -> bool:
    """A configuration counts only if it dropped nothing and nothing timed out."""
    return metrics["dropped_or_timed_out"] == 0


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a is at least as good as b on every criterion and better on one (all: less is better)."""
    at_least = all(a[c] <= b[c] for c in CRITERIA)
    return at_least and any(a[c] < b[c] for c in CRITERIA)


def ratio(a: float, b: float) -> float | None:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def compare(results: dict[Task, Any], cluster: str) -> dict[str, Any]:
    """Hybrid against OpenWhisk's default on ``cluster``, and the baseline configurations (every
    sweep point included, valid ones only) that dominate hybrid there."""
    variants = {v.name: v for v in all_variants()}
    hybrid, ow = results[("hybrid", cluster)], results[("openwhisk", cluster)]
    dominated_by = sorted(
        name
        for (name, c), m in results.items()
        if c == cluster
        and variants[name].group in ("policy", "sweep")
        and variants[name].family != "hybrid"
        and valid(m)
        and dominates(m, hybrid)
    )
    return {
        "cold_start_ratio_vs_owdefault": ratio(
            hybrid["cold_plus_loads_per_1000"], ow["cold_plus_loads_per_1000"]
        ),
        "p99_ratio_vs_owdefault": ratio(hybrid["p99_s"], ow["p99_s"]),
        "memory_gbs_ratio_vs_owdefault": ratio(hybrid["memory_gb_s"], ow["memory_gb_s"]),
        "dominated_by": dominated_by,
        "hybrid_valid": valid(hybrid),
        "owdefault_valid": valid(ow),
    }


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both coordinates (less is better)."""
    front = []
    for name, (x, y) in points.items():
        beaten = any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y)
            for other, (x2, y2) in points.items()
            if other != name
        )
        if not beaten:
            front.append(name)
    return sorted(front, key=lambda n: points[n])


def load_spec(
    trace_dir: str | Path, calibration_path: str | Path, seed: int, names: str | None
) -> MatrixSpec:
    return MatrixSpec(str(trace_dir), str(calibration_path), seed=seed, tasks=default_tasks(names))


def tasks_of(results: dict[Task, Any], cluster: str) -> Sequence[str]:
    return [name for name, c in results if c == cluster]


def text_progress(stream: Any, width: int = 28) -> Progress:
    """A progress bar for a stream (a line per finished run; redrawn in place on a terminal)."""
    tty = bool(getattr(stream, "isatty", lambda: False)())

    def show(done: int, total: int, label: str, elapsed: float) -> None:
        filled = round(width * done / total)
        left = elapsed / done * (total - done) if done else 0.0
        line = (
            f"matrix [{'#' * filled}{'.' * (width - filled)}] {done}/{total}, {elapsed:.0f} s, "
            f"~{left:.0f} s left: {label}"
        )
        stream.write(("\r" + line + ("\n" if done == total else "")) if tty else line + "\n")
        stream.flush()

    return show
