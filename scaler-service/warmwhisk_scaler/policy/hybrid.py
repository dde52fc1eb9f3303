"""The hybrid policy: concurrency first, then containers.

Per pool (one model), every tick:

1. **Cold start from zero** (fast path): no host and activations waiting → start enough hosts at
   once for the queue, skipping everything else.
2. **Concurrency limit**: when every warm host has been full for ``limit_settle_s`` and
   activations wait, raise the pool's per-host limit one step (×2). After ``limit_settle_s``
   judge the step: keep it when per-host throughput rose by at least ``min_throughput_gain``,
   else go back (and remember the ceiling if the hosts were full, i.e. the step was measured).
   When the p99 run time exceeds the objective because of the limit (the median run time grew
   compared with the step below), step down and remember that ceiling too; with nothing
   measured below, step down only as a guess that costs no capacity, undone if runs are no
   faster there (a heavy tail the workload has at any limit is not the limit's doing).
   Ceilings are forgotten after ``reprobe_after_s`` (model or machine may have changed).
3. **Queue or add hosts**: when every warm host is at its limit and activations wait, compare
   the expected wait at the warm hosts (queue / their drain rate; unbounded when arrivals use
   more than ``max_utilization`` of it) with the cold start of a new host. Queue when waiting is
   cheaper; otherwise start, in one decision, the hosts that serve the arrival rate and drain
   the queue within one cold start (counting hosts already starting).
4. **Keep-alive**: stop hosts idle for ``keep_alive_s``, least recently active first, never below
   ``min_hosts`` (0 = scale to zero) and never while activations wait. The pool's last host, whose
   removal turns the next activation into a cold start (container + model load), waits the longer
   ``last_host_keep_alive_s``; surplus hosts, whose removal costs at most a later scale-up, go
   after the pool's keep-alive: ``keep_alive_s`` at first, doubled when hosts had to be added
   again within one keep-alive of a removal (bursts further apart than it), halved when a
   removal held for one keep-alive, between ``keep_alive_s`` and ``last_host_keep_alive_s``.

Pure: ``decide_hybrid(observation, state, config)`` reads no clock and does no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from .common import ceil_int, headroom
from .types import Decision, Observation


@dataclass(frozen=True)
class HybridConfig:
    """Every knob of the hybrid policy, with its default and unit."""

    # Interval at which the control loop calls the policy (s).
    tick_s: float = 1.0
    # Objective for the p99 run time of an activation on a host (s). The limit is not raised, and
    # steps down, while the p99 exceeds it *because of the limit*: activations run slower (p50)
    # than at the step below. A tail the workload has at any limit does not count. Queue wait is
    # handled by step 3.
    latency_objective_s: float = 1.0
    # Hosts kept even when idle (hosts). 0 lets an idle pool scale to zero.
    min_hosts: int = 0
    # Most hosts of the pool, draining ones included (hosts).
    max_hosts: int = 100
    # Concurrency limit of a pool's hosts before any measurement (activations per host).
    initial_limit: int = 2
    # Highest concurrency limit the policy sets (activations per host).
    max_limit: int = 32
    # Factor of one limit step: up is ×factor (at least +1), down is ÷factor (at least −1).
    limit_step_factor: float = 2.0
    # Share of the warm hosts' drain rate that arrivals may use before the queue counts as growing
    # (fraction). Hosts kept at 100 % keep a queue (waits grow like u / (1 − u)).
    max_utilization: float = 0.9
    # Smallest relative gain in per-host throughput that makes a raised limit worth keeping
    # (fraction: 0.05 = +5 %).
    min_throughput_gain: float = 0.05
    # Slow-down of the median run time, relative to the limit one step below, that is still
    # "not caused by the limit" (fraction: 0.25 = 25 %; absorbs the noise of a window's median).
    run_time_tolerance: float = 0.25
    # Time after a limit change before its effect is judged or the limit changes again (s). At
    # least the window over which the control loop measures completions and latency.
    limit_settle_s: float = 10.0
    # How long a learned limit ceiling holds before raising may be tried again (s).
    reprobe_after_s: float = 600.0
    # A warm host idle (nothing in flight) this long is stopped while the pool keeps another live
    # host (s): a surplus host, whose removal costs at most a scale-up later. The pool's own value
    # starts here and adapts (``adapt_keep_alive``).
    keep_alive_s: float = 120.0
    # Adapt the surplus keep-alive per pool: when hosts had to be added again within
    # last_host_keep_alive_s of a keep-alive removal (load in bursts further apart than the
    # keep-alive: each burst paid model loads the removed host would have saved), lengthen it to
    # what would have kept that host (at least ×2, at most last_host_keep_alive_s); when no add
    # followed for last_host_keep_alive_s, halve it (at least keep_alive_s). False: every surplus
    # host goes after keep_alive_s.
    adapt_keep_alive: bool = True
    # The pool's last host is stopped only after idle this long (s), at least keep_alive_s:
    # removing it makes the next activation a cold start (container start + model load). Default:
    # OpenWhisk's idle-container timeout (10 min, `whisk.container-proxy.timeouts.idle-container`),
    # so an idle pool waits no sooner than stock OpenWhisk would; surplus hosts still go after
    # keep_alive_s.
    last_host_keep_alive_s: float = 600.0
    # Run time assumed while none has been measured (s).
    assumed_service_time_s: float = 1.0
    # Cold start assumed while none has been measured (s).
    assumed_cold_start_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_hosts <= self.max_hosts or self.max_hosts < 1:
            raise ValueError("need 0 <= min_hosts <= max_hosts and max_hosts >= 1")
        if not 1 <= self.initial_limit <= self.max_limit:
            raise ValueError("need 1 <= initial_limit <= max_limit")
        if not 0 < self.max_utilization <= 1:
            raise ValueError("max_utilization must be in (0, 1]")
        if self.limit_step_factor <= 1:
            raise ValueError("limit_step_factor must be > 1")
        positive = (
            self.tick_s,
            self.latency_objective_s,
            self.assumed_service_time_s,
            self.assumed_cold_start_s,
        )
        if min(positive) <= 0:
            raise ValueError("tick_s, latency_objective_s and the assumed times must be > 0")
        rest = (
            self.min_throughput_gain,
            self.run_time_tolerance,
            self.limit_settle_s,
            self.reprobe_after_s,
            self.keep_alive_s,
            self.last_host_keep_alive_s,
        )
        if min(rest) < 0:
            raise ValueError("gain, tolerance, settle, reprobe and keep-alives must be >= 0")


@dataclass(frozen=True)
class HybridState:
    """What the hybrid policy remembers between ticks, per pool."""

    # The pool's per-host concurrency limit; None until the first tick (then initial_limit).
    limit: int | None = None
    # When the limit last changed (s); limit decisions wait limit_settle_s after it.
    limit_changed_at: float = -math.inf
    # While a raise is being judged: the limit before it, and the per-warm-host throughput
    # measured at that limit (activations/s/host).
    probe_from: int | None = None
    probe_baseline_per_host: float = 0.0
    # Highest limit worth using, learned from a raise that did not pay or a latency violation;
    # and when it was learned (s).
    ceiling: int | None = None
    ceiling_at: float = -math.inf
    # Median run time (s) measured at the limit one step below the current one (recorded when
    # raising from it); None when not measured.
    p50_below_s: float | None = None
    # After a latency step-down with nothing known below: the limit stepped down from and the
    # median run time measured there, to undo the step if it does not speed activations up.
    stepped_down_from: int | None = None
    p50_above_s: float | None = None
    # Start of the current run of ticks on which every warm host was full at ``limit`` (s); None
    # when they are not. A raise needs a full window at the current limit, so that the throughput
    # it is judged against was measured with the hosts full.
    full_since: float | None = None
    # The pool's surplus keep-alive (s); None: config.keep_alive_s. And when the keep-alive last
    # stopped a host, while that removal is judged (an add within one keep-alive: premature).
    keep_alive_s: float | None = None
    removed_at: float | None = None


# --- step functions ----------------------------------------------------------------------------


def _service_time_s(obs: Observation, config: HybridConfig) -> float:
    """Measured mean run time, or the assumed one before any activation completed."""
    return (
        obs.service_time_s if obs.service_time_s and obs.service_time_s > 0 else config.assumed_service_time_s
    )


def _cold_start_s(obs: Observation, config: HybridConfig) -> float:
    """Measured cold start of a host, or the assumed one before any host was started."""
    return obs.cold_start_s if obs.cold_start_s and obs.cold_start_s > 0 else config.assumed_cold_start_s


def per_host_rate(limit: int, service_time_s: float) -> float:
    """Little's law: a host with all ``limit`` slots busy completes limit / run time per second."""
    return limit / service_time_s


def expected_wait_s(queued: int, arrivals_per_s: float, drain_per_s: float, max_utilization: float) -> float:
    """Wait of the last activation in line at the warm hosts: the queue over their drain rate;
    unbounded when arrivals use more than max_utilization of that rate (the queue keeps growing,
    or lingers as hosts run flat out)."""
    if drain_per_s <= 0 or arrivals_per_s >= max_utilization * drain_per_s:
        return math.inf
    return queued / drain_per_s


def hosts_for_demand(queued: int, arrivals_per_s: float, rate_per_host: float, horizon_s: float) -> int:
    """Hosts that keep up with the arrival rate and, on top, drain the present queue within one
    horizon (a cold start): waiting longer than that is what a new host would have avoided."""
    return ceil_int((queued / horizon_s + arrivals_per_s) / rate_per_host)


def fill_bound(queued: int, arrivals_per_s: float, limit: int, horizon_s: float, covered: float = 0.0) -> int:
    """Most new hosts worth starting: slots for the queue plus the arrivals of one cold start,
    less what is already ``covered`` (slots of starting hosts, what warm hosts drain meanwhile);
    a host beyond that would come up with nothing to do."""
    return max(0, ceil_int((queued + arrivals_per_s * horizon_s - covered) / limit))


def saturated(obs: Observation, limit: int) -> bool:
    """Every warm host has all of its ``limit`` slots busy (and there is at least one warm host)."""
    warm = obs.warm
    return bool(warm) and all(h.in_flight >= limit for h in warm)


def raise_step(limit: int, config: HybridConfig) -> int:
    """One step up: ×factor, at least +1, at most max_limit."""
    return min(config.max_limit, max(limit + 1, math.ceil(limit * config.limit_step_factor)))


def lower_step(limit: int, config: HybridConfig) -> int:
    """One step down: ÷factor, at least −1, at least 1."""
    return max(1, min(limit - 1, math.floor(limit / config.limit_step_factor)))


def track_fullness(obs: Observation, state: HybridState, limit: int) -> HybridState:
    """Remember since when every warm host has been full at the current limit."""
    if not saturated(obs, limit):
        return replace(state, full_since=None) if state.full_since is not None else state
    return state if state.full_since is not None else replace(state, full_since=obs.now)


def forget_old_ceiling(state: HybridState, now: float, config: HybridConfig) -> HybridState:
    """Drop a learned ceiling after reprobe_after_s: load, model or machine may have changed."""
    if state.ceiling is not None and now - state.ceiling_at >= config.reprobe_after_s:
        return replace(state, ceiling=None, ceiling_at=-math.inf)
    return state


def cold_start_hosts(obs: Observation, limit: int, config: HybridConfig) -> int | None:
    """Fast path from zero: no live host and activations waiting → the hosts for the queue, at once
    (at least one, at least min_hosts). None when the fast path does not apply."""
    if obs.live or obs.queued <= 0:
        return None
    horizon = _cold_start_s(obs, config)
    rate = per_host_rate(limit, _service_time_s(obs, config))
    need = min(
        hosts_for_demand(obs.queued, obs.arrivals_per_s, rate, horizon),
        fill_bound(obs.queued, obs.arrivals_per_s, limit, horizon),
    )
    return min(max(1, need, config.min_hosts), headroom(obs, config.max_hosts))


def slowed_by_limit(obs: Observation, state: HybridState, config: HybridConfig) -> bool:
    """The p99 run time exceeds the objective and the limit is to blame: activations run slower
    (median) than at the step below, or that step was never measured. At limit 1 nothing is."""
    limit = state.limit or config.initial_limit
    p99, p50 = obs.latency_p99_s, obs.latency_p50_s
    if limit <= 1 or p99 is None or p99 <= config.latency_objective_s:
        return False
    below = state.p50_below_s
    return below is None or p50 is None or p50 > below * (1 + config.run_time_tolerance)


def step_limit(obs: Observation, state: HybridState, config: HybridConfig) -> tuple[HybridState, str | None]:
    """The concurrency step: back off on latency, judge the last raise, or raise again. Returns the
    new state and, when the limit changed, why."""
    limit = state.limit or config.initial_limit
    warm = obs.warm
    # The window's rates still mix in the previous limit until it settles: no judgement before.
    if not warm or obs.now - state.limit_changed_at < config.limit_settle_s:
        return state, None
    p50 = obs.latency_p50_s
    per_host = obs.completions_per_s / len(warm)
    # After a tentative latency step-down: if activations run no faster here than above, the
    # latency was not the limit's doing (a tail the workload has anyway): undo the step, and
    # keep this limit's median as the reference "below".
    if state.stepped_down_from is not None and state.p50_above_s is not None and p50 is not None:
        up, above = state.stepped_down_from, state.p50_above_s
        state = replace(state, stepped_down_from=None, p50_above_s=None)
        if p50 * (1 + config.run_time_tolerance) >= above:
            undone = replace(
                _limit_changed(state, up, obs.now), ceiling=None, ceiling_at=-math.inf, p50_below_s=p50
            )
            return undone, f"limit {limit} ran activations no faster (p50 {p50:.2f} s): back to {up}"
    # Latency above the objective because of the limit: step down (to where the last raise came
    # from, if it is being judged) and do not come back above it until reprobe_after_s.
    # With nothing measured below, the step is a guess (the p99 may be the workload's own tail):
    # take it only when the lower limit still holds all the pool's work, so a wrong guess costs
    # no capacity, and undo it if runs are no faster there (above).
    slow = slowed_by_limit(obs, state, config)
    if slow:
        new = state.probe_from if state.probe_from is not None else lower_step(limit, config)
        tentative = state.p50_below_s is None and state.probe_from is None
        room = len(warm) * new * config.max_utilization
        # Work in the pool: what is there now, or the arrival rate × run time (Little's law).
        work = max(obs.in_flight + obs.queued, obs.arrivals_per_s * _service_time_s(obs, config))
        if not tentative or work <= room:
            why = (
                f"p99 run time {obs.latency_p99_s:.2f} s > objective {config.latency_objective_s:.2f} s "
                f"at limit {limit}: limit {limit} → {new}"
            )
            lowered = _limit_changed(state, new, obs.now, ceiling=True)
            if tentative:
                lowered = replace(lowered, stepped_down_from=limit, p50_above_s=p50)
            return lowered, why
    # Judge the last raise by per-host throughput. More than the old limit delivered (+gain):
    # keep it. Otherwise, with every host full, it did not pay: go back and remember the
    # ceiling; with hosts not full, load fell before it could be measured: go back, unproven.
    if state.probe_from is not None:
        base = state.probe_baseline_per_host
        gain = per_host / base - 1 if base > 0 else math.inf
        if gain < config.min_throughput_gain:
            new, full = state.probe_from, saturated(obs, limit)
            why = (
                f"limit {limit} gave {gain:+.0%} throughput per host "
                f"(< {config.min_throughput_gain:+.0%}): back to {new}"
                if full
                else f"limit {limit} not measured (hosts no longer full): back to {new}"
            )
            return _limit_changed(state, new, obs.now, ceiling=full), why
        state = replace(state, probe_from=None, probe_baseline_per_host=0.0)
    # Raise when every warm host has been full for a whole window and activations wait.
    cap = min(config.max_limit, state.ceiling if state.ceiling is not None else config.max_limit)
    full_for = obs.now - state.full_since if state.full_since is not None else -math.inf
    if obs.queued > 0 and limit < cap and full_for >= config.limit_settle_s and not slow:
        new = min(cap, raise_step(limit, config))
        why = f"all {len(warm)} warm hosts full at limit {limit}, {obs.queued} queued: limit {limit} → {new}"
        raised = replace(
            _limit_changed(state, new, obs.now),
            probe_from=limit,
            probe_baseline_per_host=per_host,
            p50_below_s=p50,
        )
        return raised, why
    return state, None


def _limit_changed(state: HybridState, new: int, now: float, *, ceiling: bool = False) -> HybridState:
    state = replace(
        state,
        limit=new,
        limit_changed_at=now,
        probe_from=None,
        probe_baseline_per_host=0.0,
        full_since=None,
        p50_below_s=None,
        stepped_down_from=None,
        p50_above_s=None,
    )
    return replace(state, ceiling=new, ceiling_at=now) if ceiling else state


def queue_or_add(obs: Observation, limit: int, config: HybridConfig) -> Decision | None:
    """When every warm host is full and activations wait: queue if the expected wait at the warm
    hosts is at most a cold start, else start the hosts the demand needs, several at once."""
    if obs.queued <= 0 or any(h.in_flight < limit for h in obs.warm):
        return None  # nothing waits, or the router still has a free slot for it
    horizon = _cold_start_s(obs, config)
    rate = per_host_rate(limit, _service_time_s(obs, config))
    n_warm, n_starting = len(obs.warm), len(obs.starting)
    drain = n_warm * rate
    wait = expected_wait_s(obs.queued, obs.arrivals_per_s, drain, config.max_utilization)
    if wait <= horizon:
        return Decision.hold(
            f"{obs.queued} queued: expected wait {wait:.2f} s at {n_warm} warm hosts "
            f"<= cold start {horizon:.2f} s: queue"
        )
    situation = (
        f"{obs.queued} queued, expected wait {wait:.2f} s > cold start {horizon:.2f} s"
        if math.isfinite(wait)
        else f"{obs.queued} queued, {obs.arrivals_per_s:.1f}/s arrive, warm hosts drain {drain:.1f}/s"
    )
    need = hosts_for_demand(obs.queued, obs.arrivals_per_s, rate, horizon)
    # What hosts already there take within one cold start: the starting ones' slots, and what
    # the warm ones drain meanwhile.
    covered = sum(h.limit for h in obs.starting) + drain * horizon
    add = min(
        need - n_warm - n_starting,
        fill_bound(obs.queued, obs.arrivals_per_s, limit, horizon, covered),
        headroom(obs, config.max_hosts),
    )
    if add <= 0:
        full = headroom(obs, config.max_hosts) == 0
        return Decision.hold(
            f"{situation}; {'at max_hosts' if full else f'{n_starting} starting hosts cover it'}"
        )
    return Decision.add_hosts(
        add, limit, f"{situation}: {need} hosts needed, {n_warm} warm + {n_starting} starting"
    )


def pool_keep_alive_s(state: HybridState, config: HybridConfig) -> float:
    """The pool's surplus keep-alive now (s)."""
    return state.keep_alive_s if state.keep_alive_s is not None else config.keep_alive_s


def judge_removal(state: HybridState, now: float, adding: bool, config: HybridConfig) -> HybridState:
    """Adapt the pool's surplus keep-alive to the last keep-alive removal. Hosts added again
    within last_host_keep_alive_s of it: the removed host would have served them had it been kept
    that much longer, so keep hosts that long from now on (at least twice as long). No add for
    last_host_keep_alive_s: the removal was right, halve. Always within [keep_alive_s,
    last_host_keep_alive_s]."""
    if state.removed_at is None or not config.adapt_keep_alive:
        return state
    keep, top = pool_keep_alive_s(state, config), max(config.keep_alive_s, config.last_host_keep_alive_s)
    since = now - state.removed_at
    if adding and since < top:
        return replace(state, keep_alive_s=min(top, max(2 * keep, keep + since)), removed_at=None)
    if since >= top:
        return replace(state, keep_alive_s=max(config.keep_alive_s, keep / 2), removed_at=None)
    return state


def idle_past_keep_alive(
    obs: Observation, config: HybridConfig, keep_alive_s: float | None = None
) -> tuple[str, ...]:
    """Warm hosts idle for the pool's keep-alive (default config.keep_alive_s), least recently
    active first, as many as min_hosts allows; the pool's last live host only once idle for
    last_host_keep_alive_s; none while activations wait."""
    if obs.queued > 0:
        return ()
    keep = config.keep_alive_s if keep_alive_s is None else keep_alive_s
    idle = sorted(
        (h for h in obs.warm if h.in_flight == 0 and obs.now - h.last_active_at >= keep),
        key=lambda h: (h.last_active_at, h.host_id),
    )
    chosen = idle[: max(0, len(obs.live) - config.min_hosts)]
    if chosen and len(chosen) == len(obs.live):
        # All would go: the most recently active one is the last host; it waits its longer keep-alive.
        last = chosen[-1]
        if obs.now - last.last_active_at < max(keep, config.last_host_keep_alive_s):
            chosen = chosen[:-1]
    return tuple(h.host_id for h in chosen)


# --- the policy --------------------------------------------------------------------------------


def decide_hybrid(
    obs: Observation, state: HybridState, config: HybridConfig
) -> tuple[list[Decision], HybridState]:
    """One tick of the hybrid policy for one pool."""
    state = forget_old_ceiling(state, obs.now, config)
    limit = min(max(1, state.limit or config.initial_limit), config.max_limit)
    if state.limit != limit:
        state = replace(state, limit=limit)

    cold = cold_start_hosts(obs, limit, config)
    if cold is not None:
        if cold <= 0:
            return [Decision.hold(f"{obs.queued} queued, no host, at max_hosts")], state
        why = f"cold start from zero: {obs.queued} queued, {cold} hosts at limit {limit}"
        return [Decision.add_hosts(cold, limit, why)], state

    decisions: list[Decision] = []
    state = track_fullness(obs, state, limit)
    state, why = step_limit(obs, state, config)
    limit = state.limit or limit
    off = tuple(h.host_id for h in obs.live if h.limit != limit)
    if off:
        decisions.append(Decision.set_limit(off, limit, why or f"align hosts to the pool's limit {limit}"))

    scale = queue_or_add(obs, limit, config)
    if scale is not None:
        decisions.append(scale)

    state = judge_removal(state, obs.now, scale is not None and scale.kind == "add_hosts", config)
    keep = pool_keep_alive_s(state, config)
    idle = idle_past_keep_alive(obs, config, keep)
    if idle:
        decisions.append(Decision.remove_hosts(idle, f"idle for >= {keep:.0f} s (keep-alive)"))
        if len(idle) < len(obs.live):  # surplus hosts went (not the pool's last): judge that
            state = replace(state, removed_at=obs.now)

    added = scale.count if scale is not None and scale.kind == "add_hosts" else 0
    short = min(config.min_hosts - len(obs.live) - added, headroom(obs, config.max_hosts) - added)
    if short > 0:
        decisions.append(Decision.add_hosts(short, limit, f"below min_hosts {config.min_hosts}"))

    if not decisions:
        decisions.append(Decision.hold(f"{len(obs.live)} hosts at limit {limit}, {obs.queued} queued"))
    return decisions, state


class HybridPolicy:
    """The hybrid policy behind the ``Policy`` interface (see ``decide_hybrid``)."""

    name: ClassVar[str] = "hybrid"
    config_type: ClassVar[type[HybridConfig]] = HybridConfig
    event_driven: ClassVar[bool] = False

    def initial_state(self) -> HybridState:
        return HybridState()

    def decide(
        self, observation: Observation, state: HybridState, config: HybridConfig
    ) -> tuple[list[Decision], HybridState]:
        return decide_hybrid(observation, state, config)
