"""The benchmarks' output: progress lines on stderr, statistics and rounding, aligned tables, the
one-line JSON summary that ends stdout, and what was measured (the machine's load, the code)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent


# ------------------------------------------------------------------------------------- progress
def logger(name: str, clock: bool = True) -> Callable[[str], None]:
    """A progress printer for stderr: `[name HH:MM:SS] message` (`[name] message` without clock)."""

    def log(message: str) -> None:
        stamp = f" {time.strftime('%H:%M:%S')}" if clock else ""
        print(f"[{name}{stamp}] {message}", file=sys.stderr, flush=True)

    return log


# ---------------------------------------------------------------------------------- statistics
def pct(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile, q in 0..100; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def pct_nearest_index(sorted_values: list[float], q: float) -> float:
    """The value at index round(q * (n - 1)) of sorted values, q in 0..1 (bench_registry's
    percentile since its first figures; kept so they stay comparable)."""
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def med(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def medians(rows: list[dict[str, float]], keys: Iterable[str] | None = None, default: Any = None) -> dict:
    """Per key, the median over `rows` (the keys of the first row unless given; a row without
    a key counts as `default` when one is given)."""
    names = list(rows[0]) if keys is None else list(keys)
    if default is None:
        return {k: statistics.median(r[k] for r in rows) for k in names}
    return {k: statistics.median(r.get(k, default) for r in rows) for k in names}


def rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f}"


# ----------------------------------------------------------------------------------------- output
def table(title: str, header: list[str], rows: list[list[Any]], notes: Sequence[str] = ()) -> None:
    """A titled table, first column left-aligned, the others right-aligned; None prints as '-'."""
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}")
    for i, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()


def emit_summary(summary: dict[str, Any]) -> None:
    """The very last line of stdout: the run's summary as one line of JSON."""
    print(json.dumps(summary, separators=(",", ":")), flush=True)


def finish(out: Path, summary: dict[str, Any], details: dict[str, Any], log: Callable[[str], None]) -> None:
    """A run's end: `{"summary", **details}` written to `out` (JSON), then the summary line."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, **details}, indent=2) + "\n")
    log(f"full results: {out}")
    emit_summary(summary)


# -------------------------------------------------------------------------------- the conditions
def loadavg() -> float | None:
    """The machine's 1-minute load average (other work on the machine shows up here)."""
    with contextlib.suppress(OSError, ValueError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return None


def source_fingerprint(package: Path) -> dict[str, Any]:
    """Which code was measured: a hash of the package's sources as they are on disk, the git HEAD
    and whether the package differs from it."""
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    info: dict[str, Any] = {"src_sha256": digest.hexdigest()[:12]}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        quiet: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 5}
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], **quiet)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", str(package)], **quiet)
        if head.returncode == 0:
            info["git_head"] = head.stdout.strip()
            info["dirty"] = bool(dirty.stdout.strip())
    return info
