"""One bench_trace.py run: (calibration,) the simulated matrix, the live slice, the report:
tables on stdout, build/bench/trace/{trace.json,report.md,*.png}, the JSON summary last."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from trace import live as live_slice
from trace import plots, report
from trace.config import RESULTS_DIR, log
from typing import Any

from lib.report import emit_summary, loadavg, source_fingerprint
from lib.targets import REPO, DockerEngine, stop_on_sigterm
from warmwhisk_sim.calibration import load_calibration
from warmwhisk_sim.cluster import CLUSTERS
from warmwhisk_sim.matrix import MatrixSpec, default_tasks, run_matrix, text_progress
from warmwhisk_sim.traces import TraceError, read_azure_trace


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; exit status 1 when a section failed, 2 for a bad trace or calibration."""
    stop_on_sigterm()
    began = time.monotonic()
    out = Path(args.out)
    try:
        functions = read_azure_trace(args.trace)
    except TraceError as exc:
        log(f"rejected trace: {exc}")
        return 2
    models_dir = Path(args.models).resolve()
    dock = DockerEngine(uuid.uuid4().hex[:12], timeout_s=120)
    dock.labels.update(dict(label.split("=", 1) for label in args.label))
    errors: dict[str, str] = {}
    results: dict[Any, Any] = {}
    live: dict[str, Any] | None = None
    timings: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-trace-") as tmp:
            calibration_path = Path(args.calibration)
            if args.calibrate:
                from trace.calibrate import calibrate

                t = time.monotonic()
                calibration_path = calibrate(args, dock, models_dir, Path(tmp), out / "calibration.json")
                timings["calibration_s"] = time.monotonic() - t
            calibration = load_calibration(calibration_path)
            if not args.no_matrix:
                results = matrix(args, calibration_path, len(functions), timings)
            report.print_tables(results, None, calibration)
            if not args.no_live:
                t = time.monotonic()
                try:
                    dock.check_image()
                    live = live_slice.section(args, functions, calibration, dock, models_dir, Path(tmp))
                except Exception as exc:  # noqa: BLE001 - recorded; the report still comes
                    errors["live"] = f"{type(exc).__name__}: {exc}"[:2000]
                    log(f"live FAILED: {errors['live']}")
                timings["live_s"] = time.monotonic() - t
    finally:
        if dock.connected:
            left = dock.remove_all()
            if left:
                log(f"removed {left} leftover container(s)")
    return finish(args, out, results, live, calibration, errors, timings, began)


def shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def plot_note(files: list[Path]) -> str:
    return "plots: " + ", ".join(shown(f) for f in files)


def matrix(
    args: argparse.Namespace, calibration_path: Path, functions: int, timings: dict[str, float]
) -> dict[Any, Any]:
    """Every variant of the matrix, simulated on ``args.workers`` processes, with a progress bar."""
    spec = MatrixSpec(
        str(args.trace), str(calibration_path), seed=args.seed, tasks=default_tasks(args.variants)
    )
    log(
        f"matrix: {len(spec.tasks)} runs of {functions} functions on {args.workers} workers; load {loadavg()}"
    )
    t = time.monotonic()
    results = run_matrix(spec, workers=args.workers, progress=text_progress(sys.stderr))
    timings["matrix_s"] = time.monotonic() - t
    log(f"matrix: {timings['matrix_s']:.0f} s")
    return results


def finish(
    args: argparse.Namespace,
    out: Path,
    results: dict[Any, Any],
    live: dict[str, Any] | None,
    calibration: Any,
    errors: dict[str, str],
    timings: dict[str, float],
    began: float,
) -> int:
    summary = report.summarize(results, live)
    summary.update(
        {
            "runs": len(results),
            "matrix_seconds": round(timings.get("matrix_s", 0.0), 1),
            "live_seconds": round(timings["live_s"], 1) if "live_s" in timings else None,
            "calibration_seconds": round(timings["calibration_s"], 1) if "calibration_s" in timings else None,
            "trace": shown(Path(args.trace)),
            "calibration": shown(Path(calibration.path)),
            "seed": args.seed,
            "errors": errors,
            "cpus": os.cpu_count(),
            "loadavg_end": loadavg(),
            "seconds": round(time.monotonic() - began, 1),
        }
    )
    tight = report.by_cluster(results, "tight")
    files = plots.plot_all(tight, live, out) if tight else []
    ran = {c for _, c in results}
    notes = [
        f"trace: {shown(Path(args.trace))}; seed {args.seed}; calibration: {shown(Path(calibration.path))} "
        f"(measured {calibration.measured_at})",
        f"clusters: {'; '.join(f'{c.name}: {c.note}' for c in CLUSTERS.values() if c.name in ran)}",
        f"matrix: {len(results)} runs in {summary['matrix_seconds']} s on {args.workers} workers",
    ]
    report.write(
        out / "report.md", report.markdown(results, live, summary, calibration, [*notes, plot_note(files)])
    )
    if args.update_results and files:
        # The committed copy the README shows: bench/results/trace.md and trace_<plot>.png.
        kept = []
        for f in files:
            kept.append(RESULTS_DIR / f"trace_{f.name}")
            shutil.copyfile(f, kept[-1])
        text = report.markdown(results, live, summary, calibration, [*notes, plot_note(kept)])
        report.write(RESULTS_DIR / "trace.md", text)
        log(f"copied the report and {len(kept)} plots to {RESULTS_DIR}")
    full = {
        "summary": summary,
        "notes": notes,
        "matrix": [{"variant": v, "cluster": c, **m} for (v, c), m in results.items()],
        "live": live,
        "code": {
            "simulator": source_fingerprint(REPO / "simulator" / "warmwhisk_sim"),
            "policies": source_fingerprint(REPO / "scaler-service" / "warmwhisk_scaler" / "policy"),
        },
    }
    report.write(out / "trace.json", json.dumps(full, indent=1) + "\n")
    log(f"full results: {out / 'trace.json'}, report: {out / 'report.md'}")
    emit_summary(summary)
    return 1 if errors else 0
