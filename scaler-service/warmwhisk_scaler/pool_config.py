"""Per-pool settings an operator changes at run time (through the API): which policy, its knobs,
and a manual host count; validated here (pure), stored by `state.ScalerStore` so every scaler
replica sees the same.

Every knob is checked against its policy config's annotation and a range before the config
object is built, because the policies trust their config: a `max_hosts` of 10**400 or a `tick_s`
of 1e-300 would not fail here but in every later tick of the control loop. Bounds, by knob name:

- `tick_s`: a finite number >= `settings.MIN_PERIOD_S` (0.05 s) and <= `MAX_NUMBER`;
- `*_hosts` (`min_hosts`, `max_hosts`) and the manual host count: whole numbers from 0 to the
  scaler's host cap (`settings.max_hosts`);
- other whole numbers (`*limit*`, and per-host concurrency such as `container_concurrency`):
  from 1 to `settings.MAX_LIMIT` (1024);
- other `*_s` (durations): from 0 to `MAX_NUMBER`;
- rates, factors, percentages and targets (divisors in the policies): from `MIN_RATIO` to
  `MAX_NUMBER`; other fractions (gains, tolerances, utilization): from 0 to `MAX_NUMBER`.

Whole-number knobs take JSON integers only (no booleans, no 2.5, no 2.0); number knobs take
integers or floats, finite (no booleans). The policy's own `__post_init__` checks the rest
(e.g. `min_hosts <= max_hosts`).
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .policy import POLICIES
from .settings import MAX_HOSTS_CEILING, MAX_LIMIT, MIN_PERIOD_S

# The largest number any knob takes (about 31 years in seconds); larger ones only overflow.
MAX_NUMBER = 1e9
# The smallest rate, factor, percentage or target: the policies divide by them.
MIN_RATIO = 1e-6
_RATIO_NAMES = ("_rate", "_factor", "_percentage")


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


def parse(body: Any, default_policy: str = "hybrid", max_hosts: int = MAX_HOSTS_CEILING) -> PoolConfig:
    """Validate a pool configuration (from the API or Redis) against the policy it will run
    with (its own, or the scaler's default) and the scaler's host cap; raises PoolConfigError."""
    if not isinstance(body, dict):
        raise PoolConfigError("the pool configuration must be a JSON object")
    unknown = set(body) - {"policy", "knobs", "manual_hosts"}
    if unknown:
        raise PoolConfigError(f"unknown fields {sorted(unknown)}; expected policy, knobs, manual_hosts")
    policy = body.get("policy")
    if policy is not None and (not isinstance(policy, str) or policy not in POLICIES):
        raise PoolConfigError(f"unknown policy {_shown(policy)}; known: {', '.join(sorted(POLICIES))}")
    knobs = body.get("knobs") or {}
    if not isinstance(knobs, dict):
        raise PoolConfigError("knobs must be a JSON object of knob: value")
    manual = host_count("manual_hosts", body.get("manual_hosts"), max_hosts, nullable=True)
    config = PoolConfig(policy, dict(knobs), manual)
    policy_config(config, default_policy, max_hosts)  # the knobs must fit the policy
    return config


def policy_config(config: PoolConfig, default_policy: str, max_hosts: int = MAX_HOSTS_CEILING) -> Any:
    """The policy's config object: its defaults, overridden by the pool's knobs (each checked
    against its annotation and bounds first)."""
    policy_type = POLICIES[config.policy or default_policy]
    config_type = policy_type.config_type
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = set(config.knobs) - names
    if unknown:
        raise PoolConfigError(f"{policy_type.name} has no knobs {sorted(unknown)}; it has {sorted(names)}")
    annotations = typing.get_type_hints(config_type)
    for name, value in config.knobs.items():
        _check_knob(name, annotations[name], value, max_hosts)
    try:
        return config_type(**config.knobs)
    except (TypeError, ValueError) as exc:
        raise PoolConfigError(f"invalid knobs for {policy_type.name}: {exc}") from exc


def host_count(name: str, value: Any, max_hosts: int, *, nullable: bool) -> int | None:
    """``value`` as a host count: a whole number from 0 to ``max_hosts`` (the scaler's cap), or
    None where ``nullable``; PoolConfigError naming ``name`` and the rule otherwise."""
    if value is None and nullable:
        return None
    if not _is_int(value) or not 0 <= value <= max_hosts:
        null = ", or null" if nullable else ""
        raise PoolConfigError(
            f"{name} must be a whole number from 0 to {max_hosts} (the scaler's max_hosts){null}; "
            f"got {_shown(value)}"
        )
    return value


def _check_knob(name: str, annotation: Any, value: Any, max_hosts: int) -> None:
    """Raise PoolConfigError unless ``value`` fits the knob's annotation and its bounds."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    allowed = set(typing.get_args(annotation)) if union else {annotation}
    if value is None:
        if type(None) not in allowed:
            raise PoolConfigError(f"knobs.{name} may not be null")
        return
    where = f"knobs.{name}"
    if int in allowed:
        if name.endswith("_hosts"):
            host_count(where, value, max_hosts, nullable=False)
        elif not _is_int(value) or not 1 <= value <= MAX_LIMIT:
            raise PoolConfigError(
                f"{where} must be a whole number from 1 to {MAX_LIMIT}; got {_shown(value)}"
            )
    elif float in allowed:
        low = MIN_PERIOD_S if name == "tick_s" else MIN_RATIO if _is_ratio(name) else 0
        number = _is_int(value) or (isinstance(value, float) and math.isfinite(value))
        if not number or not low <= value <= MAX_NUMBER:
            raise PoolConfigError(
                f"{where} must be a number from {low:g} to {MAX_NUMBER:g}; got {_shown(value)}"
            )
    elif bool in allowed:
        if not isinstance(value, bool):
            raise PoolConfigError(f"{where} must be true or false; got {_shown(value)}")
    else:
        raise PoolConfigError(f"{where} cannot be set through the API")


def _is_int(value: Any) -> bool:
    """A JSON integer: ``int`` but not ``bool`` (``True`` is an int in Python, not in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ratio(name: str) -> bool:
    return name.endswith(_RATIO_NAMES) or name.startswith("target_")


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a 64 KiB string, 10**400, a deep list)."""
    return reprlib.repr(value)
