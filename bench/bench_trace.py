"""The Azure Functions trace evaluation: the hybrid policy against OpenWhisk's default, Knative's
KPA and Ray Serve, simulated at full scale and replayed live on a slice.

1. calibration  (with --calibrate) measures cold starts, memory, forward curves and the routed
                overhead of the real runtime on this machine (bench/trace/calibrate.py) and
                writes build/bench/trace/calibration.json; otherwise the committed file measured
                on this project's machine (simulator/warmwhisk_sim/default_calibration.json).
2. matrix       every function of the trace (--trace, any folder in the Azure Functions 2019
                layout) as a model action (warmwhisk_sim.mapping), all of its minutes, every
                variant (warmwhisk_sim.variants: policies at their defaults, hybrid ablations,
                baseline sweeps) on a tight cluster and the policies on a loose one, simulated by
                the scaler's own policies and `measure` (warmwhisk_sim.engine), 2 workers.
3. live         a slice (--live-minutes of trace from --live-start-minute, compressed
                --live-compress times) replayed on a real Redis + scaler + model-host containers,
                hybrid then OpenWhisk default, each next to the simulator's prediction for the
                same slice (bench/trace/live.py); --no-live skips it.
4. report       the tables on stdout, build/bench/trace/report.md, trace.json and the plots
                (cold starts per tercile, latency CDFs, hosts and memory over time, the Pareto
                front, live vs simulated); --update-results copies them to bench/results/trace.md
                and bench/results/trace_*.png. The LAST stdout line is the JSON summary.

Needs, for calibration and the live slice, the image (`make image`), the model folders
(`make models`), a Docker engine and redis-server. Containers carry `warmwhisk.bench=1` and the
run's label and are removed at the end (on errors and SIGTERM too).
Usage: .venv/bin/python bench/bench_trace.py [--trace DIR] [--calibrate] [--no-live] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from trace.bench import run
from trace.config import DEFAULT_TRACE, OUT

from lib.targets import REPO
from warmwhisk_sim.calibration import DEFAULT as DEFAULT_CALIBRATION


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="folder of azure2019_*.csv")
    parser.add_argument("--calibration", default=str(DEFAULT_CALIBRATION), help="calibration file to use")
    parser.add_argument("--calibrate", action="store_true", help="measure a calibration first and use it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrivals and run times")
    parser.add_argument("--workers", type=int, default=2, help="processes running the matrix")
    parser.add_argument("--variants", default="all", help="comma-separated variant names (default all)")
    parser.add_argument("--models", default=str(REPO / "build" / "models"))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--update-results", action="store_true", help="copy the report and plots to bench/results/trace*"
    )
    parser.add_argument("--no-live", action="store_true", help="skip the live slice")
    parser.add_argument(
        "--no-matrix", action="store_true", help="skip the simulated matrix (the live slice alone)"
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="one more label on every container"
    )
    parser.add_argument("--quick", action="store_true", help="short live slice (3 minutes of trace)")
    parser.add_argument("--live-start-minute", type=int, default=0, help="first trace minute of the slice")
    parser.add_argument("--live-minutes", type=int, default=12, help="minutes of trace in the slice")
    parser.add_argument("--live-compress", type=float, default=4.0, help="time compression of the slice")
    parser.add_argument(
        "--live-max-hosts", type=int, default=6, help="most hosts per pool, live and simulated"
    )
    parser.add_argument("--cal-reps", type=int, default=2, help="calibration: repetitions per model")
    parser.add_argument(
        "--cal-seconds", type=float, default=1.0, help="calibration: seconds per forward point"
    )
    parser.add_argument(
        "--max-tries", type=int, default=3, help="calibration: tries of a noisy forward point"
    )
    parser.add_argument("--quiet-cpu", type=float, default=0.3, help="calibration: noise bound (cores)")
    args = parser.parse_args(argv)
    if args.quick:
        args.live_minutes = 3
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
