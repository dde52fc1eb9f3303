"""Baseline policies, same interface as the hybrid one, for side-by-side comparison.

* ``OpenWhiskDefault``: stock OpenWhisk. One container per concurrent activation (the Python
  runtime serves one at a time), a new container the moment an activation finds none free, idle
  containers stopped after 10 minutes.
* ``KnativeKPA``: the Knative Pod Autoscaler's decision (``pkg/autoscaler/scaling/autoscaler.go``):
  average concurrency over a 60 s stable and a 6 s panic window against a per-pod target; panic
  mode when the panic window asks for twice the ready pods, no scale-down while panicking.
* ``RayServe``: Ray Serve's default policy (``python/ray/serve/autoscaling_policy.py``): replicas
  = ongoing requests / target per replica, applied only after the wish held for the upscale
  (30 s) or downscale (600 s) delay.

Defaults follow each system's documented defaults; where this port deviates (a hard per-host
limit for Knative, a max for Ray) the field says so. Each is pure: state in, state out, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from .common import Sample, align_limits, ceil_int, headroom, push_sample, scale_to, window_average
from .types import Decision, Observation

# --- OpenWhisk default ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenWhiskConfig:
    """Stock OpenWhisk's container pool, as a policy."""

    # Interval of the periodic check (s). The invoker really acts per activation: this policy is
    # ``event_driven``, so the caller also runs it whenever an activation has to queue.
    tick_s: float = 1.0
    # A container idle this long is stopped (s). OpenWhisk: 10 minutes
    # (`whisk.container-proxy.timeouts.idle-container` in core/invoker application.conf).
    idle_timeout_s: float = 600.0
    # Most containers of the action (containers). In OpenWhisk this is the invokers' user memory
    # over the action's memory (stock: 2048 MB / 256 MB = 8 per invoker); here one bound.
    max_hosts: int = 100


@dataclass(frozen=True)
class OpenWhiskState:
    """OpenWhisk's pool keeps no scaling memory beyond the containers themselves."""


def decide_openwhisk(
    obs: Observation, state: OpenWhiskState, config: OpenWhiskConfig
) -> tuple[list[Decision], OpenWhiskState]:
    """One container per concurrent activation; stop containers idle past the timeout."""
    decisions: list[Decision] = []
    # The stock Python runtime serves one activation at a time: every host's limit is 1.
    aligned = align_limits(obs, 1, "one activation per container")
    if aligned:
        decisions.append(aligned)
    live = obs.live
    # Each activation in flight or waiting needs a container of its own.
    desired = sum(h.in_flight for h in live) + obs.queued
    add = min(desired - len(live), headroom(obs, config.max_hosts))
    if add > 0:
        decisions.append(
            Decision.add_hosts(add, 1, f"{obs.queued} activations found no free container: start {add}")
        )
    idle = sorted(
        (h for h in obs.warm if h.in_flight == 0 and obs.now - h.last_active_at >= config.idle_timeout_s),
        key=lambda h: (h.last_active_at, h.host_id),
    )
    if idle:
        decisions.append(
            Decision.remove_hosts(
                [h.host_id for h in idle], f"idle for >= {config.idle_timeout_s:.0f} s (idle-container)"
            )
        )
    return decisions or [Decision.hold(f"{len(live)} containers, {obs.queued} waiting")], state


class OpenWhiskDefault:
    name: ClassVar[str] = "openwhisk"
    config_type: ClassVar[type[OpenWhiskConfig]] = OpenWhiskConfig
    event_driven: ClassVar[bool] = True

    def initial_state(self) -> OpenWhiskState:
        return OpenWhiskState()

    def decide(
        self, observation: Observation, state: OpenWhiskState, config: OpenWhiskConfig
    ) -> tuple[list[Decision], OpenWhiskState]:
        return decide_openwhisk(observation, state, config)


# --- Knative KPA ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnativeKPAConfig:
    """Knative's `config-autoscaler` defaults (config/core/configmaps/autoscaler.yaml), as fields."""

    # Time between autoscaling calculations (s). `tick-interval: 2s`.
    tick_s: float = 2.0
    # Window of the stable-mode average concurrency (s). `stable-window: 60s`.
    stable_window_s: float = 60.0
    # Panic window as a percentage of the stable window (%). `panic-window-percentage: 10.0` → 6 s.
    panic_window_percentage: float = 10.0
    # Panic when the panic window asks for this percentage of the ready pods (%).
    # `panic-threshold-percentage: 200.0`.
    panic_threshold_percentage: float = 200.0
    # Hard per-pod concurrency limit, the Revision's `containerConcurrency` (activations per
    # host). Knative's default is 0 (unlimited, then the target is
    # `container-concurrency-target-default: 100`); a model host needs a cap, so this port
    # requires one and targets a fraction of it, as Knative does when containerConcurrency > 0.
    container_concurrency: int = 4
    # Fraction of containerConcurrency to keep busy on average (%).
    # `container-concurrency-target-percentage: 70`.
    target_percentage: float = 70.0
    # Most pods versus ready pods per tick (ratio). `max-scale-up-rate: 1000.0`.
    max_scale_up_rate: float = 1000.0
    # Most ready pods versus pods after scale-down per tick (ratio). `max-scale-down-rate: 2.0`.
    max_scale_down_rate: float = 2.0
    # Time a revision wanting zero pods keeps its last pod (s). `scale-to-zero-grace-period: 30s`.
    scale_to_zero_grace_s: float = 30.0
    # Fewest pods (pods). `autoscaling.knative.dev/min-scale`, default 0 (scale to zero enabled).
    min_hosts: int = 0
    # Most pods (pods). `autoscaling.knative.dev/max-scale`; Knative's 0 means unbounded.
    max_hosts: int = 100

    def __post_init__(self) -> None:
        if self.container_concurrency < 1:
            raise ValueError("container_concurrency must be >= 1 (a model host needs a hard limit)")

    @property
    def panic_window_s(self) -> float:
        return self.stable_window_s * self.panic_window_percentage / 100.0

    @property
    def target(self) -> float:
        """Concurrency per pod the autoscaler aims for: containerConcurrency × target percentage
        (Knative's ResolveMetricTarget, floored at its TargetMin 0.01)."""
        return max(0.01, self.container_concurrency * self.target_percentage / 100.0)


@dataclass(frozen=True)
class KnativeKPAState:
    """What Knative's autoscaler keeps: the metric window, the panic state, the zero grace."""

    # (time s, observed concurrency) samples within the stable window, oldest first.
    samples: tuple[Sample, ...] = ()
    # Knative's panicTime: last tick that was over the panic threshold while panicking (s).
    panic_since: float | None = None
    # Highest pod count asked for during this panic (pods); never scaled below while panicking.
    max_panic_pods: int = 0
    # First tick of the current run of "zero pods wanted" (s), for the scale-to-zero grace.
    zero_since: float | None = None


def kpa_desired(
    obs: Observation, state: KnativeKPAState, config: KnativeKPAConfig
) -> tuple[int, KnativeKPAState]:
    """Knative's Scale(now): the pod count wanted and the next state."""
    # Requests in the system: at the pods and buffered by the activator.
    observed = float(obs.in_flight + obs.queued)
    samples = push_sample(state.samples, obs.now, observed, config.stable_window_s)
    stable = window_average(samples, obs.now, config.stable_window_s)
    panic = window_average(samples, obs.now, config.panic_window_s)
    # Knative divides by at least one pod so that scaling from zero is possible.
    ready = max(1, len(obs.warm))
    # Rate limits: at most ×max_scale_up_rate pods, at least ready/max_scale_down_rate pods per tick.
    max_up = math.ceil(config.max_scale_up_rate * ready)
    max_down = math.floor(ready / config.max_scale_down_rate)
    dspc = ceil_int(stable / config.target)
    dppc = ceil_int(panic / config.target)
    desired_stable = min(max(dspc, max_down), max_up)
    desired_panic = min(max(dppc, max_down), max_up)
    # Panic when the short window asks for panic-threshold × the ready pods.
    over = dppc / ready >= config.panic_threshold_percentage / 100.0
    panic_since, max_panic = state.panic_since, state.max_panic_pods
    if over:
        panic_since = obs.now  # start panicking, or extend the panic
    elif panic_since is not None and obs.now > panic_since + config.stable_window_s:
        panic_since, max_panic = None, 0  # the surge has made its way into the stable window
    desired = desired_stable
    if panic_since is not None:
        # Provision for the larger of the two windows and never scale down while panicking.
        max_panic = max(max_panic, desired_stable, desired_panic)
        desired = max_panic
    return desired, replace(state, samples=samples, panic_since=panic_since, max_panic_pods=max_panic)


def decide_kpa(
    obs: Observation, state: KnativeKPAState, config: KnativeKPAConfig
) -> tuple[list[Decision], KnativeKPAState]:
    """One Knative autoscaler tick: desired pods, the scale-to-zero grace, bounds, then scale."""
    desired, state = kpa_desired(obs, state, config)
    limit = config.container_concurrency
    # The last pod goes only after zero pods were wanted for the whole grace period.
    zero_since = (state.zero_since if state.zero_since is not None else obs.now) if desired == 0 else None
    state = replace(state, zero_since=zero_since)
    in_grace = zero_since is not None and obs.now - zero_since < config.scale_to_zero_grace_s
    if desired == 0 and obs.live and in_grace:
        desired = 1
    desired = min(max(desired, config.min_hosts), config.max_hosts)
    mode = "panic" if state.panic_since is not None else "stable"
    why = f"{mode} mode: {desired} pods for target {config.target:g} concurrent per pod"
    decisions: list[Decision] = []
    aligned = align_limits(obs, limit, "containerConcurrency")
    if aligned:
        decisions.append(aligned)
    decisions += scale_to(obs, desired, limit, config.max_hosts, why)
    return decisions or [Decision.hold(why)], state


class KnativeKPA:
    name: ClassVar[str] = "kpa"
    config_type: ClassVar[type[KnativeKPAConfig]] = KnativeKPAConfig
    event_driven: ClassVar[bool] = False

    def initial_state(self) -> KnativeKPAState:
        return KnativeKPAState()

    def decide(
        self, observation: Observation, state: KnativeKPAState, config: KnativeKPAConfig
    ) -> tuple[list[Decision], KnativeKPAState]:
        return decide_kpa(observation, state, config)


# --- Ray Serve -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayServeConfig:
    """Ray Serve's AutoscalingConfig defaults (python/ray/serve/config.py), with the replica bounds
    of ``num_replicas="auto"`` (min 1, max 100; plain AutoscalingConfig defaults to max 1)."""

    # Interval of the autoscaling decision (s). Ray's controller runs every 0.1 s
    # (CONTROL_LOOP_INTERVAL_S) and counts delays in loop periods; here delays are in seconds.
    tick_s: float = 1.0
    # Ongoing requests per replica to aim for (requests). `target_ongoing_requests: 2`.
    target_ongoing_requests: float = 2.0
    # Hard per-replica limit (requests). `max_ongoing_requests: 5`.
    max_ongoing_requests: int = 5
    # Fewest replicas (replicas). `min_replicas: 1`; 0 allows scale to zero.
    min_hosts: int = 1
    # Most replicas (replicas). `max_replicas` (100 with num_replicas="auto").
    max_hosts: int = 100
    # How long a scale-up wish must hold before it is applied (s). `upscale_delay_s: 30.0`.
    upscale_delay_s: float = 30.0
    # How long a scale-down wish must hold before it is applied (s). `downscale_delay_s: 600.0`.
    downscale_delay_s: float = 600.0
    # Delay for the last step 1 → 0 (s); None uses downscale_delay_s. `downscale_to_zero_delay_s`.
    downscale_to_zero_delay_s: float | None = None
    # Window over which ongoing requests are averaged (s). `look_back_period_s: 30.0`.
    look_back_period_s: float = 30.0
    # Multipliers on each scaling step (ratio). `upscaling_factor`/`downscaling_factor`: None,
    # i.e. `smoothing_factor: 1.0`.
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0


@dataclass(frozen=True)
class RayServeState:
    """What Ray Serve's controller keeps: its target, the metric window, the delay counter."""

    # target_num_replicas; None until the first tick (then max(min_hosts, live hosts)).
    target: int | None = None
    # (time s, ongoing + queued requests) samples within the look-back period, oldest first.
    samples: tuple[Sample, ...] = ()
    # The decision waiting out its delay: +1 up, -1 down, 0 none; and since when it holds (s).
    pending: int = 0
    pending_since: float = -math.inf


def ray_apply_scaling_factor(desired: float, current: int, config: RayServeConfig) -> int:
    """Move by factor × the gap; a downscale stuck by the factor still drops one replica."""
    delta = desired - current
    factor = config.upscaling_factor if delta > 0 else config.downscaling_factor
    scaled = ceil_int(current + factor * delta)
    if ceil_int(desired) < current and scaled == current:
        scaled -= 1
    return scaled


def ray_apply_delay(
    desired: int, target: int, state: RayServeState, now: float, config: RayServeConfig
) -> tuple[int, RayServeState]:
    """Apply a change of target only once it has been wished for the whole upscale/downscale
    delay; a wish in the other direction (or none) restarts the count."""
    if desired > target:
        since = state.pending_since if state.pending == 1 else now
        if now - since >= config.upscale_delay_s:
            return desired, replace(state, pending=0, pending_since=-math.inf)
        return target, replace(state, pending=1, pending_since=since)
    if desired < target:
        since = state.pending_since if state.pending == -1 else now
        if target == 1 and config.downscale_to_zero_delay_s is not None:
            delay = config.downscale_to_zero_delay_s
        else:
            delay = config.downscale_delay_s
        if target != 1:
            desired = max(1, desired)  # only the last step may go to zero
        if now - since >= delay:
            return desired, replace(state, pending=0, pending_since=-math.inf)
        return target, replace(state, pending=-1, pending_since=since)
    return target, replace(state, pending=0, pending_since=-math.inf)


def decide_rayserve(
    obs: Observation, state: RayServeState, config: RayServeConfig
) -> tuple[list[Decision], RayServeState]:
    """One Ray Serve autoscaling decision: fast path from zero, else the queue-length rule with
    scaling factors, bounds and delays; then reconcile hosts to the target."""
    ongoing = float(obs.in_flight + obs.queued)
    samples = push_sample(state.samples, obs.now, ongoing, config.look_back_period_s)
    state = replace(state, samples=samples)
    target = state.target if state.target is not None else max(config.min_hosts, len(obs.live))
    running = len(obs.warm)
    if running == 0:
        # Cold start fast path: no running replica and requests waiting → one replica now.
        if ongoing > 0:
            target = max(ceil_int(config.upscaling_factor), target)
        why = f"no running replica, {ongoing:g} requests: target {target}"
    else:
        average = window_average(samples, obs.now, config.look_back_period_s)
        # Replicas so that each has target_ongoing_requests on average.
        desired = ray_apply_scaling_factor(average / config.target_ongoing_requests, running, config)
        desired = min(max(desired, config.min_hosts), config.max_hosts)
        target, state = ray_apply_delay(desired, target, state, obs.now, config)
        why = f"{average:.1f} ongoing on average: want {desired}, target {target}"
    target = min(max(target, config.min_hosts), config.max_hosts)
    state = replace(state, target=target)
    limit = config.max_ongoing_requests
    decisions: list[Decision] = []
    aligned = align_limits(obs, limit, "max_ongoing_requests")
    if aligned:
        decisions.append(aligned)
    decisions += scale_to(obs, target, limit, config.max_hosts, why)
    return decisions or [Decision.hold(why)], state


class RayServe:
    name: ClassVar[str] = "rayserve"
    config_type: ClassVar[type[RayServeConfig]] = RayServeConfig
    event_driven: ClassVar[bool] = False

    def initial_state(self) -> RayServeState:
        return RayServeState()

    def decide(
        self, observation: Observation, state: RayServeState, config: RayServeConfig
    ) -> tuple[list[Decision], RayServeState]:
        return decide_rayserve(observation, state, config)
