"""The values the registry stores and hands out: host records, slots, pool statistics.

A host's ``state`` is one of ``HOST_STATES``: ``starting`` (process up, model not loaded: no
slots), ``warm`` (takes activations), ``draining`` (being removed: no new activations). The
scaling policies read the same names (``warmwhisk_scaler.policy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

HostState = Literal["starting", "warm", "draining"]
HOST_STATES: tuple[str, ...] = get_args(HostState)


@dataclass(frozen=True)
class HostRecord:
    """What a model host reports in each heartbeat, plus two fields the registry fills on reads.

    ``limit`` is the host's own concurrency cap; ``heartbeat_at`` is stamped by ``heartbeat``.
    ``slots_in_use`` and ``scaler_limit`` are read-side only (``Registry.hosts``): heartbeats
    ignore them.
    """

    host_id: str
    address: str  # "127.0.0.1:port" of the host's action port
    namespace: str
    actions: tuple[str, ...]
    models: tuple[str, ...]
    state: HostState
    limit: int
    reported_in_flight: int = 0
    memory_bytes: int = 0  # PSS
    model_load_s: float | None = None  # measured, None until the host has loaded its models
    # Seconds the host keeps an idle keep-alive connection open (0: not advertised). Routers drop
    # their pooled connections to the host before that, instead of finding them closed.
    keepalive_s: float = 0.0
    # What a router must send the host with a forwarded run (``forwarding.TOKEN_HEADER``).
    token: str = ""
    heartbeat_at: float = 0.0  # unix seconds
    slots_in_use: int = field(default=0, compare=False)
    scaler_limit: int | None = field(default=None, compare=False)
    # A router could not reach the host lately (``Registry.report_unreachable``).
    unreachable: bool = field(default=False, compare=False)

    @property
    def routing_limit(self) -> int:
        """The limit ``acquire`` applies: the scaler's, capped by the host's own."""
        return self.limit if self.scaler_limit is None else min(self.limit, self.scaler_limit)


@dataclass(frozen=True)
class Slot:
    """A slot taken by ``acquire``: send the activation to ``address``, then ``release`` it."""

    host_id: str
    address: str
    action: str
    in_use: int  # slots in use on the host right after this acquire
    keepalive_s: float = 0.0  # the host's advertised keep-alive (0: unknown)
    registered: bool = True  # False: the action's registration is gone (Redis lost its state)
    token: str | None = None  # the host's credential, sent with the forwarded run


@dataclass(frozen=True)
class PoolStats:
    """Counters of one action's pool since Redis last lost its state."""

    action: str
    acquired: int
    rejected: int  # acquire found no free slot
    completed: int
    timed: int  # completions released with a duration
    duration_ms_sum: float
    recent_ms: tuple[float, ...]  # newest first, at most DURATION_SAMPLES


def check_heartbeat(record: HostRecord) -> None:
    """What every registry refuses in a heartbeat (ValueError)."""
    if record.state not in HOST_STATES:
        raise ValueError(f"state must be one of {HOST_STATES}, got {record.state!r}")
    if record.limit < 0 or record.reported_in_flight < 0:
        raise ValueError("limit and reported_in_flight must be >= 0")
    if not all(record.actions) or not record.host_id:
        raise ValueError("host_id and action names must be non-empty")
