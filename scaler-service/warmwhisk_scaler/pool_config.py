"""Per-pool settings an operator changes at run time (through the API): which policy, its knobs,
and a manual host count; validated here (pure), stored by `state.ScalerStore` so every scaler
replica sees the same."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .policy import POLICIES


class PoolConfigError(ValueError):
    """A pool configuration that cannot apply; the message says which field and why."""


@dataclass(frozen=True)
class PoolConfig:
    # None: the scaler's default policy (--policy).
    policy: str | None = None
    # Knobs of that policy that differ from its defaults (names of its config dataclass).
    knobs: dict[str, Any] = field(default_factory=dict)
    # Pin the pool to this many hosts (the policy still sets their limits); None: the policy decides.
    manual_hosts: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "knobs": dict(self.knobs), "manual_hosts": self.manual_hosts}


def parse(body: Any, default_policy: str = "hybrid") -> PoolConfig:
    """Validate a pool configuration (from the API or Redis) against the policy it will run
    with (its own, or the scaler's default); raises PoolConfigError."""
    if not isinstance(body, dict):
        raise PoolConfigError("the pool configuration must be a JSON object")
    unknown = set(body) - {"policy", "knobs", "manual_hosts"}
    if unknown:
        raise PoolConfigError(f"unknown fields {sorted(unknown)}; expected policy, knobs, manual_hosts")
    policy = body.get("policy")
    if policy is not None and policy not in POLICIES:
        raise PoolConfigError(f"unknown policy {policy!r}; known: {', '.join(sorted(POLICIES))}")
    knobs = body.get("knobs") or {}
    if not isinstance(knobs, dict):
        raise PoolConfigError("knobs must be a JSON object of knob: value")
    manual = body.get("manual_hosts")
    if manual is not None and (isinstance(manual, bool) or not isinstance(manual, int) or manual < 0):
        raise PoolConfigError("manual_hosts must be a whole number >= 0, or null")
    config = PoolConfig(policy, dict(knobs), manual)
    policy_config(config, default_policy)  # the knobs must fit the policy
    return config


def policy_config(config: PoolConfig, default_policy: str) -> Any:
    """The policy's config object: its defaults, overridden by the pool's knobs."""
    policy_type = POLICIES[config.policy or default_policy]
    config_type = policy_type.config_type
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = set(config.knobs) - names
    if unknown:
        raise PoolConfigError(f"{policy_type.name} has no knobs {sorted(unknown)}; it has {sorted(names)}")
    try:
        return config_type(**config.knobs)
    except (TypeError, ValueError) as exc:
        raise PoolConfigError(f"invalid knobs for {policy_type.name}: {exc}") from exc
