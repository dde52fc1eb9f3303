"""The simulation engine: pools of model hosts on a cluster of invoker nodes, driven by the
scaler's own policies. `replay.replay` (one pool) and `cluster.run_cluster` (a whole trace) both
run on it. Deterministic: no randomness here (workloads carry their seed), and ties between
events at one instant are broken by the order they were scheduled in.

* **Pools.** One pool per model action, each with its own policy state, `PoolWindow` and queue, as
  the live controller keeps per pool; every pool of a run uses one policy (with its own config).
* **Hosts.** A host added at t is ``starting`` until t + ``HostModel.cold_start_s`` (container
  start + model load), then ``warm``. It runs its activations by processor sharing: with c in
  flight each progresses at ``curve(c) / c`` of its solo speed (``HostModel.speed``).
* **Routing.** An arriving activation takes a slot on the fullest warm host of its pool with
  in-flight below its limit (ties: oldest host), as warmwhisk's registry packs work; with
  ``spread``, on the least busy one instead (Ray Serve's power-of-two-choices router and Knative's
  activator balance load over the replicas); else it waits in the pool's FIFO queue. An
  activation waiting longer than its pool's ``timeout_s`` is dropped (counted, never served).
* **Cluster.** ``Cluster.nodes`` invoker nodes with ``node_memory_mb`` each (OpenWhisk's
  ``userMemory``). A host is placed as OpenWhisk's sharding balancer places a container: its
  pool's home node (a hash of the pool's name), then the next nodes by a step co-prime with the
  node count, on the first with room for it. Without room anywhere, if ``evict_idle`` (OpenWhisk's
  container pool evicts its least recently used free containers), idle warm hosts of other pools
  are evicted, least recently active first, on the first node in that order where that makes
  room; otherwise (Kubernetes leaves a pod pending; warmwhisk's scaler stops only its own hosts),
  or if no node can make room, the start is refused and counted, and the policy sees no new host. A host holds
  ``memory_mb`` of its own; weights mapped from the node's page cache (``shared_mb``, warmwhisk's
  read-only model files) are held once per node while any host of that ``model`` lives there, and
  so are the pages of its image's files (``image_mb``: the runtime's libraries, shared by every
  container of that ``image`` on the node).
* **CPU of a node.** A host with work in flight keeps ``HostModel.busy_cores`` cores busy (its
  torch threads: the cores of the machine its curve was measured on). When the busy hosts of a
  node want more than ``Cluster.node_cores``, every one of them runs slower by the ratio (the
  kernel shares the cores), on top of its own curve.
* **Control loop.** Every ``tick_s`` (the policy config's) each pool's policy gets an
  ``Observation`` built by the live controller's own ``warmwhisk_scaler.measure`` from the same
  readings (cumulative counters, the queue, run times completed since the last reading), and its
  decisions are applied at once (at most ``max_starts_per_tick`` host starts per tick, like the
  live controller's bound). Unless ``ticks_only``, the policy is also called when an activation
  queues while its pool has no host (Knative's activator, Ray's handle and OpenWhisk react to a
  request at zero without waiting for a tick), and on every queueing activation for
  ``event_driven`` policies (OpenWhisk's invoker). The cold start a policy observes is None until
  a host of the pool turned warm, then the measured one, as in the live controller.
* **Quiet pools.** Calling 70 policies every second for 8 hours is most of a run's cost, and most
  of those calls, for an idle pool, decide nothing. A pool that has been idle (no queue, nothing in
  flight, no host starting or draining, no activity in the window, policy holding) for its policy's
  memory horizon stops being ticked; the policy is asked, for the pool as it is, at which later
  tick it would first decide something (assuming, as for every keep-alive, delay and grace period,
  that once it would it still would later), and the pool is woken just before that tick, or by
  its next arrival, or when one of its hosts is evicted. On waking, the ticks of the last horizon
  are replayed in order, so its sample windows and `PoolWindow` are exactly what ticking through
  would have left; `tests/test_sim_cluster.py` checks that runs are identical either way.

Routed tier (warmwhisk's routed mode): OpenWhisk keeps one routed container per action in front
of the hosts; an activation that finds none alive waits ``RoutedTier.start_s`` for one (a
container cold start without a model load), and a container idle for ``idle_timeout_s`` goes.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from warmwhisk_scaler.measure import PoolWindow, measure
from warmwhisk_scaler.policy import HostView, Observation
from warmwhisk_scaler.policy.types import Decision, Policy

_READY, _DONE, _TICK, _WAKE, _ROUTED = 0, 1, 2, 3, 4
_SPEED_TABLE = 257  # HostModel.speed(c) precomputed for c below this


@dataclass(frozen=True)
class HostModel:
    """How one simulated model host behaves."""

    # Time from "add a host" to warm (s): container start plus model load.
    cold_start_s: float = 2.0
    # Memory a host holds while alive, besides shared weights (MB).
    memory_mb: float = 1024.0
    # CPU cores of a host; with the default curve, throughput grows with concurrency up to it.
    cores: float = 2.0
    # Relative throughput at concurrency 1, 2, 3, ... (first entry 1.0); flat beyond the last.
    # Empty: min(c, cores).
    throughput_curve: tuple[float, ...] = ()
    # Weights a host maps from its node's page cache (MB), held once per node and `model`.
    shared_mb: float = 0.0
    model: str = ""
    # Pages of the container image's files (the runtime's libraries) the host maps (MB), held once
    # per node and `image` while any host of that image lives there.
    image_mb: float = 0.0
    image: str = ""
    # Added to every activation's latency outside the host (routed forwarding, batching delay) (s).
    latency_extra_s: float = 0.0
    # Memory of each activation in flight (MB).
    activation_mb: float = 0.0
    # Cores a host keeps busy while it has work (its curve was measured with that many).
    busy_cores: float = 2.0

    @property
    def shared(self) -> tuple[tuple[tuple[str, str], float], ...]:
        """What the host shares with its node's other hosts: ((kind, name), MB) of its weights and
        its image's files, each held once per node."""
        out = []
        if self.model:
            out.append((("model", self.model), self.shared_mb))
        if self.image:
            out.append((("image", self.image), self.image_mb))
        return tuple(out)

    def speed(self, concurrency: int) -> float:
        """Progress rate of each of ``concurrency`` activations, relative to running alone."""
        c = max(1, concurrency)
        if self.throughput_curve:
            curve = self.throughput_curve
            return curve[min(c, len(curve)) - 1] / c
        return min(float(c), self.cores) / c


@dataclass(frozen=True)
class RoutedTier:
    """OpenWhisk's routed containers in front of a pool's hosts (warmwhisk's routed mode)."""

    # docker run → the routed container answers (no torch, no model) (s).
    start_s: float
    # Memory of one routed container (MB).
    memory_mb: float
    # OpenWhisk's idle-container timeout (s): 10 minutes.
    idle_timeout_s: float = 600.0


@dataclass(frozen=True)
class PoolSpec:
    """One pool: its activations (arrivals ascending, run times alone on a host), hosts and config."""

    name: str
    arrivals: Sequence[float]
    durations: Sequence[float]
    host: HostModel
    config: Any
    # An activation still waiting this long after its arrival is dropped (s).
    timeout_s: float = math.inf
    routed: RoutedTier | None = None


@dataclass(frozen=True)
class Cluster:
    """Invoker nodes and the memory each gives hosts (MB; OpenWhisk's userMemory)."""

    nodes: int = 1
    node_memory_mb: float = math.inf
    # CPU cores of each node, shared by its busy hosts.
    node_cores: float = math.inf

    def __post_init__(self) -> None:
        if self.nodes < 1 or not self.node_memory_mb > 0 or not self.node_cores > 0:
            raise ValueError("need nodes >= 1, node_memory_mb > 0 and node_cores > 0")


@dataclass(frozen=True)
class EngineSettings:
    """The control loop's measurement and the run's bounds."""

    # Window of the observed rates and run-time percentiles (s), the controller's `window_s`.
    window_s: float = 10.0
    # How long after the workload's horizon the run may go on to finish queued work (s).
    max_overrun_s: float = 3600.0
    # The policy is called on ticks only (warmwhisk's controller); see the module docstring.
    ticks_only: bool = False
    # Most host starts per tick over all pools (the controller's bound); None: unbounded.
    max_starts_per_tick: int | None = None
    # Make room for a host by evicting idle hosts of other pools (OpenWhisk's container pool).
    evict_idle: bool = False
    # Route to the least busy host with a free slot rather than the fullest.
    spread: bool = False
    # Skip the ticks of quiet pools (exact; see the module docstring). Off only to check that.
    skip_quiet: bool = True
    # Interval of the timeline samples (s).
    sample_every_s: float = 60.0


@dataclass
class HostRecord:
    pool: int
    node: int
    started_at: float
    warm_at: float = math.nan
    removed_at: float = math.nan
    evicted: bool = False


@dataclass
class SimOutput:
    """Everything a run produced, per activation (arrays in arrival order) and per host."""

    pools: list[str]
    horizon_s: float
    end_s: float
    pool_of: np.ndarray
    arrival: np.ndarray
    duration: np.ndarray
    start: np.ndarray  # nan: never started
    end: np.ndarray  # nan: not completed (dropped)
    latency_extra: np.ndarray  # per activation: routed forwarding, batching delay, routed cold start
    routed_cold: np.ndarray
    hosts: list[HostRecord]
    # Memory over the run, integrated exactly up to end_s (MB·s), and its peak (MB).
    memory_mb_s: float
    peak_memory_mb: float
    container_s: float
    routed_starts: int
    evictions: int
    refused_starts: int
    ticks: int
    ticks_skipped: int
    # (t, memory MB, hosts alive, routed containers alive) every sample_every_s, and the hosts
    # alive per pool at the same instants.
    timeline: list[tuple[float, float, int, int]] = field(default_factory=list)
    pool_hosts: list[list[int]] = field(default_factory=list)

    @property
    def completed(self) -> np.ndarray:
        return ~np.isnan(self.end)

    @property
    def latency(self) -> np.ndarray:
        """End-to-end latency of each activation (s): arrival to answer; nan if dropped."""
        return self.end - self.arrival + self.latency_extra

    def cold(self) -> np.ndarray:
        """Activations that waited while a host of their pool was starting (a cold start as the
        user sees it), or for a routed container."""
        out = self.routed_cold.copy()
        waited = self.start > self.arrival + 1e-9
        for p in range(len(self.pools)):
            intervals = [
                (h.started_at, h.warm_at if not math.isnan(h.warm_at) else h.removed_at)
                for h in self.hosts
                if h.pool == p
            ]
            if not intervals:
                continue
            intervals.sort()
            starts = np.array([s for s, _ in intervals])
            ups = np.maximum.accumulate(np.array([math.inf if math.isnan(u) else u for _, u in intervals]))
            jobs = np.flatnonzero((self.pool_of == p) & waited)
            idx = np.searchsorted(starts, self.start[jobs], side="left") - 1
            ok = idx >= 0
            hit = np.zeros(jobs.size, dtype=bool)
            hit[ok] = ups[idx[ok]] > self.arrival[jobs[ok]]
            out[jobs[hit]] = True
        return out


def memory_horizon_s(config: Any, window_s: float) -> float:
    """How far back a policy's state looks (s): the longest of its sample windows (any config field
    named ``*window_s`` or ``look_back_period_s``) and the controller's window, plus two ticks."""
    horizon = window_s
    for f in fields(config):
        if f.name.endswith("window_s") or f.name == "look_back_period_s":
            horizon = max(horizon, float(getattr(config, f.name)))
    return horizon + 2 * float(config.tick_s)


# --- the simulation ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Host:
    idx: int
    pool: _Pool
    node: int
    host_id: str
    state: str
    limit: int
    started_at: float
    last_active_at: float
    work: float = 0.0
    work_at: float = 0.0
    # Progress of each activation per second now: its curve's share times the node's CPU share.
    rate: float = 0.0
    # (work at which the activation finishes, activation index), a heap.
    jobs: list[tuple[float, int]] = field(default_factory=list)
    version: int = 0
    removed: bool = False


@dataclass(eq=False)
class _Pool:
    idx: int
    spec: PoolSpec
    state: Any
    window: PoolWindow
    speeds: list[float]
    home: int
    step: int
    jobs: np.ndarray  # this pool's activation indices, in arrival order
    horizon_s: float
    queue: deque[int] = field(default_factory=deque)
    free: list[set[int]] = field(default_factory=list)  # free[c]: warm hosts with c in flight, a slot free
    alive: dict[int, _Host] = field(default_factory=dict)
    by_id: dict[str, _Host] = field(default_factory=dict)
    acquired: int = 0
    done: int = 0
    inflight: int = 0
    starting: int = 0
    draining: int = 0
    new_runs: list[float] = field(default_factory=list)
    cold_start_s: float | None = None
    next_job: int = 0  # position in `jobs` of the next arrival
    active: bool = True
    quiet_since: int | None = None
    slept_at: int = 0  # last tick run before sleeping
    wake_version: int = 0
    routed_until: float = -math.inf
    routed_expiry_pending: bool = False
    routed_intervals: list[list[float]] = field(default_factory=list)


class _Engine:
    def __init__(
        self,
        pools: Sequence[PoolSpec],
        policy: Policy[Any, Any],
        cluster: Cluster,
        settings: EngineSettings,
        horizon_s: float,
        log: list[tuple[Observation, list[Decision]]] | None,
    ) -> None:
        self.policy, self.cluster, self.settings, self.horizon = policy, cluster, settings, horizon_s
        self.log = log
        ticks = {float(p.config.tick_s) for p in pools}
        if len(ticks) != 1:
            raise ValueError(f"every pool of a run needs the same tick_s, got {sorted(ticks)}")
        self.tick = ticks.pop()
        # Every activation, merged in arrival order (ties: pool order).
        times = [np.asarray(p.arrivals, dtype=float) for p in pools]
        runs = [np.asarray(p.durations, dtype=float) for p in pools]
        pool_of = np.concatenate([np.full(t.size, i, dtype=np.int64) for i, t in enumerate(times)])
        arrival = np.concatenate(times) if times else np.empty(0)
        order = np.lexsort((pool_of, arrival))
        self.pool_of_arr, self.arrival_arr = pool_of[order], arrival[order]
        self.duration_arr = np.concatenate(runs)[order] if runs else np.empty(0)
        for p, t, d in zip(pools, times, runs, strict=True):
            if t.size != d.size or np.any(np.diff(t) < 0) or np.any(d <= 0):
                raise ValueError(f"pool {p.name}: needs sorted arrivals and as many run times > 0")
        self.arrival = self.arrival_arr.tolist()
        self.duration = self.duration_arr.tolist()
        self.pool_of = self.pool_of_arr.tolist()
        n = len(self.arrival)
        self.start = [math.nan] * n
        self.end = [math.nan] * n
        self.extra = [0.0] * n
        self.routed_cold = [False] * n
        self.pools: list[_Pool] = []
        nodes = cluster.nodes
        for i, spec in enumerate(pools):
            digest = zlib.crc32(spec.name.encode())
            steps = [s for s in range(1, nodes + 1) if math.gcd(s, nodes) == 1]
            pool = _Pool(
                idx=i,
                spec=spec,
                state=policy.initial_state(),
                window=PoolWindow(settings.window_s),
                speeds=[spec.host.speed(c) for c in range(_SPEED_TABLE)],
                home=digest % nodes,
                step=steps[(digest >> 8) % len(steps)],
                jobs=np.flatnonzero(self.pool_of_arr == i),
                horizon_s=memory_horizon_s(spec.config, settings.window_s),
            )
            self.pools.append(pool)
            if spec.host.latency_extra_s:
                for j in pool.jobs.tolist():
                    self.extra[j] = spec.host.latency_extra_s
        self.events: list[tuple[float, int, int, Any, int]] = []
        self.seq = 0
        self.hosts: list[_Host] = []
        self.records: list[HostRecord] = []
        self.node_used = [0.0] * nodes
        # Per node: hosts alive per shared segment (HostModel.shared), and each segment's MB.
        self.node_models: list[dict[tuple[str, str], int]] = [{} for _ in range(nodes)]
        self.segment_mb = {key: mb for p in pools for key, mb in p.host.shared}
        self.node_hosts: list[dict[int, _Host]] = [{} for _ in range(nodes)]
        self.node_busy: list[dict[int, _Host]] = [{} for _ in range(nodes)]
        self.node_share = [1.0] * nodes
        self.cpu_bound = math.isfinite(cluster.node_cores)
        self.done_total = 0
        self.dropped_total = 0
        self.mem = 0.0
        self.peak = 0.0
        self.routed_alive = 0
        self.routed_starts = 0
        self.evictions = 0
        self.refused = 0
        self.ticks_run = 0
        self.ticks_skipped = 0
        self.starts_left = math.inf
        self.timeline: list[tuple[float, float, int, int]] = []
        self.pool_hosts: list[list[int]] = []

    # --- events --------------------------------------------------------------------------------
    def push(self, t: float, kind: int, a: Any = None, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, a, b))

    def add_memory(self, mb: float) -> None:
        self.mem += mb
        if self.mem > self.peak:
            self.peak = self.mem

    # --- slot index ----------------------------------------------------------------------------
    @staticmethod
    def unindex(p: _Pool, h: _Host) -> None:
        c = len(h.jobs)
        if c < len(p.free):
            p.free[c].discard(h.idx)

    @staticmethod
    def index(p: _Pool, h: _Host) -> None:
        c = len(h.jobs)
        if h.state == "warm" and not h.removed and c < h.limit:
            while len(p.free) <= c:
                p.free.append(set())
            p.free[c].add(h.idx)

    def pick(self, p: _Pool) -> _Host | None:
        free = p.free
        order = range(len(free)) if self.settings.spread else range(len(free) - 1, -1, -1)
        for c in order:
            if free[c]:
                return self.hosts[min(free[c])]
        return None

    # --- processor sharing -------------------------------------------------------------------
    @staticmethod
    def speed(p: _Pool, concurrency: int) -> float:
        return p.speeds[concurrency] if concurrency < _SPEED_TABLE else p.spec.host.speed(concurrency)

    def advance(self, h: _Host, now: float) -> None:
        if h.jobs:
            h.work += (now - h.work_at) * h.rate
        h.work_at = now

    def schedule(self, h: _Host, now: float) -> None:
        h.version += 1
        if h.jobs:
            h.rate = self.speed(h.pool, len(h.jobs)) * self.node_share[h.node]
            dt = (h.jobs[0][0] - h.work) / h.rate
            self.push(now + max(0.0, dt), _DONE, h, h.version)
        else:
            h.rate = 0.0

    def busy_changed(self, h: _Host, now: float) -> None:
        """A host started or stopped having work: its node's CPU share may change, and with it the
        speed of every busy host there."""
        if not self.cpu_bound:
            return
        node, busy = h.node, self.node_busy[h.node]
        if h.jobs:
            busy[h.idx] = h
        else:
            busy.pop(h.idx, None)
        demand = sum(g.pool.spec.host.busy_cores for g in busy.values())
        share = min(1.0, self.cluster.node_cores / demand) if busy else 1.0
        if share == self.node_share[node]:
            return
        for g in busy.values():
            self.advance(g, now)
        self.node_share[node] = share
        for g in busy.values():
            self.schedule(g, now)

    def dispatch(self, p: _Pool, now: float) -> None:
        if not p.queue:
            return
        touched: dict[int, _Host] = {}
        activation_mb = p.spec.host.activation_mb
        while p.queue:
            h = self.pick(p)
            if h is None:
                break
            job = p.queue.popleft()
            self.unindex(p, h)
            self.advance(h, now)
            heapq.heappush(h.jobs, (h.work + self.duration[job], job))
            if len(h.jobs) == 1:
                self.busy_changed(h, now)
            p.acquired += 1
            p.inflight += 1
            h.last_active_at = now
            self.start[job] = now
            if activation_mb:
                self.add_memory(activation_mb)
            self.index(p, h)
            touched[h.idx] = h
        for h in touched.values():
            self.schedule(h, now)

    def complete(self, h: _Host, now: float) -> None:
        p = h.pool
        self.unindex(p, h)
        self.advance(h, now)
        eps = 1e-9 * max(1.0, h.work)
        finished = 0
        while h.jobs and h.jobs[0][0] <= h.work + eps:
            _, job = heapq.heappop(h.jobs)
            self.end[job] = now
            p.new_runs.append(now - self.start[job])
            finished += 1
        p.done += finished
        p.inflight -= finished
        if not h.jobs:
            self.busy_changed(h, now)
        self.done_total += finished
        if p.spec.host.activation_mb:
            self.mem -= finished * p.spec.host.activation_mb
        h.last_active_at = now
        if h.state == "draining" and not h.jobs:
            self.remove(h, now)
        else:
            self.index(p, h)
            self.schedule(h, now)

    # --- placement and hosts -------------------------------------------------------------------
    def node_order(self, p: _Pool) -> list[int]:
        n = self.cluster.nodes
        return [(p.home + i * p.step) % n for i in range(n)]

    def need_mb(self, node: int, host: HostModel, held: dict[tuple[str, str], int] | None = None) -> float:
        """Memory a new host takes on ``node``: its own, and the shared segments not there yet."""
        held = self.node_models[node] if held is None else held
        return host.memory_mb + sum(mb for key, mb in host.shared if not held.get(key))

    def place(self, p: _Pool, now: float) -> int | None:
        """The node for a new host of `p`, evicting idle hosts of other pools if needed."""
        budget = self.cluster.node_memory_mb
        order = self.node_order(p)
        host = p.spec.host
        for node in order:
            if self.node_used[node] + self.need_mb(node, host) <= budget + 1e-9:
                return node
        if not self.settings.evict_idle:
            return None
        for node in order:
            victims = self.victims(node, p, host)
            if victims is not None:
                for h in victims:
                    self.evict(h, now)
                return node
        return None

    def victims(self, node: int, p: _Pool, host: HostModel) -> list[_Host] | None:
        """Idle warm hosts of other pools on `node`, least recently active first, whose removal
        makes room for a host of `p`; None if even all of them would not."""
        idle = sorted(
            (
                h
                for h in self.node_hosts[node].values()
                if h.pool is not p and h.state == "warm" and not h.jobs
            ),
            key=lambda h: (h.last_active_at, h.idx),
        )
        used = self.node_used[node]
        held = dict(self.node_models[node])
        chosen: list[_Host] = []
        for h in idle:
            if used + self.need_mb(node, host, held) <= self.cluster.node_memory_mb + 1e-9:
                break
            chosen.append(h)
            used -= h.pool.spec.host.memory_mb
            for key, mb in h.pool.spec.host.shared:
                held[key] -= 1
                if not held[key]:
                    used -= mb
        if used + self.need_mb(node, host, held) > self.cluster.node_memory_mb + 1e-9:
            return None
        return chosen

    def evict(self, h: _Host, now: float) -> None:
        p = h.pool
        if not p.active:
            self.wake(p, now)
        self.evictions += 1
        self.records[h.idx].evicted = True
        self.remove(h, now)

    def add_host(self, p: _Pool, limit: int, now: float) -> bool:
        if self.starts_left <= 0:
            return False
        node = self.place(p, now)
        if node is None:
            self.refused += 1
            return False
        self.starts_left -= 1
        host = p.spec.host
        idx = len(self.hosts)
        h = _Host(idx, p, node, f"h{idx}", "starting", max(1, limit), now, now, work_at=now)
        self.hosts.append(h)
        self.records.append(HostRecord(p.idx, node, now))
        p.alive[idx] = h
        p.by_id[h.host_id] = h
        p.starting += 1
        need = self.need_mb(node, host)
        self.node_used[node] += need
        self.add_memory(need)
        for key, _ in host.shared:
            self.node_models[node][key] = self.node_models[node].get(key, 0) + 1
        self.node_hosts[node][idx] = h
        self.push(now + host.cold_start_s, _READY, h)
        return True

    def remove(self, h: _Host, now: float) -> None:
        p, host = h.pool, h.pool.spec.host
        self.unindex(p, h)
        if h.state == "starting":
            p.starting -= 1
        elif h.state == "draining":
            p.draining -= 1
        h.removed = True
        self.records[h.idx].removed_at = now
        p.alive.pop(h.idx, None)
        freed = host.memory_mb
        held = self.node_models[h.node]
        for key, mb in host.shared:
            held[key] -= 1
            if not held[key]:
                del held[key]
                freed += mb
        self.node_used[h.node] -= freed
        self.mem -= freed
        del self.node_hosts[h.node][h.idx]

    def ready(self, h: _Host, now: float) -> None:
        if h.removed or h.state != "starting":
            return
        p = h.pool
        h.state = "warm"
        p.starting -= 1
        h.last_active_at = now
        h.work_at = now
        self.records[h.idx].warm_at = now
        # The controller measures a host's cold start when it turns warm (constant here).
        p.cold_start_s = now - h.started_at
        self.index(p, h)
        self.dispatch(p, now)

    def apply(self, p: _Pool, decisions: Iterable[Decision], now: float) -> None:
        for d in decisions:
            if d.kind == "add_hosts":
                for _ in range(d.count):
                    if not self.add_host(p, d.limit or 1, now):
                        break
            elif d.kind == "remove_hosts":
                for host_id in d.host_ids:
                    h = p.by_id.get(host_id)
                    if h is None or h.removed or h.state == "draining":
                        continue
                    if h.jobs:
                        self.unindex(p, h)
                        h.state = "draining"
                        p.draining += 1
                    else:
                        self.remove(h, now)
            elif d.kind == "set_limit" and d.limit is not None:
                targets = [p.by_id[i] for i in d.host_ids if i in p.by_id] or list(p.alive.values())
                for h in targets:
                    if not h.removed:
                        self.unindex(p, h)
                        h.limit = max(1, d.limit)
                        self.index(p, h)
        self.dispatch(p, now)

    # --- the control loop ----------------------------------------------------------------------
    @staticmethod
    def views(p: _Pool) -> list[HostView]:
        return [
            HostView(h.host_id, h.state, len(h.jobs), h.limit, h.started_at, h.last_active_at)  # type: ignore[arg-type]
            for h in p.alive.values()
        ]

    def observe(self, p: _Pool, now: float) -> Observation:
        """The controller's reading of the pool, then its measurement (the same code)."""
        p.window.record(now, p.acquired, p.done, len(p.queue), p.new_runs)
        p.new_runs = []
        return measure(p.spec.name, now, self.views(p), len(p.queue), p.window, p.cold_start_s)

    def decide(self, p: _Pool, now: float) -> tuple[Observation, list[Decision]]:
        observation = self.observe(p, now)
        decisions, p.state = self.policy.decide(observation, p.state, p.spec.config)
        if self.log is not None and any(d.kind != "hold" for d in decisions):
            self.log.append((observation, decisions))
        self.apply(p, decisions, now)
        return observation, decisions

    def drop_expired(self, p: _Pool, now: float) -> None:
        timeout = p.spec.timeout_s
        while p.queue and self.arrival[p.queue[0]] + timeout <= now:
            p.queue.popleft()
            self.dropped_total += 1

    def tick_pool(self, p: _Pool, k: int, now: float) -> None:
        self.drop_expired(p, now)
        observation, decisions = self.decide(p, now)
        self.ticks_run += 1
        if not self.settings.skip_quiet:
            return
        quiet = (
            not p.queue
            and p.inflight == 0
            and p.starting == 0
            and p.draining == 0
            and observation.arrivals_per_s == 0
            and observation.completions_per_s == 0
            and observation.latency_p50_s is None
            and all(d.kind == "hold" for d in decisions)
        )
        if not quiet:
            p.quiet_since = None
            return
        if p.quiet_since is None:
            p.quiet_since = k
        if (k - p.quiet_since) * self.tick >= p.horizon_s:
            self.sleep(p, k)

    def holds_at(self, p: _Pool, k: int, views: list[HostView]) -> bool:
        """Whether the policy, asked at tick k about the pool as it is now, decides nothing."""
        observation = measure(p.spec.name, k * self.tick, views, 0, p.window, p.cold_start_s)
        decisions, _ = self.policy.decide(observation, p.state, p.spec.config)
        return all(d.kind == "hold" for d in decisions)

    def sleep(self, p: _Pool, k: int) -> None:
        """Stop ticking a quiet pool until its next arrival or the first tick at which its policy
        would decide something (found by exponential then binary search)."""
        nxt = p.jobs[p.next_job] if p.next_job < p.jobs.size else None
        limit_t = self.arrival[nxt] if nxt is not None else self.horizon + self.settings.max_overrun_s
        k_lim = math.ceil(limit_t / self.tick) - 1
        replay = math.ceil(p.horizon_s / self.tick) + 1
        if k_lim - k <= replay:
            return
        views = self.views(p)
        wake_k = None
        if not self.holds_at(p, k_lim, views):
            lo, step = k, 1  # lo: a tick known to hold
            while True:
                probe = min(k + step, k_lim)
                if not self.holds_at(p, probe, views):
                    hi = probe
                    break
                lo, step = probe, step * 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self.holds_at(p, mid, views):
                    lo = mid
                else:
                    hi = mid
            wake_k = hi
            if wake_k - k <= replay:
                return
        p.active = False
        p.slept_at = k
        p.wake_version += 1
        if wake_k is not None:
            self.push((wake_k - 0.5) * self.tick, _WAKE, p, p.wake_version)

    def wake(self, p: _Pool, now: float) -> None:
        """Replay the skipped ticks of the last horizon before `now`, then tick the pool again."""
        first = max(p.slept_at + 1, math.floor((now - p.horizon_s) / self.tick))
        last = math.ceil(now / self.tick) - 1  # the last tick strictly before now
        if last * self.tick >= now:
            last -= 1
        for k in range(first, last + 1):
            self.drop_expired(p, k * self.tick)
            self.decide(p, k * self.tick)
            self.ticks_run += 1
        p.active = True
        p.quiet_since = None
        p.wake_version += 1

    # --- routed tier ---------------------------------------------------------------------------
    def routed_arrival(self, p: _Pool, job: int, now: float) -> None:
        tier = p.spec.routed
        assert tier is not None
        if now > p.routed_until:
            self.routed_cold[job] = True
            self.extra[job] += tier.start_s
            self.routed_starts += 1
            self.routed_alive += 1
            self.add_memory(tier.memory_mb)
            p.routed_intervals.append([now, now])
        p.routed_until = now + tier.idle_timeout_s
        p.routed_intervals[-1][1] = p.routed_until
        if not p.routed_expiry_pending:
            p.routed_expiry_pending = True
            self.push(p.routed_until, _ROUTED, p)

    def routed_expiry(self, p: _Pool, now: float) -> None:
        if p.routed_until > now:
            self.push(p.routed_until, _ROUTED, p)
            return
        p.routed_expiry_pending = False
        self.routed_alive -= 1
        self.mem -= p.spec.routed.memory_mb  # type: ignore[union-attr]

    # --- the run -------------------------------------------------------------------------------
    def arrive(self, job: int, now: float) -> None:
        p = self.pools[self.pool_of[job]]
        if not p.active:
            self.wake(p, now)
        p.next_job += 1
        if p.spec.routed is not None:
            self.routed_arrival(p, job, now)
        p.queue.append(job)
        self.dispatch(p, now)
        if p.queue and not self.settings.ticks_only and (self.policy.event_driven or not p.alive):
            self.decide(p, now)

    def sample(self, now: float) -> None:
        self.timeline.append((now, self.mem, sum(len(p.alive) for p in self.pools), self.routed_alive))
        self.pool_hosts.append([len(p.alive) for p in self.pools])

    def on_tick(self, k: int) -> bool:
        """One tick of the control loop; False once the run is over."""
        now = k * self.tick
        self.starts_left = (
            self.settings.max_starts_per_tick if self.settings.max_starts_per_tick is not None else math.inf
        )
        for p in self.pools:
            if p.active:
                self.tick_pool(p, k, now)
            else:
                self.ticks_skipped += 1
        self.starts_left = math.inf
        every = self.settings.sample_every_s
        if math.floor(now / every) != math.floor((now - self.tick) / every) or k == 0:
            self.sample(now)
        n = len(self.arrival)
        finished = (
            self.next_arrival >= n and self.done_total + self.dropped_total >= n and now >= self.horizon
        )
        return not finished and now + self.tick <= self.horizon + self.settings.max_overrun_s

    def run(self) -> SimOutput:
        n = len(self.arrival)
        self.next_arrival = 0
        self.push(0.0, _TICK, None, 0)
        events = self.events
        while events or self.next_arrival < n:
            t_arr = self.arrival[self.next_arrival] if self.next_arrival < n else math.inf
            if t_arr <= (events[0][0] if events else math.inf):
                job = self.next_arrival
                self.next_arrival += 1
                self.arrive(job, t_arr)
                continue
            now, _, kind, a, b = heapq.heappop(events)
            if kind == _DONE:
                if b == a.version and not a.removed:
                    self.complete(a, now)
                    self.dispatch(a.pool, now)
            elif kind == _READY:
                self.ready(a, now)
            elif kind == _TICK:
                if not self.on_tick(b):
                    break
                self.push((b + 1) * self.tick, _TICK, None, b + 1)
            elif kind == _WAKE:
                if b == a.wake_version and not a.active:
                    self.wake(a, now)
            else:
                self.routed_expiry(a, now)
        return self.output()

    def output(self) -> SimOutput:
        ends = [e for e in self.end if not math.isnan(e)]
        end_s = max([self.horizon, *ends])
        memory_mb_s, container_s = self.integrals(end_s)
        routed_s = 0.0
        routed_mb_s = 0.0
        for p in self.pools:
            for a, b in p.routed_intervals:
                span = max(0.0, min(b, end_s) - a)
                routed_s += span
                routed_mb_s += span * p.spec.routed.memory_mb  # type: ignore[union-attr]
        return SimOutput(
            pools=[p.spec.name for p in self.pools],
            horizon_s=self.horizon,
            end_s=end_s,
            pool_of=self.pool_of_arr,
            arrival=self.arrival_arr,
            duration=self.duration_arr,
            start=np.array(self.start, dtype=float),
            end=np.array(self.end, dtype=float),
            latency_extra=np.array(self.extra, dtype=float),
            routed_cold=np.array(self.routed_cold, dtype=bool),
            hosts=self.records,
            memory_mb_s=memory_mb_s + routed_mb_s,
            peak_memory_mb=self.peak,
            container_s=container_s + routed_s,
            routed_starts=self.routed_starts,
            evictions=self.evictions,
            refused_starts=self.refused,
            ticks=self.ticks_run,
            ticks_skipped=self.ticks_skipped,
            timeline=self.timeline,
            pool_hosts=self.pool_hosts,
        )

    def integrals(self, end_s: float) -> tuple[float, float]:
        """(host memory MB·s, host seconds) up to end_s: each host's own memory over its life, each
        shared segment (weights, image files) over the union of the lives of its hosts on a node,
        and each activation's memory over its run."""
        host_mb_s = host_s = 0.0
        shared: dict[tuple[int, tuple[str, str]], list[tuple[float, float]]] = {}
        for rec, h in zip(self.records, self.hosts, strict=True):
            a = rec.started_at
            b = min(rec.removed_at, end_s) if not math.isnan(rec.removed_at) else end_s
            span = max(0.0, b - a)
            host_s += span
            model = h.pool.spec.host
            host_mb_s += span * model.memory_mb
            for key, _ in model.shared:
                shared.setdefault((h.node, key), []).append((a, b))
        for (_, key), spans in shared.items():
            host_mb_s += self.segment_mb[key] * _union_length(spans)
        for p in self.pools:
            mb = p.spec.host.activation_mb
            if mb:
                jobs = p.jobs
                starts = np.array([self.start[j] for j in jobs.tolist()])
                finishes = np.array([self.end[j] for j in jobs.tolist()])
                ran = ~np.isnan(starts)
                stop = np.where(np.isnan(finishes[ran]), end_s, np.minimum(finishes[ran], end_s))
                host_mb_s += mb * float(np.sum(np.maximum(0.0, stop - starts[ran])))
        return host_mb_s, host_s


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(spans):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a  # type: ignore[operator]
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a  # type: ignore[operator]
    return total


def simulate(
    pools: Sequence[PoolSpec],
    policy: Policy[Any, Any],
    *,
    horizon_s: float,
    cluster: Cluster | None = None,
    settings: EngineSettings | None = None,
    log: list[tuple[Observation, list[Decision]]] | None = None,
) -> SimOutput:
    """Run ``pools`` under ``policy`` (each pool with its own ``config``) on ``cluster``."""
    engine = _Engine(pools, policy, cluster or Cluster(), settings or EngineSettings(), horizon_s, log)
    return engine.run()
