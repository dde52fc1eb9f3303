"""What the trace evaluation compares: the policies as their users would start them, ablations of
the hybrid policy, and small sweeps of each baseline's main knobs.

Every knob not named here is at the default of the policy's config class, where each default is
documented with its source (`warmwhisk_scaler/policy/hybrid.py`, `baselines.py`):

* ``openwhisk``: OpenWhisk's container pool: one activation per container, a container idle
  10 minutes is stopped (`whisk.container-proxy.timeouts.idle-container`, core/invoker
  application.conf).
* ``kpa``: Knative's `config-autoscaler` defaults (config/core/configmaps/autoscaler.yaml): 60 s
  stable and 6 s panic windows, panic at 200 %, target 70 % of containerConcurrency, scale to zero
  after a 30 s grace; containerConcurrency 4 (Knative's default 0 means unlimited, which a model
  host cannot take: the port's documented deviation).
* ``rayserve``: Ray Serve's AutoscalingConfig with ``num_replicas="auto"``
  (python/ray/serve/config.py): 2 ongoing requests per replica as target, at most 5, 1 to 100
  replicas, 30 s upscale and 600 s downscale delays, 30 s look-back.
* ``hybrid``: warmwhisk's defaults (surplus hosts' keep-alive 120 s, adapted per pool up to
  600 s; the pool's last host 600 s; limits 2 → 32, ...) with the action's latency objective
  (`mapping`).

Which runtime a variant runs on is part of it: the baselines load a private copy of the model in
every container, as stock OpenWhisk Python actions, Knative pods and Ray replicas do; warmwhisk's
hosts map the weights from the node's page cache (shared by the node's hosts of that model),
micro-batch batchable actions and sit behind OpenWhisk's routed containers. Two ablations cross
them over (the policy alone, the runtime alone). Baselines run as their platforms do (OpenWhisk's
invoker starts a container per queued activation at once; Knative's activator and Ray's handle
call the autoscaler at zero); the hybrid policy runs as warmwhisk's controller runs it, on its
ticks only. Short of memory, OpenWhisk evicts idle containers of other actions to make room;
Knative and Ray (Kubernetes) leave the new pod pending, and warmwhisk's scaler never stops hosts
of other pools: their starts wait.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from warmwhisk_scaler.policy import POLICIES

from .mapping import ModelAction


@dataclass(frozen=True)
class Variant:
    name: str
    policy: str
    # Config fields changed from the policy's defaults.
    knobs: tuple[tuple[str, Any], ...] = ()
    # "warmwhisk": shared weights, routed tier; "stock": a private copy of the model per host.
    runtime: str = "stock"
    # Micro-batching on batchable actions (warmwhisk runtime only).
    batching: bool = False
    # The policy is called on ticks only (warmwhisk's controller) rather than also between them.
    ticks_only: bool = False
    # Short of memory, the platform evicts idle containers of other actions (OpenWhisk's
    # container pool); otherwise a start that does not fit waits (a Kubernetes pod pending).
    evicts: bool = False
    # The platform's router balances load over replicas (least busy first) instead of packing.
    spread: bool = False
    # "policy", "ablation" or "sweep"; a sweep point belongs to `baseline`.
    group: str = "policy"
    baseline: str = ""
    note: str = ""

    def config(self, action: ModelAction) -> Any:
        config = replace(POLICIES[self.policy].config_type(), **dict(self.knobs))
        if self.policy == "hybrid":
            config = replace(config, latency_objective_s=action.hybrid_objective_s)
        return config

    @property
    def family(self) -> str:
        """The baseline a variant counts as (itself, or the baseline it sweeps)."""
        return self.baseline or self.name


HYBRID = Variant(
    "hybrid", "hybrid", runtime="warmwhisk", batching=True, ticks_only=True, note="warmwhisk: the thesis"
)
OPENWHISK = Variant(
    "openwhisk", "openwhisk", evicts=True, note="stock OpenWhisk: 1 activation per container, 10 min idle"
)
KPA = Variant("kpa", "kpa", spread=True, note="Knative KPA defaults, containerConcurrency 4")
RAYSERVE = Variant("rayserve", "rayserve", spread=True, note="Ray Serve num_replicas=auto defaults")
POLICY_VARIANTS = (HYBRID, OPENWHISK, KPA, RAYSERVE)


def ablation(base: Variant, name: str, note: str, **changes: Any) -> Variant:
    """``base`` with ``changes``: one part of warmwhisk taken away (or lent to a baseline)."""
    return replace(base, name=name, note=note, group="ablation", **changes)


def fixed_keep_alive(seconds: float) -> tuple[tuple[str, Any], ...]:
    """Hybrid knobs for one fixed keep-alive for every host: no per-pool adaptation, no longer
    keep-alive for the pool's last host."""
    return (("adapt_keep_alive", False), ("keep_alive_s", seconds), ("last_host_keep_alive_s", seconds))


ABLATIONS = (
    ablation(HYBRID, "hybrid-no-batching", "micro-batching off", batching=False),
    ablation(
        HYBRID, "hybrid-no-concurrency", "concurrency limit 1", knobs=(("initial_limit", 1), ("max_limit", 1))
    ),
    ablation(
        HYBRID,
        "hybrid-no-keepalive-tuning",
        "one fixed keep-alive, 120 s, for every host (the policy's earlier default)",
        knobs=fixed_keep_alive(120.0),
    ),
    ablation(
        HYBRID,
        "hybrid-keepalive-600",
        "one fixed keep-alive, 600 s (OpenWhisk's), for every host",
        knobs=fixed_keep_alive(600.0),
    ),
    ablation(
        HYBRID,
        "hybrid-stock-runtime",
        "the policy alone: private model copies, no batching, no routed tier",
        runtime="stock",
        batching=False,
    ),
    ablation(
        OPENWHISK,
        "openwhisk-warmwhisk-runtime",
        "the runtime alone: OpenWhisk's policy on warmwhisk hosts (shared weights, routed)",
        runtime="warmwhisk",
        batching=False,
    ),
)

# Each baseline's main knobs, each moved alone from its default (the default itself is the policy
# variant above): what a user tuning that system would try first.
SWEEPS: dict[str, dict[str, tuple[Any, ...]]] = {
    # Keep-alive: fewer cold starts against more idle memory.
    "openwhisk": {"idle_timeout_s": (60.0, 180.0, 1800.0)},
    # Requests per pod (1: one forward at a time, as a CPU-bound model wants), and how long an
    # idle revision keeps its last pod.
    "kpa": {"container_concurrency": (1, 10), "scale_to_zero_grace_s": (300.0,)},
    # Requests per replica, and whether an idle deployment keeps one replica.
    "rayserve": {"target_ongoing_requests": (1.0, 4.0), "min_hosts": (0,)},
    # Hybrid's own knob, for the Pareto front: its last host kept 30 minutes rather than 10.
    "hybrid": {"last_host_keep_alive_s": (1800.0,)},
}


def sweep_variants() -> tuple[Variant, ...]:
    """Every point of SWEEPS: one knob of one baseline moved from its default."""
    bases = {v.name: v for v in POLICY_VARIANTS}
    out = []
    for baseline, knobs in SWEEPS.items():
        for knob, values in knobs.items():
            for value in values:
                name = f"{baseline}[{knob}={value:g}]"
                out.append(
                    replace(
                        bases[baseline], name=name, knobs=((knob, value),), group="sweep", baseline=baseline
                    )
                )
    return tuple(out)


def all_variants() -> tuple[Variant, ...]:
    return (*POLICY_VARIANTS, *ABLATIONS, *sweep_variants())


def by_name(names: str | None) -> tuple[Variant, ...]:
    """The variants named (comma-separated; "all" or None for every one)."""
    every = all_variants()
    if not names or names == "all":
        return every
    known = {v.name: v for v in every}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    missing = [n for n in wanted if n not in known]
    if missing:
        raise KeyError(f"unknown variants {missing}; known: {', '.join(known)}")
    return tuple(known[n] for n in wanted)
