"""The trace benchmark's plots (PNG, matplotlib): cold starts per tercile, latency CDFs, hosts and
memory over time for the busiest functions, the Pareto front of (p99, memory GB·s), and the live
slice against its prediction."""

from __future__ import annotations

from pathlib import Path
from trace.config import log
from typing import Any

from warmwhisk_sim.mapping import TERCILES
from warmwhisk_sim.matrix import CRITERIA, pareto_front
from warmwhisk_sim.variants import all_variants

COLORS = {"hybrid": "tab:green", "openwhisk": "tab:red", "kpa": "tab:blue", "rayserve": "tab:purple"}
MAIN = ("hybrid", "openwhisk", "kpa", "rayserve")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(name: str) -> str:
    variants = {v.name: v for v in all_variants()}
    v = variants.get(name)
    if v is None:
        return "gray"
    if v.group == "ablation":
        return "tab:olive" if v.policy == "hybrid" else "tab:orange"
    return COLORS.get(v.family, "gray")


def plot_all(results: dict[str, dict[str, Any]], live: dict[str, Any] | None, out: Path) -> list[Path]:
    """Every plot for the results of one cluster (variant name -> metrics); returns the files."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    files = [
        cold_by_tercile(plt, results, out / "cold_terciles.png"),
        latency_cdfs(plt, results, out / "latency_cdf.png"),
        timelines(plt, results, out / "timeline.png"),
        pareto(plt, results, out / "pareto.png"),
    ]
    if live and any(p in live for p in ("hybrid", "openwhisk")):
        files.append(live_vs_sim(plt, live, out / "live_vs_sim.png"))
    for f in files:
        log(f"plot: {f}")
    return files


def cold_by_tercile(plt: Any, results: dict[str, dict[str, Any]], path: Path) -> Path:
    names = [n for n in results if "[" not in n]
    groups = [*TERCILES, "all"]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        m = results[name]
        values = [m["terciles"][t]["cold_plus_loads_per_1000"] for t in TERCILES] + [
            m["cold_plus_loads_per_1000"]
        ]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [max(v, 1e-3) for v in values], width, label=name, color=_color(name),
               alpha=1.0 if name in MAIN else 0.55)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"{g} functions" if g != "all" else "all invocations" for g in groups])
    ax.set_ylabel("cold starts + model loads per 1,000 invocations")
    ax.set_title("Cold starts + model loads per 1,000 invocations, by popularity tercile")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdfs(plt: Any, results: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, (ax, tail) = plt.subplots(1, 2, figsize=(12, 4.6))
    for name in [n for n in results if "[" not in n]:
        cdf = results[name]["cdf"]
        if not cdf["latency_s"]:
            continue
        style = "-" if name in MAIN else "--"
        lat = [max(x, 1e-4) for x in cdf["latency_s"]]
        ax.plot(lat, cdf["levels"], style, color=_color(name), label=name, lw=1.4)
        tail.plot(
            lat, [max(1 - q, 1e-5) for q in cdf["levels"]], style, color=_color(name), label=name, lw=1.4
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency, arrival to answer (s)")
    ax.set_ylabel("fraction of invocations")
    ax.set_title("Latency CDF")
    tail.set_xscale("log")
    tail.set_yscale("log")
    tail.set_xlabel("latency (s)")
    tail.set_ylabel("fraction slower (1 - CDF)")
    tail.set_title("The tail")
    tail.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timelines(plt: Any, results: dict[str, dict[str, Any]], path: Path) -> Path:
    shown = [n for n in MAIN if n in results]
    tops = list(results[shown[0]]["timeline"]["top"]) if shown else []
    fig, axes = plt.subplots(len(tops) + 1, 1, figsize=(12, 2.3 * (len(tops) + 1)), sharex=True)
    for name in shown:
        tl = results[name]["timeline"]
        hours = [t / 3600 for t in tl["t_s"]]
        for ax, fn in zip(axes, tops, strict=False):
            ax.plot(hours, tl["top"][fn], color=_color(name), label=name, lw=1)
            ax.set_ylabel("hosts")
            ax.set_title(f"function {fn}: hosts alive", fontsize=9)
        axes[-1].plot(hours, tl["memory_gb"], color=_color(name), label=name, lw=1)
    axes[-1].set_ylabel("GB")
    axes[-1].set_title("memory of the whole cluster (hosts, shared weights, routed containers)", fontsize=9)
    axes[-1].set_xlabel("hours into the trace")
    axes[0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto(plt: Any, results: dict[str, dict[str, Any]], path: Path) -> Path:
    """Every policy, ablation and sweep point at (p99, memory GB·s), with the front of the valid
    ones; beside it the same points at (cold starts + model loads, memory), the third criterion."""
    valid = {n: m for n, m in results.items() if m["dropped_or_timed_out"] == 0}
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.4))
    for ax, key, label in (
        (axes[0], "p99_s", "p99 latency (s, log)"),
        (axes[1], CRITERIA[0], "cold starts + model loads per 1,000 invocations (log)"),
    ):
        points = {n: (m[key], m["memory_gb_s"]) for n, m in valid.items()}
        for name, m in results.items():
            x, y = m[key], m["memory_gb_s"] / 1000
            marker = "*" if name == "hybrid" else ("o" if name in MAIN else ("s" if "[" not in name else "^"))
            hollow = m["dropped_or_timed_out"] > 0
            ax.scatter([x], [y], s=260 if name == "hybrid" else 60, marker=marker, zorder=3,
                       facecolors="none" if hollow else _color(name), edgecolors=_color(name))  # fmt: skip
            ax.annotate(name, (x, y), fontsize=6.5, xytext=(5, 2), textcoords="offset points")
        front = pareto_front(points)
        ax.step([points[n][0] for n in front], [points[n][1] / 1000 for n in front], where="post",
                color="black", lw=0.8, ls=":", label="Pareto front of the valid configurations")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("memory (thousand GB·s)")
        ax.legend(fontsize=8, loc="best")
    axes[0].set_title("p99 against memory (hollow: dropped or timed out > 0; ★ hybrid)", fontsize=10)
    axes[1].set_title("cold starts + model loads against memory", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def live_vs_sim(plt: Any, live: dict[str, Any], path: Path) -> Path:
    from trace.live import COMPARED

    policies = [p for p in ("hybrid", "openwhisk") if p in live]
    fig, axes = plt.subplots(1, len(policies), figsize=(6 * len(policies), 4.2), squeeze=False)
    for ax, policy in zip(axes[0], policies, strict=True):
        r = live[policy]
        ratios = [
            (r["sim"][k] / r["live"][k]) if r["live"][k] not in (None, 0) and r["sim"][k] is not None else 0.0
            for k in COMPARED
        ]
        ax.bar(range(len(COMPARED)), ratios, color=COLORS[policy])
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhspan(0.75, 1.25, color="gray", alpha=0.15, label="within 25 %")
        ax.set_xticks(range(len(COMPARED)), COMPARED, rotation=30, fontsize=8)
        ax.set_ylabel("simulated / live")
        ax.set_title(f"{policy}: the simulator's prediction over the live run", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
