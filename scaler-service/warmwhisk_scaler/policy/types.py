"""The values every scaling policy reads and returns: what the control loop observed, what it should do.

A policy is a pure function ``(observation, state, config) -> (decisions, state)``: no I/O, no clock
(``Observation.now`` is the only time it sees), no hidden state (``state`` is an immutable value the
caller stores per pool and hands back on the next tick). One pool is one model (or action): its
model hosts are interchangeable, each serves up to ``limit`` concurrent activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from warmwhisk_protocol.records import HostState

# ``starting``: container started, model not loaded yet (no slots). ``warm``: takes activations.
# ``draining``: being removed, takes no new activations. The registry's own host states.

DecisionKind = Literal["add_hosts", "remove_hosts", "set_limit", "hold"]


@dataclass(frozen=True)
class HostView:
    """One model host of the pool, as the registry saw it at ``Observation.now``."""

    host_id: str
    state: HostState
    # Activations running on the host now.
    in_flight: int
    # Concurrency limit the router applies to the host (slots).
    limit: int
    # When the container was started (s, same clock as ``Observation.now``).
    started_at: float
    # When the host last started or finished an activation, or became warm if it never ran one (s).
    last_active_at: float


@dataclass(frozen=True)
class Observation:
    """What the control loop measured for one pool at one tick. Rates and latencies cover the loop's
    recent window (e.g. the last 10 s); ``None`` means no data in that window."""

    # The pool's key: the model (or action) whose hosts these are.
    pool: str
    # The tick's time (s). Policies read no other clock.
    now: float
    hosts: tuple[HostView, ...]
    # Activations waiting for a slot (no warm host had one free).
    queued: int = 0
    # Activations that arrived per second over the window (queued or not).
    arrivals_per_s: float = 0.0
    # Activations that completed per second over the window: the pool's measured throughput.
    completions_per_s: float = 0.0
    # Run time of recent activations on the hosts (slot acquired → released, s), median and 99th
    # percentile. Queue wait is excluded: ``queued`` measures that.
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    # Mean run time of recent activations on the hosts (s).
    service_time_s: float | None = None
    # Measured time to add a host: container start to model loaded and warm (s).
    cold_start_s: float | None = None

    @property
    def warm(self) -> tuple[HostView, ...]:
        return tuple(h for h in self.hosts if h.state == "warm")

    @property
    def starting(self) -> tuple[HostView, ...]:
        return tuple(h for h in self.hosts if h.state == "starting")

    @property
    def live(self) -> tuple[HostView, ...]:
        """Hosts that are or will be serving: warm and starting (draining ones are on their way out)."""
        return tuple(h for h in self.hosts if h.state != "draining")

    @property
    def in_flight(self) -> int:
        return sum(h.in_flight for h in self.hosts)


@dataclass(frozen=True)
class Decision:
    """One thing for the control loop to do for the pool.

    * ``add_hosts``: start ``count`` hosts, each with concurrency limit ``limit``.
    * ``remove_hosts``: stop the hosts ``host_ids`` (policies only name hosts with nothing in
      flight, or still starting).
    * ``set_limit``: set the concurrency limit of the hosts ``host_ids`` to ``limit``.
    * ``hold``: nothing to change; ``reason`` says why (for the decision log).
    """

    kind: DecisionKind
    reason: str
    count: int = 0
    host_ids: tuple[str, ...] = ()
    limit: int | None = None

    @classmethod
    def add_hosts(cls, count: int, limit: int, reason: str) -> Decision:
        return cls("add_hosts", reason, count=count, limit=limit)

    @classmethod
    def remove_hosts(cls, host_ids: Sequence[str], reason: str) -> Decision:
        return cls("remove_hosts", reason, count=len(host_ids), host_ids=tuple(host_ids))

    @classmethod
    def set_limit(cls, host_ids: Sequence[str], limit: int, reason: str) -> Decision:
        return cls("set_limit", reason, count=len(host_ids), host_ids=tuple(host_ids), limit=limit)

    @classmethod
    def hold(cls, reason: str) -> Decision:
        return cls("hold", reason)


C = TypeVar("C")
S = TypeVar("S")


class Policy(Protocol[C, S]):
    """What the control loop calls. Per pool it keeps one ``state`` and, every ``config.tick_s``,
    replaces it with the one ``decide`` returns::

        policy = POLICIES["hybrid"]()
        config = policy.config_type()           # or with overrides, read once at the edge
        state = policy.initial_state()
        ...
        decisions, state = policy.decide(observation, state, config)
    """

    # Registry name ("hybrid", "openwhisk", "kpa", "rayserve").
    name: ClassVar[str]
    # The policy's config dataclass; every config has ``tick_s`` (s) and ``max_hosts``.
    config_type: ClassVar[type[Any]]
    # True when the platform it models decides per activation rather than per tick (OpenWhisk's
    # invoker starts a container the moment an activation finds no free one): the caller should
    # also call ``decide`` whenever an activation has to queue.
    event_driven: ClassVar[bool]

    def initial_state(self) -> S: ...

    def decide(self, observation: Observation, state: S, config: C) -> tuple[list[Decision], S]: ...
