"""Small pure helpers shared by the policies: bounds, choosing hosts to stop, aligning limits."""

from __future__ import annotations

import math

from .types import Decision, HostView, Observation

EPS = 1e-9
"""Slack for float comparisons: ``ceil(5.000000001)`` must be 5 when the 1e-9 is rounding noise."""


Sample = tuple[float, float]
"""(time s, value): one observation of a metric kept in a policy's state."""


def push_sample(samples: tuple[Sample, ...], now: float, value: float, window_s: float) -> tuple[Sample, ...]:
    """The samples of the last ``window_s`` seconds, oldest first, with ``(now, value)`` appended."""
    return (*(s for s in samples if s[0] > now - window_s), (now, value))


def window_average(samples: tuple[Sample, ...], now: float, window_s: float) -> float:
    """Mean of the samples taken within the last ``window_s`` seconds (0 without any)."""
    values = [v for t, v in samples if t > now - window_s]
    return sum(values) / len(values) if values else 0.0


def ceil_int(x: float) -> int:
    """``ceil`` that ignores float noise below ``EPS``."""
    return math.ceil(x - EPS)


def headroom(observation: Observation, max_hosts: int) -> int:
    """Hosts that may still be started: every host (draining ones too) holds a container's memory."""
    return max(0, max_hosts - len(observation.hosts))


def idle_for(host: HostView, now: float) -> float:
    """Seconds the host has had nothing in flight (0 while it is busy)."""
    return 0.0 if host.in_flight > 0 else max(0.0, now - host.last_active_at)


def removable(observation: Observation, count: int) -> tuple[str, ...]:
    """Up to ``count`` hosts to stop when scaling down by a number: starting hosts first (newest
    first: they serve no one yet), then idle warm hosts, least recently active first. Busy hosts
    are never named; the router packs work onto the fullest hosts, so they become idle soon."""
    if count <= 0:
        return ()
    starting = sorted(observation.starting, key=lambda h: (-h.started_at, h.host_id))
    idle = sorted(
        (h for h in observation.warm if h.in_flight == 0),
        key=lambda h: (h.last_active_at, h.host_id),
    )
    return tuple(h.host_id for h in [*starting, *idle][:count])


def align_limits(observation: Observation, limit: int, reason: str) -> Decision | None:
    """A ``set_limit`` for the live hosts whose limit differs from the pool's (new hosts, or a change)."""
    off = tuple(h.host_id for h in observation.live if h.limit != limit)
    return Decision.set_limit(off, limit, reason) if off else None


def scale_to(
    observation: Observation, desired: int, limit: int, max_hosts: int, reason: str
) -> list[Decision]:
    """Decisions that move the live host count towards ``desired`` (bounded by ``max_hosts``)."""
    current = len(observation.live)
    if desired > current:
        add = min(desired - current, headroom(observation, max_hosts))
        return [Decision.add_hosts(add, limit, reason)] if add > 0 else []
    if desired < current:
        ids = removable(observation, current - desired)
        return [Decision.remove_hosts(ids, reason)] if ids else []
    return []
