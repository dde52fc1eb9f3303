"""A whole trace on a cluster: every function as a pool of model hosts (`mapping`), hosts shaped by
the calibration and the variant's runtime (`variants`), run by the engine on invoker nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from warmwhisk_scaler.policy import make_policy

from .calibration import Calibration
from .engine import Cluster, EngineSettings, HostModel, PoolSpec, RoutedTier, SimOutput, simulate
from .mapping import MappingRules, ModelAction, activations, map_functions
from .traces import TraceFunction
from .variants import Variant


@dataclass(frozen=True)
class ClusterSpec:
    """A named cluster: invoker nodes × the memory each gives hosts (MB = 10⁶ bytes)."""

    name: str
    cluster: Cluster
    note: str = ""


# Memory is what OpenWhisk schedules by, and what `tight` and `loose` differ in; there every host
# has the cores its curve was measured with (CPU never binds). `tight-cpu` also shares 16 cores per
# node between the busy hosts there: OpenWhisk places an action's containers on its home invoker
# until its memory is full, so a hot action's node runs out of CPU first.
TIGHT = ClusterSpec("tight", Cluster(4, 8000.0), "4 invoker nodes x 8 GB userMemory")
LOOSE = ClusterSpec("loose", Cluster(4, 64000.0), "4 invoker nodes x 64 GB userMemory (no memory pressure)")
TIGHT_CPU = ClusterSpec(
    "tight-cpu", Cluster(4, 8000.0, 16.0), "4 invoker nodes x 8 GB userMemory x 16 shared cores"
)
CLUSTERS = {c.name: c for c in (TIGHT, LOOSE, TIGHT_CPU)}


@dataclass(frozen=True)
class TraceRun:
    """The inputs every variant of one evaluation shares: the actions and their activations."""

    actions: tuple[ModelAction, ...]
    arrivals: tuple[np.ndarray, ...]
    durations: tuple[np.ndarray, ...]
    horizon_s: float
    calibration: Calibration
    rules: MappingRules
    seed: int

    @property
    def invocations(self) -> int:
        return int(sum(a.size for a in self.arrivals))


def build_run(
    functions: Sequence[TraceFunction],
    calibration: Calibration,
    *,
    seed: int = 0,
    rules: MappingRules | None = None,
    start_minute: int = 0,
    minutes: int | None = None,
    compress: float = 1.0,
    only: Sequence[str] | None = None,
) -> TraceRun:
    """Map ``functions`` (busiest first) to actions and draw their activations; ``only`` keeps the
    functions with these hashes (a live slice), ranks and terciles still from all of them."""
    rules = rules or MappingRules()
    actions = map_functions(functions, calibration, rules)
    if only is not None:
        actions = [a for a in actions if a.fn.hash_function in set(only)]
    span = (len(functions[0].per_minute) - start_minute) if minutes is None else minutes
    drawn = [
        activations(a.fn, seed=seed, start_minute=start_minute, minutes=span, compress=compress, rules=rules)
        for a in actions
    ]
    return TraceRun(
        actions=tuple(actions),
        arrivals=tuple(t for t, _ in drawn),
        durations=tuple(d for _, d in drawn),
        horizon_s=span * 60.0 / compress,
        calibration=calibration,
        rules=rules,
        seed=seed,
    )


def host_model(
    action: ModelAction,
    variant: Variant,
    calibration: Calibration,
    rules: MappingRules,
    *,
    sleep: bool = False,
) -> tuple[HostModel, RoutedTier | None]:
    """A host of ``action`` on the variant's runtime. ``sleep``: the action waits its run time out
    instead of computing (the live replay's action), so concurrency costs nothing, and its latency
    is the client's (the whole routed path is added to each activation)."""
    stock = variant.runtime == "stock"
    own, shared = calibration.host_memory_mb(action.model_mb, stock=stock)
    curve = calibration.curve_model(max(rules.min_duration_s, action.fn.duration_percentiles[3]))
    batching = variant.batching and action.batchable and not stock
    if sleep:
        throughput: tuple[float, ...] = tuple(float(c) for c in range(1, 257))
    else:
        throughput = curve.batched(rules.max_batch) if batching else curve.concurrent()
    extra = 0.0 if stock else calibration.routed_overhead_s.value
    if sleep:
        # The live replay's latencies are the client's: the whole routed path of an activation.
        extra = calibration.routed_activation_s.value
    if batching:
        extra += calibration.batch_delay_s.value
    # The runtime image's file pages are shared by the node's containers of that image.
    image = min(calibration.image_shared_mb.value, own)
    host = HostModel(
        cold_start_s=calibration.cold_start_s(action.model_mb, stock=stock),
        memory_mb=own - image,
        throughput_curve=throughput,
        shared_mb=shared,
        model="" if stock else action.model,
        latency_extra_s=extra,
        image_mb=image,
        image=variant.runtime,
    )
    routed = (
        None if stock else RoutedTier(calibration.routed_start_s.value, calibration.routed_memory_mb.value)
    )
    return host, routed


def pool_specs(
    run: TraceRun, variant: Variant, *, sleep: bool = False, routed: bool = True
) -> list[PoolSpec]:
    specs = []
    for action, arrivals, durations in zip(run.actions, run.arrivals, run.durations, strict=True):
        host, tier = host_model(action, variant, run.calibration, run.rules, sleep=sleep)
        specs.append(
            PoolSpec(
                name=action.name,
                arrivals=arrivals,
                durations=durations,
                host=host,
                config=variant.config(action),
                timeout_s=action.timeout_s,
                routed=tier if routed else None,
            )
        )
    return specs


def run_variant(
    run: TraceRun,
    variant: Variant,
    cluster: Cluster,
    *,
    settings: EngineSettings | None = None,
    sleep: bool = False,
    routed: bool = True,
) -> SimOutput:
    """One variant over the whole run on ``cluster`` (engine settings: the defaults, with the
    variant's way of calling its policy, unless given)."""
    settings = settings or EngineSettings(
        ticks_only=variant.ticks_only, evict_idle=variant.evicts, spread=variant.spread
    )
    return simulate(
        pool_specs(run, variant, sleep=sleep, routed=routed),
        make_policy(variant.policy),
        horizon_s=run.horizon_s,
        cluster=cluster,
        settings=settings,
    )
