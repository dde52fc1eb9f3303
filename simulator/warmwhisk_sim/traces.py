"""The Azure Functions 2019 trace (its CSV layout), read and checked into per-function series and
workloads.

A trace folder holds three files, each with a header line and one row per function:

* ``azure2019_invocations.csv``: ``HashOwner, HashApp, HashFunction, Trigger``, then one column per
  minute named by its number (consecutive, e.g. ``480`` … ``959`` in the shipped sample, ``1`` …
  ``1440`` for a whole day of the release): invocations in that minute.
* ``azure2019_durations.csv``: ``HashFunction``, ``Average`` and the percentiles
  ``percentile_Average_{0,1,25,50,75,99,100}`` of the execution time (ms).
* ``azure2019_memory.csv``: ``AverageAllocatedMb`` and its percentiles
  ``AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}`` (MB), keyed by ``HashFunction`` (the sample's
  layout) or, as in Microsoft's release, by ``HashApp`` (memory is measured per application).

Any subset of functions works: every function of the invocations file needs a durations row and a
memory row (of the function or of its app); rows of functions the invocations file does not list
are ignored. Anything else that does not fit is a `TraceError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .workloads import Workload

INVOCATIONS = "azure2019_invocations.csv"
DURATIONS = "azure2019_durations.csv"
MEMORY = "azure2019_memory.csv"

DURATION_QUANTILES = (0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0)
_DURATION_COLUMNS = tuple(f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100))
MEMORY_QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99, 1.0)
_MEMORY_COLUMNS = tuple(f"AverageAllocatedMb_pct{p}" for p in (1, 5, 25, 50, 75, 95, 99, 100))
_INVOCATION_KEYS = ("HashOwner", "HashApp", "HashFunction", "Trigger")


class TraceError(ValueError):
    """A trace file that does not fit the layout: where (file, 1-based line and column) and why."""

    def __init__(self, path: Path, line: int, column: int, message: str) -> None:
        self.path, self.line, self.column, self.reason = path, line, column, message
        super().__init__(f"{path}:{line}:{column}: {message}")


@dataclass(frozen=True)
class TraceFunction:
    """One function of an Azure Functions 2019 trace folder."""

    hash_function: str
    trigger: str
    # Invocations per minute, from the first minute of the file.
    per_minute: tuple[int, ...]
    # Duration percentiles (s) at 0, 1, 25, 50, 75, 99, 100 % and the average (s).
    duration_percentiles: tuple[float, ...]
    duration_average_s: float
    # Allocated memory of the function (or of its app), average (MB).
    memory_mb: float
    # Its percentiles at 1, 5, 25, 50, 75, 95, 99, 100 % (MB).
    memory_percentiles: tuple[float, ...] = ()
    hash_app: str = ""
    hash_owner: str = ""
    # The number of the file's first minute column (480 in the shipped sample).
    first_minute: int = 0

    @property
    def total(self) -> int:
        return sum(self.per_minute)

    def memory_at(self, q: float) -> float:
        """Allocated memory at quantile q (one of MEMORY_QUANTILES) in MB; the average without percentiles."""
        if not self.memory_percentiles:
            return self.memory_mb
        return self.memory_percentiles[MEMORY_QUANTILES.index(q)]


# --- reading and checking ------------------------------------------------------------------------


class _Table:
    """One CSV file being read: its header, then its rows with their line numbers. Every check
    that fails raises a TraceError at the cell it concerns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise TraceError(
                path, 0, 0, "file not found (a trace folder holds the three azure2019_*.csv files)"
            )
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise TraceError(path, line, column, "not UTF-8 text") from None
        self.reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            self.header = next(self.reader)
        except StopIteration:
            raise TraceError(path, 1, 1, "empty file: expected a header line") from None
        except csv.Error as exc:
            raise TraceError(path, 1, 1, f"not CSV: {exc}") from None
        self.index = {name: i for i, name in enumerate(self.header)}
        for i, name in enumerate(self.header):
            if self.header.index(name) != i:
                raise TraceError(path, 1, i + 1, f"column {name!r} appears twice in the header")

    def column(self, name: str) -> int:
        if name not in self.index:
            raise TraceError(self.path, 1, len(self.header) + 1, f"the header has no column {name!r}")
        return self.index[name]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of every data row; blank lines are skipped."""
        while True:
            try:
                row = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TraceError(self.path, self.reader.line_num, 1, f"not CSV: {exc}") from None
            line = self.reader.line_num
            if not row or row == [""]:
                continue
            if len(row) != len(self.header):
                column = min(len(row), len(self.header)) + 1
                raise TraceError(
                    self.path, line, column, f"{len(row)} fields, the header has {len(self.header)}"
                )
            yield line, row

    def cell(self, line: int, row: list[str], column: int, parse: Callable[[str], float], what: str) -> float:
        text = row[column].strip()
        try:
            value = parse(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise TraceError(
                self.path, line, column + 1, f"column {self.header[column]!r}: {text!r} is not {what}"
            )
        return value

    def key(self, line: int, row: list[str], column: int, seen: set[str]) -> str:
        key = row[column].strip()
        if not key:
            raise TraceError(self.path, line, column + 1, f"column {self.header[column]!r} is empty")
        if key in seen:
            raise TraceError(self.path, line, column + 1, f"{self.header[column]} {key[:16]}… appears twice")
        seen.add(key)
        return key

    def ascending(self, line: int, row: list[str], columns: Sequence[int], values: Sequence[float]) -> None:
        for c, before, after in zip(columns[1:], values, values[1:], strict=False):
            if after < before:
                raise TraceError(
                    self.path, line, c + 1, f"column {self.header[c]!r}: percentiles must not decrease"
                )


def _whole(text: str) -> float:
    return float(int(text))


def _percentile_rows(
    table: _Table, key_name: str, columns: Sequence[str], extra: Sequence[str], what: str
) -> dict[str, tuple[int, list[float]]]:
    """key -> (line, [extra columns..., percentile columns...]) of a durations or memory file."""
    key_col = table.column(key_name)
    cols = [table.column(c) for c in (*extra, *columns)]
    out: dict[str, tuple[int, list[float]]] = {}
    seen: set[str] = set()
    for line, row in table.rows():
        key = table.key(line, row, key_col, seen)
        values = [table.cell(line, row, c, float, what) for c in cols]
        table.ascending(line, row, cols[len(extra) :], values[len(extra) :])
        out[key] = (line, values)
    return out


def _minute_columns(table: _Table) -> list[int]:
    """Indices of the minute columns: every column but the four keys, named by consecutive numbers."""
    minutes = [i for i, name in enumerate(table.header) if name not in _INVOCATION_KEYS]
    if not minutes:
        raise TraceError(table.path, 1, len(table.header) + 1, "no minute columns (e.g. 1, 2, ... 1440)")
    previous: int | None = None
    for i in minutes:
        name = table.header[i]
        if not name.isdigit() or (previous is not None and int(name) != previous + 1):
            raise TraceError(
                table.path, 1, i + 1, f"column {name!r}: expected the minute number {(previous or 0) + 1}"
            )
        previous = int(name)
    return minutes


def read_azure_trace(trace_dir: str | Path) -> list[TraceFunction]:
    """The functions of a trace folder (``azure2019_*.csv``), busiest first (ties by hash); raises
    `TraceError` (file, line, column, reason) for anything that does not fit the layout."""
    d = Path(trace_dir)
    if not d.is_dir():
        raise TraceError(d, 0, 0, "not a folder")
    durations_table = _Table(d / DURATIONS)
    durations = _percentile_rows(
        durations_table, "HashFunction", _DURATION_COLUMNS, ("Average",), "a duration in ms >= 0"
    )
    memory_table = _Table(d / MEMORY)
    by_app = "HashFunction" not in memory_table.index
    memory = _percentile_rows(
        memory_table,
        "HashApp" if by_app else "HashFunction",
        _MEMORY_COLUMNS,
        ("AverageAllocatedMb",),
        "a memory size in MB >= 0",
    )
    table = _Table(d / INVOCATIONS)
    cols = {name: table.column(name) for name in _INVOCATION_KEYS}
    minute_cols = _minute_columns(table)
    first_minute = int(table.header[minute_cols[0]])
    functions, seen = [], set()
    for line, row in table.rows():
        key = table.key(line, row, cols["HashFunction"], seen)
        app = row[cols["HashApp"]].strip()
        dur = durations.get(key)
        mem = memory.get(app if by_app else key)
        if dur is None:
            raise TraceError(
                table.path, line, cols["HashFunction"] + 1, f"no row in {DURATIONS} for this function"
            )
        if mem is None:
            what = f"its app {app[:16]}…" if by_app else "this function"
            raise TraceError(table.path, line, cols["HashFunction"] + 1, f"no row in {MEMORY} for {what}")
        counts = tuple(int(table.cell(line, row, c, _whole, "a whole number >= 0")) for c in minute_cols)
        functions.append(
            TraceFunction(
                hash_function=key,
                trigger=row[cols["Trigger"]].strip(),
                per_minute=counts,
                duration_percentiles=tuple(v / 1000.0 for v in dur[1][1:]),
                duration_average_s=dur[1][0] / 1000.0,
                memory_mb=mem[1][0],
                memory_percentiles=tuple(mem[1][1:]),
                hash_app=app,
                hash_owner=row[cols["HashOwner"]].strip(),
                first_minute=first_minute,
            )
        )
    if not functions:
        raise TraceError(table.path, 2, 1, "no functions: the file has a header only")
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


# --- arrivals and run times ----------------------------------------------------------------------


def arrival_times(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Within each minute, its n invocations at n independent uniform times: a Poisson process
    conditioned on the minute's count (the trace gives counts only). Sorted, in s from minute 0."""
    minute_of = np.repeat(np.arange(counts.size), counts)
    return np.sort((minute_of + rng.uniform(0.0, 1.0, minute_of.size)) * 60.0)


def run_times(
    rng: np.random.Generator, fn: TraceFunction, n: int, min_duration_s: float = 0.001
) -> np.ndarray:
    """n run times drawn from the function's published percentiles (0, 1, 25, 50, 75, 99, 100 %) by
    interpolating the inverse CDF linearly in log(duration), at least ``min_duration_s``: durations
    are roughly log-normal, and linear interpolation across the 99–100 % span would inflate the
    mean (top1: 1.5 s vs 0.93 s)."""
    u = rng.uniform(0.0, 1.0, n)
    log_p = np.log(np.maximum(min_duration_s, np.asarray(fn.duration_percentiles)))
    return np.exp(np.interp(u, DURATION_QUANTILES, log_p))


def trace_workload(
    functions: Sequence[TraceFunction],
    *,
    start_minute: int = 0,
    minutes: int = 60,
    seed: int = 0,
    min_duration_s: float = 0.001,
) -> Workload:
    """Arrivals of one or several trace functions merged into one pool (one model serving them):
    `arrival_times` and `run_times` per function, one generator seeded with ``seed`` for all.
    The host memory is the sum of the functions' allocated memory (one host holds them all)."""
    rng = np.random.default_rng(seed)
    times, runs = [], []
    for fn in functions:
        t = arrival_times(rng, np.asarray(fn.per_minute[start_minute : start_minute + minutes], dtype=int))
        times.append(t)
        runs.append(run_times(rng, fn, t.size, min_duration_s))
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
