"""Shared by the benchmarks: aligned tables, rounded figures, the machine's load, free ports."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (servers under test bind loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def loadavg() -> float | None:
    """The machine's 1-minute load average (other work on the machine shows up here)."""
    with contextlib.suppress(OSError, ValueError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return None


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
