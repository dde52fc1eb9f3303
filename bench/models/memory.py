"""Section 1, memory: total PSS of 1, 2 and 4 containers serving bert-base, ours (one read-only
mapping of the model file, shared) against stock (each loads its own copy with torch.load)."""

from __future__ import annotations

import time
from typing import Any

from lib.actions import STOCK_TORCH_LOAD, ActionCode
from lib.report import mb, table
from lib.targets import RuntimeContainer
from models.actions import IDLE_ACTION
from models.config import SEQ_LEN, log
from models.context import ModelBench, warm_page_cache

COUNTS = ("1", "2", "4")


def serving_container(bench: ModelBench, action: ActionCode) -> RuntimeContainer:
    c = bench.container()
    c.wait_health(lambda h: True)
    c.init(action)
    c.run({"length": SEQ_LEN})
    return c


def settle_pss(containers: list[RuntimeContainer]) -> tuple[int, list[int], list[int]]:
    """Total PSS, the median of three readings 0.5 s apart, each taken 0.1 s after one more
    activation in every container: proactive reclaim (DAMON `pageout` on this machine) unmaps
    file pages it sees as cold, which would hide mapped weights. Also the bytes of the model
    file each container has mapped (RSS of its mapping), to show the weights were counted."""
    readings = []
    for _ in range(3):
        time.sleep(0.5)
        for c in containers:
            c.run({"length": SEQ_LEN})
        time.sleep(0.1)  # idle, as the invoker keeps them between activations (pause grace 50 ms)
        per = [c.pss() for c in containers]
        mapped = [c.mapped_bytes("model.safetensors") for c in containers]
        readings.append((sum(per), per, mapped))
    readings.sort(key=lambda r: r[0])
    return readings[1]


def measure_idle(bench: ModelBench, out: dict[str, Any]) -> None:
    log("memory: 4 idle containers (torch imported, no model)")
    idle_action = ActionCode(IDLE_ACTION, "main", "inline: import torch, no model")
    idle = [serving_container(bench, idle_action) for _ in range(4)]
    total, per, _ = settle_pss(idle)
    out["idle_4_total"] = total
    out["idle_4_per_container"] = per
    out["idle_per_container"] = total / 4
    bench.remove_containers()


def measure_serving(bench: ModelBench, name: str, action: ActionCode) -> dict[str, Any]:
    """PSS of 1, then 2, then 4 containers serving `action` (each added to those running)."""
    running: list[RuntimeContainer] = []
    out: dict[str, Any] = {}
    for n in (1, 2, 4):
        while len(running) < n:
            log(f"memory: {name} container {len(running) + 1}")
            running.append(serving_container(bench, action))
        total, per, mapped = settle_pss(running)
        out[str(n)] = {"total": total, "per_container": per, "model_file_mapped": mapped}
        log(f"memory: {name} x{n}: {mb(total)} MB (model file mapped per container: {mapped})")
    bench.remove_containers()
    return out


def section(bench: ModelBench, ours: ActionCode) -> dict[str, Any]:
    model_bytes = bench.weights.stat().st_size
    stock_bytes = bench.stock_weights.stat().st_size
    stock_action = ActionCode(STOCK_TORCH_LOAD, "main", "inline: build() + torch.load(.pt)")
    out: dict[str, Any] = {"model_bytes": model_bytes, "stock_pt_bytes": stock_bytes}
    warm_page_cache(bench.weights, bench.stock_weights)
    measure_idle(bench, out)
    for name, action in (("ours", ours), ("stock", stock_action)):
        out[name] = measure_serving(bench, name, action)

    idle_each = out["idle_per_container"]
    for name, size in (("ours", model_bytes), ("stock", stock_bytes)):
        pss = out[name]
        out[name]["weight_copies"] = {n: (pss[n]["total"] - int(n) * idle_each) / size for n in COUNTS}
        out[name]["ratio_4_vs_1"] = pss["4"]["total"] / pss["1"]["total"]
        out[name]["ratio_2_vs_1"] = pss["2"]["total"] / pss["1"]["total"]
    memory_table(out)
    return out


def memory_table(out: dict[str, Any]) -> None:
    ours_pss, stock_pss, idle_each = out["ours"], out["stock"], out["idle_per_container"]
    rows = [
        [
            f"{n} container(s)",
            mb(ours_pss[n]["total"]),
            mb(stock_pss[n]["total"]),
            mb(int(n) * idle_each),
            f"{ours_pss['weight_copies'][n]:.2f}",
            f"{stock_pss['weight_copies'][n]:.2f}",
        ]
        for n in COUNTS
    ]
    table(
        "1. Memory: total PSS (MB) of N containers serving bert-base, after /init + one activation",
        ["", "ours (shared ro mmap)", "stock (torch.load copy)", "N x idle", "ours copies", "stock copies"],
        rows,
        [
            f"model file {mb(out['model_bytes'])} MB (stock .pt {mb(out['stock_pt_bytes'])} MB); "
            "idle baseline: 4 idle containers (import torch, no model) running at once = "
            f"{mb(out['idle_4_total'])} MB, so one idle = {mb(idle_each)} MB "
            "(shared torch libraries split 4 ways, as in the serving measurement)",
            "copies = (total PSS - N x idle) / model file size; each reading 0.1 s after one more "
            "activation per container (this machine's DAMON pageout unmaps cold file pages)",
            "model file mapped by each ours container (RSS of the mapping, MB): "
            + "; ".join(f"{n}: " + " ".join(mb(x) for x in ours_pss[n]["model_file_mapped"]) for n in COUNTS),
            f"4 vs 1 container: ours x{ours_pss['ratio_4_vs_1']:.2f}, "
            f"stock x{stock_pss['ratio_4_vs_1']:.2f} "
            f"(2 vs 1: ours x{ours_pss['ratio_2_vs_1']:.2f}, stock x{stock_pss['ratio_2_vs_1']:.2f})",
        ],
    )
