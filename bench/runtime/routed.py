"""Routed mode's extra latency and the router's own CPU: bench_scaler's overhead section (a
direct-mode runtime against a routed one forwarding to one warm model host, all local
processes), run as it is inside bench_runtime, so the figure comes from the same code and the
same run as the runtime's own."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scaler import overhead


def section(rounds: int, tmp: Path) -> dict[str, Any]:
    """The section's report (`routed_extra_p50_ms_c8`, per-round figures, CPU split)."""
    return overhead.section(argparse.Namespace(quick=False, rounds=rounds), tmp)
