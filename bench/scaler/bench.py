"""One bench_scaler.py run: the sections in order (a failed section is recorded, the others run),
the JSON summary and build/bench/scaler.json."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lib.report import finish, loadavg
from lib.targets import DockerEngine, stop_on_sigterm
from scaler import burst, coldstart, overhead, registry
from scaler.config import TARGETS, log

BURST_FIELDS = (
    "containers_created",
    "cold_starts",
    "waited_for_a_slot",
    "p50_ms",
    "p99_ms",
    "errors",
    "peak_memory_mb",
    "memory_gb_s",
    "memory_gb_s_first_ramp_window",
)


def run_section(args: argparse.Namespace, section: str, tmp: Path, dock: DockerEngine) -> dict[str, Any]:
    models_dir = Path(args.models).resolve()
    if section == "registry":
        return registry.section(args)
    if section == "overhead":
        return overhead.section(args, tmp)
    if section in ("coldstart", "burst"):
        dock.check_image()
        if section == "coldstart":
            return coldstart.section(args, dock, models_dir)
        return burst.section(args, dock, models_dir, tmp)
    raise SystemExit(f"unknown section {section!r}")


def run_sections(args: argparse.Namespace, sections: list[str], run_id: str) -> tuple[dict, dict[str, str]]:
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    dock = DockerEngine(run_id, timeout_s=60)
    try:
        with tempfile.TemporaryDirectory(prefix="warmwhisk-bench-scaler-") as tmp_name:
            for section in sections:
                started = time.monotonic()
                try:
                    results[section] = run_section(args, section, Path(tmp_name), dock)
                except Exception as exc:  # noqa: BLE001 - recorded; the other sections still run
                    errors[section] = f"{type(exc).__name__}: {exc}"[:2000]
                    log(f"{section} FAILED: {errors[section]}")
                log(f"{section}: {time.monotonic() - started:.0f} s")
    finally:
        if dock.connected:
            left = dock.remove_all()
            if left:
                log(f"removed {left} leftover container(s)")
    return results, errors


def summarize(
    args: argparse.Namespace, results: dict[str, Any], errors: dict[str, str], began: float
) -> dict:
    registry_r = results.get("registry", {})
    overhead_r = results.get("overhead", {})
    cold_r = results.get("coldstart", {})
    burst_r = results.get("burst")
    summary: dict[str, Any] = {
        "acquire_release_p50_ms": registry_r.get("acquire_release_p50_ms"),
        "routed_extra_p50_ms": overhead_r.get("routed_extra_p50_ms_c1"),
        "routed_extra_p50_ms_c8": overhead_r.get("routed_extra_p50_ms_c8"),
        "routed_cold_start_ratio_vs_stock": cold_r.get("routed_cold_start_ratio_vs_stock"),
        "burst_hybrid_vs_owdefault": None,
    }
    if burst_r:
        summary["burst_hybrid_vs_owdefault"] = {
            **{p: {f: burst_r[p][f] for f in BURST_FIELDS} for p in ("hybrid", "openwhisk")},
            "workload": burst_r["hybrid"]["workload"] | burst_r["hybrid"]["caps"],
        }
    summary["targets_met"] = {
        f"{k}{op}{bound}": (summary[k] <= bound) if summary[k] is not None else None
        for k, (op, bound) in TARGETS.items()
    }
    summary.update(
        {
            "quick": args.quick,
            "errors": errors,
            "cpus": os.cpu_count(),
            "loadavg_end": loadavg(),
            "seconds": round(time.monotonic() - began, 1),
        }
    )
    return summary


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; exit status 1 when a section failed."""
    stop_on_sigterm()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    models_dir = Path(args.models).resolve()
    needs_model = {"coldstart", "burst"} & set(sections)
    if needs_model and not (models_dir / "bert-base" / "model.safetensors").is_file():
        raise SystemExit(f"{models_dir}/bert-base is missing; run `make models`")
    run_id = uuid.uuid4().hex[:12]
    began = time.monotonic()
    log(f"run {run_id}: sections {sections}{' (quick)' if args.quick else ''}; load {loadavg()}")
    results, errors = run_sections(args, sections, run_id)
    summary = summarize(args, results, errors, began)
    finish(Path(args.out), summary, {"sections": results, "run_id": run_id}, log)
    return 1 if errors else 0
