"""What bench_trace.py measures with, where it writes, and the bounds its summary holds figures to."""

from __future__ import annotations

from lib.report import logger
from lib.targets import REPO

DEFAULT_TRACE = REPO / "simulator" / "traces" / "azure2019"
OUT = REPO / "build" / "bench" / "trace"
# The committed copy of the report and its plots (--update-results): trace.md, trace_*.png; the
# README shows trace_pareto.png (like bench/results/models.png).
RESULTS_DIR = REPO / "bench" / "results"

# Model folders (build/models) the calibration measures: three sizes for the fitted lines.
CALIBRATION_MODELS = ("digits", "minilm", "bert-base")
# The model every live-slice action loads (real weights, a cold start of a few seconds here).
LIVE_MODEL = "minilm"
GIB = 1024**3

# (comparison, bound) of the last-line JSON keys; trace_dominated_by must be [].
TARGETS = {
    "trace_cold_start_ratio_vs_owdefault": ("<=", 0.4),
    "trace_p99_ratio_vs_owdefault": ("<=", 1.0),
    "trace_memory_gbs_ratio_vs_owdefault": ("<=", 1.0),
    "live_vs_sim_max_error": ("<=", 0.25),
}

log = logger("bench-trace")
