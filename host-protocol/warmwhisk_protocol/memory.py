"""The registry in memory: the same behaviour as ``RedisRegistry``, for tests that drive the router
or the scaler's control loop tick by tick with an injected clock and no Redis.

Semantics follow the Lua scripts one to one: a heartbeat replaces the record for
``heartbeat_ttl_s`` and seeds a missing slot counter; a removed host leaves a tombstone for two
TTLs; ``acquire`` packs onto the fullest live warm host below min(its cap, the scaler's limit),
skipping hosts reported unreachable; ``release`` never goes below zero. ``lose_state()`` plays a
Redis restart without persistence (every key gone, a new epoch).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .keys import DURATION_SAMPLES
from .records import HostRecord, PoolStats, Slot, check_heartbeat


@dataclasses.dataclass
class _Stats:
    acquired: int = 0
    rejected: int = 0
    completed: int = 0
    timed: int = 0
    duration_ms_sum: float = 0.0
    recent_ms: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=DURATION_SAMPLES))


class InMemoryRegistry:
    """``Registry`` without Redis. Thread-safe; time comes from ``clock`` (unix seconds)."""

    def __init__(self, heartbeat_ttl_s: float = 3.0, clock: Callable[[], float] = time.time) -> None:
        if heartbeat_ttl_s <= 0:
            raise ValueError("heartbeat_ttl_s must be positive")
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self.lose_state()

    def lose_state(self) -> None:
        """Forget everything, as Redis restarted without persistence does."""
        with getattr(self, "_lock", threading.Lock()):
            self._records: dict[str, tuple[HostRecord, float]] = {}  # id -> (record, expires at)
            self._slots: dict[str, int] = {}
            self._limits: dict[str, int] = {}
            self._tombstones: dict[str, float] = {}
            self._unreachable: dict[str, float] = {}
            self._actions: dict[str, str] = {}  # key -> spec as JSON (a copy, as Redis stores it)
            self._stats: dict[str, _Stats] = {}
            self._waiting: dict[str, dict[str, float]] = {}
            self._epoch: str | None = None

    # -- hosts ---------------------------------------------------------------------------------
    def _live(self, host_id: str, now: float) -> HostRecord | None:
        entry = self._records.get(host_id)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def heartbeat(self, record: HostRecord) -> bool:
        check_heartbeat(record)
        with self._lock:
            now = self._clock()
            if self._tombstones.get(record.host_id, 0.0) > now:
                return False
            stamped = dataclasses.replace(record, heartbeat_at=now, slots_in_use=0, scaler_limit=None)
            self._records[record.host_id] = (stamped, now + self.heartbeat_ttl_s)
            self._slots.setdefault(record.host_id, record.reported_in_flight)
            return True

    def _view(self, record: HostRecord, now: float) -> HostRecord:
        return dataclasses.replace(
            record,
            slots_in_use=self._slots.get(record.host_id, 0),
            scaler_limit=self._limits.get(record.host_id),
            unreachable=self._unreachable.get(record.host_id, 0.0) > now,
        )

    def hosts(self) -> list[HostRecord]:
        with self._lock:
            now = self._clock()
            live = []
            for host_id in sorted(self._records):
                record = self._live(host_id, now)
                if record is None:  # expired: pruned as ``hosts`` does in Redis (the limit stays)
                    del self._records[host_id]
                    self._slots.pop(host_id, None)
                    continue
                live.append(self._view(record, now))
            return live

    def host(self, host_id: str) -> HostRecord | None:
        with self._lock:
            now = self._clock()
            record = self._live(host_id, now)
            return None if record is None else self._view(record, now)

    def remove_host(self, host_id: str) -> bool:
        with self._lock:
            now = self._clock()
            existed = self._live(host_id, now) is not None
            self._records.pop(host_id, None)
            self._slots.pop(host_id, None)
            self._limits.pop(host_id, None)
            self._tombstones[host_id] = now + 2 * self.heartbeat_ttl_s
            return existed

    def report_unreachable(self, host_id: str) -> None:
        with self._lock:
            self._unreachable[host_id] = self._clock() + 2 * self.heartbeat_ttl_s

    def set_limit(self, host_id: str, limit: int) -> bool:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        with self._lock:
            if self._live(host_id, self._clock()) is None:
                return False
            self._limits[host_id] = limit
            return True

    def preset_limit(self, host_id: str, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        with self._lock:
            self._limits[host_id] = limit

    def limited_hosts(self) -> set[str]:
        with self._lock:
            return set(self._limits)

    # -- routing -------------------------------------------------------------------------------
    def acquire(self, action: str, avoid: Iterable[str] = ()) -> Slot | None:
        skip = set(avoid)
        with self._lock:
            now = self._clock()
            stats = self._stats.setdefault(action, _Stats())
            best: HostRecord | None = None
            best_used = -1
            for host_id in sorted(self._records):
                record = self._live(host_id, now)
                if record is None or action not in record.actions or record.state != "warm":
                    continue
                if host_id in skip or self._unreachable.get(host_id, 0.0) > now:
                    continue
                limit = min(record.limit, self._limits.get(host_id, record.limit))
                used = self._slots.get(host_id, 0)
                if used < limit and used > best_used:  # ties: the lowest id (sorted order)
                    best, best_used = record, used
            if best is None:
                stats.rejected += 1
                return None
            stats.acquired += 1
            self._slots[best.host_id] = best_used + 1
            return Slot(best.host_id, best.address, action, best_used + 1, keepalive_s=best.keepalive_s,
                        registered=action in self._actions, token=best.token or None)  # fmt: skip

    def release(self, slot: Slot, duration_s: float | None = None) -> bool:
        with self._lock:
            released = self._slots.get(slot.host_id, 0) > 0
            if released:
                self._slots[slot.host_id] -= 1
            stats = self._stats.setdefault(slot.action, _Stats())
            stats.completed += 1
            if duration_s is not None:
                stats.timed += 1
                stats.duration_ms_sum += duration_s * 1000.0
                stats.recent_ms.appendleft(duration_s * 1000.0)
            return released

    def start_waiting(self, action: str, wait_id: str, until: float) -> None:
        with self._lock:
            self._waiting.setdefault(action, {})[wait_id] = until

    def stop_waiting(self, action: str, wait_id: str) -> None:
        with self._lock:
            self._waiting.get(action, {}).pop(wait_id, None)

    # -- pools ---------------------------------------------------------------------------------
    def pool_stats(self, action: str) -> PoolStats:
        with self._lock:
            s = self._stats.get(action, _Stats())
            return PoolStats(action, s.acquired, s.rejected, s.completed, s.timed, s.duration_ms_sum,
                             tuple(s.recent_ms))  # fmt: skip

    def waiting(self, action: str) -> int:
        with self._lock:
            now = self._clock()
            waits = self._waiting.get(action, {})
            for wait_id in [w for w, until in waits.items() if until <= now]:
                del waits[wait_id]
            return len(waits)

    # -- actions -------------------------------------------------------------------------------
    def register_action(self, action: str, spec: Mapping[str, Any]) -> None:
        with self._lock:
            self._actions[action] = json.dumps(dict(spec), sort_keys=True)

    def action_spec(self, action: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._actions.get(action)
        return None if raw is None else json.loads(raw)

    def registered_actions(self) -> list[str]:
        with self._lock:
            return sorted(self._actions)

    def unregister_action(self, action: str) -> None:
        with self._lock:
            self._actions.pop(action, None)

    def epoch(self) -> str:
        with self._lock:
            if self._epoch is None:
                self._epoch = secrets.token_hex(8)
            return self._epoch

    def close(self) -> None:
        pass
