"""The Azure Functions 2019 trace (its CSV layout), read into per-function series and workloads."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .workloads import Workload


@dataclass(frozen=True)
class TraceFunction:
    """One function of the Azure Functions 2019 trace sample."""

    hash_function: str
    trigger: str
    # Invocations per minute, from the first minute of the sample.
    per_minute: tuple[int, ...]
    # Duration percentiles (s) at 0, 1, 25, 50, 75, 99, 100 % and the average (s).
    duration_percentiles: tuple[float, ...]
    duration_average_s: float
    # Allocated memory of the function's app, average (MB).
    memory_mb: float

    @property
    def total(self) -> int:
        return sum(self.per_minute)


_DURATION_QUANTILES = (0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0)
_DURATION_COLUMNS = tuple(f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100))


def read_azure_trace(trace_dir: str | Path) -> list[TraceFunction]:
    """The functions of the trace sample (``azure2019_*.csv`` in ``trace_dir``), busiest first."""
    d = Path(trace_dir)
    with open(d / "azure2019_durations.csv", newline="") as f:
        durations = {r["HashFunction"]: r for r in csv.DictReader(f)}
    with open(d / "azure2019_memory.csv", newline="") as f:
        memory = {r["HashFunction"]: r for r in csv.DictReader(f)}
    functions = []
    with open(d / "azure2019_invocations.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        minute_cols = [i for i, name in enumerate(header) if name.isdigit()]
        fn_col, trigger_col = header.index("HashFunction"), header.index("Trigger")
        for row in reader:
            key = row[fn_col]
            dur, mem = durations.get(key), memory.get(key)
            if dur is None:
                continue
            functions.append(
                TraceFunction(
                    hash_function=key,
                    trigger=row[trigger_col],
                    per_minute=tuple(int(row[i]) for i in minute_cols),
                    duration_percentiles=tuple(float(dur[c]) / 1000.0 for c in _DURATION_COLUMNS),
                    duration_average_s=float(dur["Average"]) / 1000.0,
                    memory_mb=float(mem["AverageAllocatedMb"]) if mem else 128.0,
                )
            )
    functions.sort(key=lambda fn: (-fn.total, fn.hash_function))
    return functions


def find_function(functions: Sequence[TraceFunction], selector: str) -> TraceFunction:
    """``topN`` (the N-th busiest, from 1) or a prefix of the function hash."""
    if selector.startswith("top") and selector[3:].isdigit():
        rank = int(selector[3:])
        if not 1 <= rank <= len(functions):
            raise KeyError(f"{selector}: the trace has {len(functions)} functions")
        return functions[rank - 1]
    matches = [fn for fn in functions if fn.hash_function.startswith(selector)]
    if len(matches) != 1:
        raise KeyError(f"{selector!r} matches {len(matches)} functions (use topN or a longer hash prefix)")
    return matches[0]


def trace_workload(
    functions: Sequence[TraceFunction],
    *,
    start_minute: int = 0,
    minutes: int = 60,
    seed: int = 0,
    min_duration_s: float = 0.001,
) -> Workload:
    """Arrivals of one or several trace functions (merged into one pool: one model serving them).

    Within each minute, a function's n invocations are spread as n independent uniform times, i.e.
    a Poisson process conditioned on the minute's count. Durations are drawn from the function's
    published percentiles (0, 1, 25, 50, 75, 99, 100 %) by interpolating the inverse CDF linearly
    in log(duration), at least ``min_duration_s``: durations are roughly log-normal, and linear
    interpolation across the 99–100 % span would inflate the mean (top1: 1.5 s vs 0.93 s). Seeded.
    The host memory is the sum of the functions' allocated memory (one host holds them all)."""
    rng = np.random.default_rng(seed)
    times, runs = [], []
    for fn in functions:
        counts = np.asarray(fn.per_minute[start_minute : start_minute + minutes], dtype=int)
        minute_of = np.repeat(np.arange(counts.size), counts)
        t = (minute_of + rng.uniform(0.0, 1.0, minute_of.size)) * 60.0
        u = rng.uniform(0.0, 1.0, t.size)
        log_p = np.log(np.maximum(min_duration_s, np.asarray(fn.duration_percentiles)))
        d = np.exp(np.interp(u, _DURATION_QUANTILES, log_p))
        times.append(t)
        runs.append(d)
    t_all = np.concatenate(times) if times else np.empty(0)
    d_all = np.concatenate(runs) if runs else np.empty(0)
    order = np.argsort(t_all, kind="stable")
    name = "+".join(fn.hash_function[:8] for fn in functions) + f"[{start_minute}:{start_minute + minutes}]"
    return Workload(
        name,
        tuple(t_all[order].tolist()),
        tuple(d_all[order].tolist()),
        minutes * 60.0,
        memory_mb=sum(fn.memory_mb for fn in functions),
    )
