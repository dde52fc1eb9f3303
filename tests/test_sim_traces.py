"""`warmwhisk_sim.traces`: the Azure Functions 2019 layout read and checked, any subset of
functions, the release's per-app memory file, and malformed files rejected with file, line and
column."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from warmwhisk_sim.traces import DURATIONS, INVOCATIONS, MEMORY, TraceError, read_azure_trace

TRACE = Path(__file__).resolve().parents[1] / "simulator" / "traces" / "azure2019"


def copy_trace(tmp_path: Path) -> Path:
    folder = tmp_path / "trace"
    shutil.copytree(TRACE, folder)
    return folder


def edit(folder: Path, name: str, change: Callable[[list[list[str]]], None]) -> None:
    """Rewrite one CSV file of the folder through `change` (rows, header first)."""
    path = folder / name
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    change(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def rejected(folder: Path) -> TraceError:
    with pytest.raises(TraceError) as info:
        read_azure_trace(folder)
    return info.value


# --- the sample and other layouts --------------------------------------------------------------------


def test_the_shipped_sample_reads_as_70_functions_busiest_first() -> None:
    functions = read_azure_trace(TRACE)
    assert len(functions) == 70
    totals = [fn.total for fn in functions]
    assert totals == sorted(totals, reverse=True) and totals[0] == 273379
    top = functions[0]
    assert top.first_minute == 480 and len(top.per_minute) == 480
    assert len(top.memory_percentiles) == 8 and top.memory_at(0.99) == top.memory_percentiles[6]
    assert list(top.duration_percentiles) == sorted(top.duration_percentiles)
    assert top.hash_app and top.hash_owner and top.trigger == "queue"


def test_any_subset_of_functions_reads_the_same(tmp_path: Path) -> None:
    full = {fn.hash_function: fn for fn in read_azure_trace(TRACE)}
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows.__delitem__(slice(6, None)))  # header + 5 functions
    subset = read_azure_trace(folder)
    assert len(subset) == 5
    assert all(fn == full[fn.hash_function] for fn in subset)


def test_memory_per_app_as_in_the_release(tmp_path: Path) -> None:
    """Microsoft's release measures memory per application (HashOwner, HashApp, no HashFunction)."""
    functions = read_azure_trace(TRACE)
    folder = copy_trace(tmp_path)
    by_app = {fn.hash_app: fn for fn in functions}
    columns = ["HashOwner", "HashApp", "SampleCount", "AverageAllocatedMb"] + [
        f"AverageAllocatedMb_pct{p}" for p in (1, 5, 25, 50, 75, 95, 99, 100)
    ]
    rows = [columns] + [
        [fn.hash_owner, app, "10", str(fn.memory_mb), *(str(v) for v in fn.memory_percentiles)]
        for app, fn in by_app.items()
    ]
    with open(folder / MEMORY, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    again = read_azure_trace(folder)
    assert [fn.memory_at(0.99) for fn in again] == [by_app[fn.hash_app].memory_at(0.99) for fn in again]


def test_a_whole_day_of_minutes_named_1_to_1440(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)

    def renumber(rows: list[list[str]]) -> None:
        rows[0] = rows[0][:4] + [str(i) for i in range(1, len(rows[0]) - 3)]

    edit(folder, INVOCATIONS, renumber)
    assert read_azure_trace(folder)[0].first_minute == 1


# --- malformed files: file, line, column --------------------------------------------------------------


def test_a_count_that_is_not_a_whole_number(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows[2].__setitem__(7, "3.5"))
    error = rejected(folder)
    assert (error.path.name, error.line, error.column) == (INVOCATIONS, 3, 8)
    assert "'483'" in str(error) and "'3.5'" in str(error)
    assert str(error).startswith(f"{folder / INVOCATIONS}:3:8: ")


def test_a_negative_count(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows[10].__setitem__(100, "-1"))
    error = rejected(folder)
    assert (error.path.name, error.line, error.column) == (INVOCATIONS, 11, 101)


def test_a_row_with_a_field_missing(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows[4].pop())
    error = rejected(folder)
    assert (error.line, error.column) == (5, len(read_header(TRACE / INVOCATIONS)))
    assert "fields" in error.reason


def test_a_header_without_a_needed_column(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, DURATIONS, lambda rows: rows[0].__setitem__(rows[0].index("percentile_Average_99"), "p99"))
    error = rejected(folder)
    assert (error.path.name, error.line) == (DURATIONS, 1)
    assert "percentile_Average_99" in error.reason


def test_minutes_that_skip_one(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows[0].__setitem__(10, "999"))
    error = rejected(folder)
    assert (error.path.name, error.line, error.column) == (INVOCATIONS, 1, 11)


def test_decreasing_percentiles(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)

    def swap(rows: list[list[str]]) -> None:
        header = rows[0]
        p50, p75 = header.index("percentile_Average_50"), header.index("percentile_Average_75")
        rows[1][p50], rows[1][p75] = "900", "10"

    edit(folder, DURATIONS, swap)
    error = rejected(folder)
    header = read_header(TRACE / DURATIONS)
    assert (error.path.name, error.line, error.column) == (
        DURATIONS,
        2,
        header.index("percentile_Average_75") + 1,
    )


def test_a_function_without_its_durations_row(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    invocations = read_rows(TRACE / INVOCATIONS)
    wanted = invocations[7][2]  # the function on line 8 of the invocations file
    edit(
        folder,
        DURATIONS,
        lambda rows: rows.__delitem__(next(i for i, r in enumerate(rows) if r[2] == wanted)),
    )
    error = rejected(folder)
    assert (error.path.name, error.line, error.column) == (INVOCATIONS, 8, 3)
    assert DURATIONS in error.reason


def test_a_function_twice(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    edit(folder, INVOCATIONS, lambda rows: rows.append(list(rows[1])))
    error = rejected(folder)
    assert (error.line, error.column) == (72, 3)
    assert "twice" in error.reason


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    path = folder / MEMORY
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][:5] + b"\xff" + lines[3][5:]
    path.write_bytes(b"\n".join(lines))
    error = rejected(folder)
    assert (error.path.name, error.line, error.column) == (MEMORY, 4, 6)


def test_a_missing_or_empty_file(tmp_path: Path) -> None:
    folder = copy_trace(tmp_path)
    (folder / MEMORY).unlink()
    assert rejected(folder).path.name == MEMORY
    (folder / MEMORY).write_text("")
    error = rejected(folder)
    assert (error.path.name, error.line) == (MEMORY, 1)
    with pytest.raises(TraceError):
        read_azure_trace(tmp_path / "no-such-folder")


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def read_header(path: Path) -> list[str]:
    return read_rows(path)[0]
