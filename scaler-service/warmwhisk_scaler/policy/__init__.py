"""Scaling policies: pure functions ``(observation, state, config) -> (decisions, state)``.

``POLICIES`` maps a name to a policy class; every class has ``config_type``, ``initial_state()``
and ``decide(observation, state, config)`` (see ``types.Policy``).
"""

from __future__ import annotations

from typing import Any

from .baselines import (
    KnativeKPA,
    KnativeKPAConfig,
    KnativeKPAState,
    OpenWhiskConfig,
    OpenWhiskDefault,
    OpenWhiskState,
    RayServe,
    RayServeConfig,
    RayServeState,
)
from .hybrid import HybridConfig, HybridPolicy, HybridState, decide_hybrid
from .types import Decision, DecisionKind, HostState, HostView, Observation, Policy

POLICIES: dict[str, type[Any]] = {
    HybridPolicy.name: HybridPolicy,
    OpenWhiskDefault.name: OpenWhiskDefault,
    KnativeKPA.name: KnativeKPA,
    RayServe.name: RayServe,
}
"""Policy classes by name: "hybrid", "openwhisk", "kpa", "rayserve"."""


def make_policy(name: str) -> Policy[Any, Any]:
    """An instance of the policy called ``name`` (KeyError naming the known ones otherwise)."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise KeyError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None


__all__ = [
    "POLICIES",
    "Decision",
    "DecisionKind",
    "HostState",
    "HostView",
    "HybridConfig",
    "HybridPolicy",
    "HybridState",
    "KnativeKPA",
    "KnativeKPAConfig",
    "KnativeKPAState",
    "Observation",
    "OpenWhiskConfig",
    "OpenWhiskDefault",
    "OpenWhiskState",
    "Policy",
    "RayServe",
    "RayServeConfig",
    "RayServeState",
    "decide_hybrid",
    "make_policy",
]
