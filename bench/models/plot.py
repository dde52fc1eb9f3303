"""build/bench/models.png: throughput against client concurrency, one panel per model (needs
matplotlib; without it the benchmark skips the plot)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.actions import SMALL_MODELS
from models.config import log

STYLES = (("unbatched", "o--"), ("batched", "s-"), ("ceiling", "^:"))


def plot(results: dict[str, Any], args: argparse.Namespace, path: Path) -> str | None:
    tp = results["sections"].get("throughput")
    if tp is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return None
    panels = [("bert", "bert-base (340 MB), sequence 64", tp["bert"])]
    panels += [(name, SMALL_MODELS[name][2], tp[name]["points"]) for name in SMALL_MODELS]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.6))
    for ax, (key, title, points) in zip(axes, panels, strict=True):
        _runtime_lines(ax, points, args.quiet_cpu)
        if key == "bert":
            _in_process_lines(ax, points, tp["in_process"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(args.concurrency), [str(c) for c in args.concurrency])
        ax.set_xlabel("client concurrency")
        ax.set_ylabel("requests / s")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("warmwhisk runtime throughput: micro-batching on/off vs in-process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _runtime_lines(ax: Any, points: dict[str, list[dict[str, Any]]], quiet_cpu: float) -> None:
    """One line per mode; the noisy points ringed red; a ceiling far above the rest only named."""
    noisy: list[dict[str, Any]] = []
    for mode, style in STYLES:
        if mode not in points:
            continue
        pts = points[mode]
        best_batched = max(p["rps"] for p in points["batched"])
        if mode == "ceiling" and max(p["rps"] for p in pts) > 3 * best_batched:
            top = max(p["rps"] for p in pts)
            ax.plot([], [], style, label=f"runtime, ceiling: up to {top:.0f} (off the scale)")
            continue
        ax.plot([p["concurrency"] for p in pts], [p["rps"] for p in pts], style, label=f"runtime, {mode}")
        noisy += [p for p in pts if p["other_cpu_util"] > quiet_cpu]
    if noisy:
        ax.plot(
            [p["concurrency"] for p in noisy],
            [p["rps"] for p in noisy],
            "o",
            ms=13,
            mfc="none",
            mec="red",
            label=f"measured while other processes kept > {quiet_cpu:g} cores busy",
        )


def _in_process_lines(
    ax: Any, points: dict[str, list[dict[str, Any]]], ip: dict[str, dict[str, Any]]
) -> None:
    adjacent = [p for p in points["batched"] if p.get("in_process_rps")]
    ax.plot(
        [p["concurrency"] for p in adjacent],
        [p["in_process_rps"] for p in adjacent],
        "kx",
        label="in-process at the batcher's mean batch (measured right after)",
    )
    best_bs = max(ip, key=lambda k: ip[k]["rps"])
    ax.axhline(ip[best_bs]["rps"], color="k", ls=":", label=f"in-process ceiling (batch {best_bs})")
    ax.axhline(ip["1"]["rps"], color="grey", ls=":", label="in-process, batch 1")
