"""The Redis key schema: the only place where key strings are spelled, and the Redis ACL rules that
follow from it.

Every key starts with a prefix (default ``warmwhisk``), so several deployments can share one Redis.
Everything routers and hosts touch lives under one namespace's prefix ``P:ns:<ns>`` (``N`` below),
so a Redis ACL user can be limited to its namespace's keys (``NamespaceKeys.acl_rules``): a leaked
host or router credential gives nothing outside its namespace. ``<ns>`` is the OpenWhisk namespace
(characters other than ``A-Za-z0-9_.@-`` percent-encoded), ``<host>`` a host id, ``<action>`` an
action key (``/namespace/package/name@digest``); both opaque.

Per namespace (hosts and routers of the namespace read and write them, except where marked):

=============================  ======  ====================================================  ===============
key                            type    content                                               TTL
=============================  ======  ====================================================  ===============
``N:host:<host>``              hash    the host's last heartbeat: ``address``, ``namespace``,  heartbeat TTL,
                                       ``actions`` (JSON list), ``models`` (JSON list),      refreshed by
                                       ``state``, ``limit`` (the host's own cap),            every heartbeat
                                       ``reported_in_flight``, ``memory_bytes``,
                                       ``model_load_s``, ``keepalive_s`` (how long the host
                                       keeps an idle connection open), ``token`` (what a
                                       router sends it), ``heartbeat_at`` (unix s), and
                                       ``serves:<action>`` = 1 per action (``serves_field``)
``N:hosts``                    set     ids of hosts that heartbeated; pruned lazily          none
                                       (``Registry.hosts``) once their record has expired
``N:action-hosts:<action>``    set     ids of hosts serving ``<action>``: the routing index;  none
                                       pruned lazily by ``acquire`` and by heartbeats that
                                       drop the action
``N:slots``                    hash    ``<host>`` → slots in use (acquired, not released);    none
                                       owned by acquire/release, seeded from the host's
                                       reported in-flight when missing
``N:limits``                   hash    ``<host>`` → concurrency limit set by the scaler       none
                                       (routing uses min(this, the host's own cap)).
                                       Read-only for the namespace's user
``N:removed:<host>``           string  tombstone: heartbeats of a removed host are ignored.   2 heartbeat TTLs
                                       Read-only for the namespace's user
``N:unreachable:<host>``       string  a router could not reach the host (refused, reset);    2 heartbeat TTLs
                                       ``acquire`` skips it, the scaler replaces it
``N:action:<action>``          string  the action's registration, JSON (``ActionSpec``)      none
``N:actions``                  set     keys of registered actions                            none
``N:stats:<action>``           hash    pool counters: ``acquired``, ``rejected`` (no free     none
                                       slot), ``completed``, ``duration_ms_sum``, ``timed``
                                       (completions with a duration)
``N:durations:<action>``       list    durations (ms) of the most recent completions, newest  none
                                       first, capped at ``DURATION_SAMPLES``
``N:waiting:<action>``         zset    activations waiting for a slot at routers: member = a  none (members
                                       wait id, score = when the wait ends at the latest      expire by
                                       (unix s); counted by ``Registry.waiting``              score)
=============================  ======  ====================================================  ===============

The scaler's own (its admin user only):

=============================  ======  ====================================================  ===============
``P:namespaces``               set     namespaces with a credential (the scaler's to serve)  none
``P:credential:<ns>``          hash    the namespace's ACL user: ``user``, ``password``,      none
                                       ``previous`` and ``previous_until`` (rotation)
``P:pool-config:<action>``     string  JSON: the pool's policy knobs and manual scale        none
``P:leader``                   string  the control loop's lease: the holder's id             lease TTL
``P:decisions``                list    the decision log: JSON entries, newest first, capped  none
``P:epoch``                    string  random token created on first use; a new value means   none
                                       Redis lost its state (restart without persistence)
=============================  ======  ====================================================  ===============

Lua scripts cannot receive every key they touch in ``KEYS`` (the hosts to inspect are only known
inside the script), so they receive key *prefixes* from this module (``host_prefix``,
``action_hosts_prefix``) and append an id; Redis checks those keys against the caller's ACL all the
same. This assumes a single Redis instance, not a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

DURATION_SAMPLES = 256
"""How many recent completion durations ``N:durations:<action>`` keeps per action."""

# What a namespace's user may run: the registry's own calls and the commands its Lua scripts make,
# EVALSHA of scripts the scaler loaded (never EVAL or SCRIPT LOAD: arbitrary Lua could hold Redis
# for everyone), and nothing that lists keys (SCAN and KEYS ignore key permissions).
NAMESPACE_COMMANDS = (
    "evalsha", "evalsha_ro", "script|exists", "ping", "hello", "multi", "exec",
    "get", "set", "del", "exists", "pexpire",
    "sadd", "srem", "smembers", "scard",
    "hget", "hmget", "hgetall", "hset", "hsetnx", "hdel", "hincrby", "hincrbyfloat", "hkeys",
    "lpush", "lrange", "ltrim",
    "zadd", "zrem", "zremrangebyscore", "zcard",
)  # fmt: skip

_SAFE = re.compile(r"[A-Za-z0-9_.@-]+")


def namespace_segment(namespace: str) -> str:
    """The namespace as it appears in keys and user names: characters OpenWhisk allows in a
    namespace but ACL glob patterns or the key separator would misread are percent-encoded."""
    if not namespace:
        raise ValueError("a namespace is required")
    return namespace if _SAFE.fullmatch(namespace) else quote(namespace, safe="")


@dataclass(frozen=True)
class RedisKeys:
    """The deployment's keys: the scaler's own, and `namespace(ns)` for each namespace's."""

    prefix: str = "warmwhisk"

    def __post_init__(self) -> None:
        if not self.prefix or any(ch.isspace() or ch in "*?[]\\" for ch in self.prefix):
            raise ValueError(f"key prefix must be non-empty, no blanks or glob characters: {self.prefix!r}")

    def namespace(self, namespace: str) -> NamespaceKeys:
        return NamespaceKeys(self.prefix, namespace)

    def namespace_user(self, namespace: str) -> str:
        """The Redis ACL user of the namespace's hosts and routers."""
        return f"{self.prefix}-ns-{namespace_segment(namespace)}"

    @property
    def namespaces(self) -> str:
        return f"{self.prefix}:namespaces"

    def credential(self, namespace: str) -> str:
        return f"{self.prefix}:credential:{namespace_segment(namespace)}"

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


@dataclass(frozen=True)
class NamespaceKeys:
    """Every key of one namespace (the first table above)."""

    root: str  # the deployment's prefix
    namespace: str

    @property
    def prefix(self) -> str:
        return f"{self.root}:ns:{namespace_segment(self.namespace)}"

    @property
    def epoch(self) -> str:
        """The deployment's epoch (the scaler's key; only its admin user reads it)."""
        return RedisKeys(self.root).epoch

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

    def acl_rules(self) -> list[str]:
        """``ACL SETUSER <user> ...`` rules (after its passwords) giving the namespace's hosts and
        routers exactly their keys and commands: read-write on their keys, read-only on the
        scaler's limits and tombstones, no channels, nothing else."""
        p = self.prefix
        names = ("host:*", "hosts", "action-hosts:*", "slots", "unreachable:*", "action:*", "actions",
                 "stats:*", "durations:*", "waiting:*")  # fmt: skip
        read_write = [f"{p}:{name}" for name in names]
        read_only = [f"{p}:limits", f"{p}:removed:*"]
        return [
            "resetkeys", "resetchannels", "-@all",
            *(f"+{command}" for command in NAMESPACE_COMMANDS),
            *(f"~{pattern}" for pattern in read_write),
            *(f"%R~{pattern}" for pattern in read_only),
        ]  # fmt: skip
