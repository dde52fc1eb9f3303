"""What a pool looked like over the control loop's window: the one builder of `Observation`.

The live controller and the replay simulator both keep a `PoolWindow` per pool, feed it the same
kind of reading every time they decide (cumulative counters, the queue, run times completed since
the last reading), and call `measure`. Pure: no I/O, no clock; time is the `now` passed in.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .policy.types import HostView, Observation

# Run times kept for the mean service time, like the registry's recent-durations list.
SERVICE_TIME_SAMPLES = 256


@dataclass
class PoolWindow:
    """One pool's readings over the last `window_s` seconds."""

    window_s: float
    # (t, slots acquired so far, activations completed so far, activations waiting at t)
    counters: deque[tuple[float, int, int, int]] = field(default_factory=deque)
    # (t, run time s) of completions within the window
    run_times: deque[tuple[float, float]] = field(default_factory=deque)
    # The most recent run times, window or not (the mean service time).
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=SERVICE_TIME_SAMPLES))

    def record(
        self, now: float, acquired: int, completed: int, queued: int, new_run_times: Iterable[float]
    ) -> None:
        """One reading: cumulative counters, the queue now, and the run times completed since the
        previous reading. Readings older than the window are dropped (the two newest are kept, so a
        rate always has a span)."""
        self.counters.append((now, acquired, completed, queued))
        while len(self.counters) > 2 and self.counters[0][0] < now - self.window_s:
            self.counters.popleft()
        for run in new_run_times:
            self.run_times.append((now, run))
            self.recent.append(run)
        while self.run_times and self.run_times[0][0] <= now - self.window_s:
            self.run_times.popleft()


def new_run_times(recent_ms: tuple[float, ...], timed_now: int, timed_before: int | None) -> list[float]:
    """Run times (s) completed since the last reading, from the registry's newest-first list of
    recent durations and its count of timed completions. A first reading, or counters that went
    back (Redis lost its state), take the whole list."""
    fresh = len(recent_ms) if timed_before is None or timed_now < timed_before else timed_now - timed_before
    return [ms / 1000.0 for ms in recent_ms[: min(fresh, len(recent_ms))]]


def measure(
    pool: str,
    now: float,
    hosts: Iterable[HostView],
    queued: int,
    window: PoolWindow,
    cold_start_s: float | None,
) -> Observation:
    """The policy's view of the pool at `now` (see `Observation` for each field)."""
    counters = window.counters
    first, last = counters[0], counters[-1]
    span = max(last[0] - first[0], 1e-9)
    rated = len(counters) > 1
    runs = sorted(run for _, run in window.run_times)
    return Observation(
        pool=pool,
        now=now,
        hosts=tuple(sorted(hosts, key=lambda v: v.host_id)),
        queued=queued,
        # Arrivals = activations that got a slot + growth of the queue (those still waiting), over
        # the whole window even while less history exists: a burst in the first half second is
        # not a sustained rate of 48/s.
        arrivals_per_s=max(0.0, (last[1] - first[1]) + (last[3] - first[3])) / max(span, window.window_s)
        if rated
        else 0.0,
        completions_per_s=(last[2] - first[2]) / span if rated else 0.0,
        latency_p50_s=nearest_rank(runs, 0.50),
        latency_p99_s=nearest_rank(runs, 0.99),
        service_time_s=statistics.fmean(window.recent) if window.recent else None,
        cold_start_s=cold_start_s,
    )


def nearest_rank(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of sorted values by the nearest-rank rule; None when empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
