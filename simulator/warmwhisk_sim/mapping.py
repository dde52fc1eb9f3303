"""From trace functions to model actions: the documented mapping of the trace evaluation.

Each function of an Azure Functions 2019 trace becomes one model action (one pool of hosts):

* **Model size**: the function's allocated memory at its 99th percentile (``AverageAllocatedMb_pct99``,
  × ``MappingRules.model_scale``, default 1): what the function's process kept resident, taken
  as the weights its model maps. The runtime around it (torch, the server) comes from the
  calibration, not from the trace.
* **Service time**: each activation's run time alone on a host is drawn from the function's
  duration percentiles (`traces.run_times`: inverse CDF interpolated in log(duration), ≥ 1 ms).
* **Batchability**: functions triggered per request or message (``http``, ``queue``, ``event``)
  are batchable: each activation is one independent item of the same model; ``timer``,
  ``orchestration``, ``storage`` and the rest run whole jobs and are not.
* **How a host's throughput grows** with concurrency (and with micro-batching, if batchable) is the
  measured curve of the calibrated model whose single forward time is nearest to the function's
  median duration (`Calibration.curve_model`).
* **Arrivals**: within each minute of the trace, its n invocations are spread as n independent
  uniform times (a Poisson process conditioned on the count: `traces.arrival_times`), from a
  generator seeded with (seed, CRC-32 of the function's hash): one seed, one workload, and a
  function's arrivals do not depend on which other functions are in the folder.
* **Popularity terciles**: functions sorted by invocations (busiest first) and cut into three
  groups of (nearly) equal count: hot, warm, rare.
* **Latency objective** of an activation: its run time alone plus the larger of 1 s and that run
  time (a slowdown of 2 for long runs, one extra second for short ones). **Timeout**: an
  activation still waiting max(60 s, 2 × the function's longest duration) after its arrival is
  dropped (60 s: OpenWhisk's default action time limit).
* **The hybrid policy's objective** for a function's p99 run time on a host: max(1 s, 2 × the
  function's 99th-percentile duration), the user's latency objective for that action.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import Calibration
from .traces import TraceFunction, arrival_times, run_times

TERCILES = ("hot", "warm", "rare")


@dataclass(frozen=True)
class AtLeast:
    """A time scaled from a duration, never below a floor: max(floor_s, factor × duration)."""

    floor_s: float
    factor: float

    def of(self, duration_s: Any) -> Any:
        """The bound for one duration (s) or an array of them."""
        return np.maximum(self.floor_s, self.factor * np.asarray(duration_s, dtype=float))


@dataclass(frozen=True)
class MappingRules:
    """The knobs of the mapping, each at the value the module docstring states."""

    # Quantile of the allocated memory taken as the model's size, and a factor on it.
    model_memory_quantile: float = 0.99
    model_scale: float = 1.0
    batchable_triggers: frozenset[str] = frozenset({"http", "queue", "event"})
    # The micro-batcher's largest batch (the bert example's default).
    max_batch: int = 16
    # An activation's latency objective: its run time + this of its run time.
    objective_slack: AtLeast = AtLeast(1.0, 1.0)
    # Timeout: this of the function's longest duration.
    timeout: AtLeast = AtLeast(60.0, 2.0)
    # The hybrid policy's p99 objective: this of the function's p99 duration.
    hybrid_objective: AtLeast = AtLeast(1.0, 2.0)
    min_duration_s: float = 0.001


@dataclass(frozen=True)
class ModelAction:
    """One trace function as a model action."""

    fn: TraceFunction
    # Rank by invocations (1 = busiest) and popularity tercile.
    rank: int
    tercile: str
    model_mb: float
    batchable: bool
    # The calibrated model whose curves the host follows.
    curve_model: str
    timeout_s: float
    hybrid_objective_s: float
    # Identity of the model's weights file: hosts of actions with one id share its pages on a
    # node. Empty: the function's own model.
    model_id: str = ""

    @property
    def name(self) -> str:
        return self.fn.hash_function[:12]

    @property
    def model(self) -> str:
        return self.model_id or self.fn.hash_function


def terciles(count: int) -> list[str]:
    """Tercile of each rank (busiest first): three groups of nearly equal size, larger first."""
    sizes = [count // 3 + (1 if i < count % 3 else 0) for i in range(3)]
    return [t for t, n in zip(TERCILES, sizes, strict=True) for _ in range(n)]


def map_functions(
    functions: Sequence[TraceFunction], calibration: Calibration, rules: MappingRules | None = None
) -> list[ModelAction]:
    """The model action of each function (``functions`` busiest first, as `read_azure_trace` gives)."""
    rules = rules or MappingRules()
    groups = terciles(len(functions))
    actions = []
    for rank, (fn, tercile) in enumerate(zip(functions, groups, strict=True), start=1):
        median_s = max(rules.min_duration_s, fn.duration_percentiles[3])
        actions.append(
            ModelAction(
                fn=fn,
                rank=rank,
                tercile=tercile,
                model_mb=max(0.01, fn.memory_at(rules.model_memory_quantile) * rules.model_scale),
                batchable=fn.trigger in rules.batchable_triggers,
                curve_model=calibration.curve_model(median_s).model,
                timeout_s=float(rules.timeout.of(fn.duration_percentiles[-1])),
                hybrid_objective_s=float(rules.hybrid_objective.of(fn.duration_percentiles[5])),
            )
        )
    return actions


def activations(
    fn: TraceFunction,
    *,
    seed: int,
    start_minute: int = 0,
    minutes: int | None = None,
    compress: float = 1.0,
    rules: MappingRules | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(arrival times s, run times s) of one function over ``minutes`` from ``start_minute`` (of the
    file's minutes), with arrival times divided by ``compress`` (time compression for a live
    replay: run times are real and stay). Seeded by (seed, the function's hash)."""
    rules = rules or MappingRules()
    end = len(fn.per_minute) if minutes is None else start_minute + minutes
    counts = np.asarray(fn.per_minute[start_minute:end], dtype=int)
    rng = np.random.default_rng([seed, zlib.crc32(fn.hash_function.encode())])
    t = arrival_times(rng, counts) / compress
    return t, run_times(rng, fn, t.size, rules.min_duration_s)


def objective_s(run_s: np.ndarray, rules: MappingRules | None = None) -> np.ndarray:
    """Each activation's latency objective (s) from its run time alone."""
    rules = rules or MappingRules()
    return run_s + rules.objective_slack.of(run_s)


def slice_functions(
    actions: Sequence[ModelAction],
    *,
    start_minute: int,
    minutes: int,
    compress: float,
    max_concurrency: float,
    max_duration_s: float,
) -> list[ModelAction]:
    """One function per popularity tercile for a live replay of minutes [start, start + minutes)
    compressed ``compress`` times: in each tercile, the busiest function in that slice whose
    offered load there (invocations × mean duration over the compressed seconds) stays within
    ``max_concurrency`` and whose median duration is at most ``max_duration_s``, with at least one
    invocation in the slice."""
    chosen = []
    span_s = minutes * 60.0 / compress
    for tercile in TERCILES:
        best: tuple[int, ModelAction] | None = None
        for action in actions:
            fn = action.fn
            count = sum(fn.per_minute[start_minute : start_minute + minutes])
            load = count * fn.duration_average_s / span_s
            fits = count > 0 and load <= max_concurrency and fn.duration_percentiles[3] <= max_duration_s
            if action.tercile == tercile and fits and (best is None or count > best[0]):
                best = (count, action)
        if best is not None:
            chosen.append(best[1])
    return chosen
