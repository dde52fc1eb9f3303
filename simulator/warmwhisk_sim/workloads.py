"""Workloads for the replay: arrivals and each activation's run time alone on a host.

`burst_and_ramp` is synthetic; `warmwhisk_sim.traces` builds workloads from the Azure Functions
2019 trace. Every generator takes a seed: one seed, one workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Workload:
    """Arrivals (s, ascending) and each activation's run time alone on a host (s)."""

    name: str
    arrivals: tuple[float, ...]
    durations: tuple[float, ...]
    # End of the workload's time span (s); memory is counted at least until then.
    horizon_s: float
    # Memory of one host suggested by the source (MB), e.g. the trace's allocated memory.
    memory_mb: float | None = None

    def __post_init__(self) -> None:
        if len(self.arrivals) != len(self.durations):
            raise ValueError("arrivals and durations differ in length")
        if any(b < a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)):
            raise ValueError("arrivals must be sorted")
        if any(d <= 0 for d in self.durations):
            raise ValueError("durations must be > 0")


def _poisson_times(
    rng: np.random.Generator, rate_fn: Any, t0: float, t1: float, rate_max: float
) -> np.ndarray:
    """A Poisson process of rate ``rate_fn(t)`` on [t0, t1), by thinning one of rate ``rate_max``."""
    if rate_max <= 0 or t1 <= t0:
        return np.empty(0)
    n = rng.poisson(rate_max * (t1 - t0))
    t = np.sort(rng.uniform(t0, t1, n))
    keep = rng.uniform(0, rate_max, n) < rate_fn(t)
    return t[keep]


def burst_and_ramp(
    seed: int = 0,
    *,
    base_rate: float = 2.0,
    burst_at_s: float = 120.0,
    burst_size: int = 120,
    ramp_start_s: float = 240.0,
    ramp_end_s: float = 540.0,
    peak_rate: float = 30.0,
    hold_end_s: float = 660.0,
    tail_rate: float = 0.5,
    horizon_s: float = 1200.0,
    mean_duration_s: float = 0.1,
    duration_sigma: float = 0.3,
) -> Workload:
    """A synthetic inference workload: Poisson at ``base_rate``/s; ``burst_size`` activations
    within one second at ``burst_at_s``; a linear ramp from ``base_rate`` to ``peak_rate``/s
    between ``ramp_start_s`` and ``ramp_end_s``; ``peak_rate`` held until ``hold_end_s``; then
    ``tail_rate``/s until ``horizon_s``. Durations are log-normal with mean ``mean_duration_s``
    and log-space sigma ``duration_sigma``. Deterministic for a seed."""
    rng = np.random.default_rng(seed)

    def rate(t: np.ndarray) -> np.ndarray:
        ramp = base_rate + (peak_rate - base_rate) * (t - ramp_start_s) / (ramp_end_s - ramp_start_s)
        return np.select(
            [t < ramp_start_s, t < ramp_end_s, t < hold_end_s],
            [np.full_like(t, base_rate), ramp, np.full_like(t, peak_rate)],
            default=tail_rate,
        )

    background = _poisson_times(rng, rate, 0.0, horizon_s, max(base_rate, peak_rate, tail_rate))
    burst = burst_at_s + np.sort(rng.uniform(0.0, 1.0, burst_size))
    arrivals = np.sort(np.concatenate([background, burst]))
    mu = math.log(mean_duration_s) - duration_sigma**2 / 2
    durations = rng.lognormal(mu, duration_sigma, arrivals.size)
    return Workload(
        f"burst_and_ramp(seed={seed})", tuple(arrivals.tolist()), tuple(durations.tolist()), horizon_s
    )
