"""What bench_scaler.py measures, and the bounds its summary holds the figures to."""

from __future__ import annotations

from lib.report import logger

TARGETS = {  # key: (comparison, bound)
    "acquire_release_p50_ms": ("<=", 0.3),
    "routed_extra_p50_ms": ("<=", 1.5),
    "routed_cold_start_ratio_vs_stock": ("<=", 0.3),
}
SECTIONS = ("registry", "overhead", "coldstart", "burst")
GIB = 1024**3
SLOW_S = 1.0  # activations at least this slow are counted apart
WAIT_POLL_S = 0.05  # how often the waiting activations (Redis) and the hosts' states are read

log = logger("bench-scaler")


def guest_env(name: str) -> dict[str, str]:
    """The /init environment of action `name` in the namespace `guest` (its routing key)."""
    return {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": f"/guest/{name}"}
