"""What bench_stack.py measures, with which settings, and the bounds its summary holds them to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.report import logger

TARGETS = {  # key: (comparison, bound)
    "stack_cold_starts_ratio_vs_stock": ("<=", 0.3),
    "stack_p99_ratio_vs_stock": ("<=", 0.5),
    "stack_memory_s_ratio_vs_stock": ("<=", 0.3),
    "api_overhead_p50_ms": ("<=", 3.0),
}
MODES = ("stock", "warmwhisk")
# Both stacks: the same memory budget for action containers (16 x 1 GiB, bench_scaler's 16 hosts
# of 1 GiB), model hosts of 1 GiB (bench_scaler's), containers kept for the whole run.
USER_MEMORY_MB = 16 * 1024
HOST_MEMORY_MB = 1024
IDLE_TIMEOUT_S = 600
ACTION_TIMEOUT_MS = 120_000  # an activation's own limit; the client waits 180 s in all
SAMPLE_S = 1.0
WAIT_POLL_S = 0.05

log = logger("bench-stack")


@dataclass(frozen=True)
class ActionSettings:
    """The bert action as a user of each mode defines it: stock holds bert in each container
    (1 GiB, one activation at a time: OpenWhisk's maximum); warmwhisk's container holds no model
    (256 MB, the stem cells' size) and takes many activations at once (the model hosts have 1 GiB)."""

    memory_mb: int
    concurrency: int

    def limits(self) -> dict[str, Any]:
        return {"memory": self.memory_mb, "concurrency": self.concurrency, "timeout": ACTION_TIMEOUT_MS}


ACTIONS = {"stock": ActionSettings(1024, 1), "warmwhisk": ActionSettings(256, 32)}
