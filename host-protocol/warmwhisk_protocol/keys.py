"""The Redis key schema of the scaler: the only place where key strings are spelled.

Every key starts with a prefix (default ``warmwhisk``), so several deployments can share one Redis
by choosing different prefixes. ``<host>`` is a host id (unique per model-host container),
``<action>`` an action's fully qualified name (``/namespace/package/name``); both are opaque.

===========================  ======  ======================================================  ================
key                          type    content                                                 TTL
===========================  ======  ======================================================  ================
``P:host:<host>``            hash    the host's last heartbeat: ``address``, ``namespace``,  heartbeat TTL,
                                     ``actions`` (JSON list), ``models`` (JSON list),        refreshed by
                                     ``state``, ``limit`` (the host's own cap),              every heartbeat
                                     ``reported_in_flight``, ``memory_bytes``,
                                     ``model_load_s``, ``keepalive_s`` (how long the host
                                     keeps an idle connection open),
                                     ``heartbeat_at`` (unix s), and
                                     ``serves:<action>`` = 1 per action (``serves_field``)
``P:hosts``                  set     ids of hosts that heartbeated; pruned lazily            none
                                     (``Registry.hosts``) once their record has expired
``P:action-hosts:<action>``  set     ids of hosts serving ``<action>``: the routing index;   none
                                     pruned lazily by ``acquire`` and by heartbeats that
                                     drop the action
``P:slots``                  hash    ``<host>`` → slots in use (acquired, not released);     none
                                     owned by acquire/release, seeded from the host's
                                     reported in-flight when missing
``P:limits``                 hash    ``<host>`` → concurrency limit set by the scaler        none
                                     (routing uses min(this, the host's own cap))
``P:removed:<host>``         string  tombstone: heartbeats of a removed host are ignored     2 heartbeat TTLs
``P:unreachable:<host>``     string  a router could not reach the host (refused, reset);      2 heartbeat TTLs
                                     ``acquire`` skips it, the scaler replaces it
``P:action:<action>``        string  the action's registration, JSON: namespace, name,       none
                                     models, code digest, ...
                                     (``Registry.register_action``)
``P:actions``                set     names of registered actions                             none
``P:stats:<action>``         hash    pool counters: ``acquired``, ``rejected`` (no free      none
                                     slot), ``completed``, ``duration_ms_sum``, ``timed``
                                     (completions with a duration)
``P:durations:<action>``     list    durations (ms) of the most recent completions, newest   none
                                     first, capped at ``DURATION_SAMPLES``
``P:waiting:<action>``       zset    activations waiting for a slot at routers: member = a   none (members
                                     wait id, score = when the wait ends at the latest (unix  expire by
                                     s); counted by ``Registry.waiting``                      score)
``P:pool-config:<action>``   string  JSON: the pool's policy knobs and manual scale, written  none
                                     by the scaler's API (``pool_config.py``)
``P:leader``                 string  the control loop's lease: the holder's id               lease TTL
``P:decisions``              list    the scaler's decision log: JSON entries, newest first,  none
                                     capped by its writer
``P:epoch``                  string  random token created on first use; a new value means    none
                                     Redis lost its state (restart without persistence)
===========================  ======  ======================================================  ================

Lua scripts cannot receive every key they touch in ``KEYS`` (the hosts to inspect are only known
inside the script), so they receive key *prefixes* from this module (``host_prefix``,
``action_hosts_prefix``) and append an id. This assumes a single Redis instance, not a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

DURATION_SAMPLES = 256
"""How many recent completion durations ``P:durations:<action>`` keeps per action."""


@dataclass(frozen=True)
class RedisKeys:
    """Builds every key of the schema above from one prefix."""

    prefix: str = "warmwhisk"

    def __post_init__(self) -> None:
        if not self.prefix or any(ch.isspace() for ch in self.prefix):
            raise ValueError(f"key prefix must be non-empty without whitespace, got {self.prefix!r}")

    # Hosts and routing.
    @property
    def host_prefix(self) -> str:
        """``host(h) == host_prefix + h``; handed to Lua scripts that derive host keys."""
        return f"{self.prefix}:host:"

    def host(self, host_id: str) -> str:
        return self.host_prefix + host_id

    @staticmethod
    def serves_field(action: str) -> str:
        """The field of a host's hash that says it serves ``action`` (checked by ``acquire``)."""
        return f"serves:{action}"

    @property
    def hosts(self) -> str:
        return f"{self.prefix}:hosts"

    @property
    def action_hosts_prefix(self) -> str:
        """``action_hosts(a) == action_hosts_prefix + a``; handed to the heartbeat script."""
        return f"{self.prefix}:action-hosts:"

    def action_hosts(self, action: str) -> str:
        return self.action_hosts_prefix + action

    @property
    def slots(self) -> str:
        return f"{self.prefix}:slots"

    @property
    def limits(self) -> str:
        return f"{self.prefix}:limits"

    @property
    def removed_prefix(self) -> str:
        """``removed(h) == removed_prefix + h``; handed to the heartbeat script."""
        return f"{self.prefix}:removed:"

    def removed(self, host_id: str) -> str:
        return self.removed_prefix + host_id

    @property
    def unreachable_prefix(self) -> str:
        """``unreachable(h) == unreachable_prefix + h``; handed to the acquire script."""
        return f"{self.prefix}:unreachable:"

    def unreachable(self, host_id: str) -> str:
        return self.unreachable_prefix + host_id

    # Actions.
    def action(self, action: str) -> str:
        return f"{self.prefix}:action:{action}"

    @property
    def actions(self) -> str:
        return f"{self.prefix}:actions"

    # Per-pool (per-action) statistics.
    def stats(self, action: str) -> str:
        return f"{self.prefix}:stats:{action}"

    def durations(self, action: str) -> str:
        return f"{self.prefix}:durations:{action}"

    def waiting(self, action: str) -> str:
        return f"{self.prefix}:waiting:{action}"

    # Scaler configuration, per pool.
    def pool_config(self, action: str) -> str:
        return f"{self.prefix}:pool-config:{action}"

    # Control loop.
    @property
    def leader(self) -> str:
        return f"{self.prefix}:leader"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}:decisions"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"
