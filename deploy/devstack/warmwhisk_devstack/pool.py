"""OpenWhisk's container-pool rules, without I/O (`../shared/reference/ow-invoker-deploy.md` §3;
apache/openwhisk core/invoker/.../containerpool/ContainerPool.scala, classic pool).

`Pool.place` decides where one run goes, in OpenWhisk's order:

1. a warm container of the same invoking namespace + action + version with a free concurrency
   slot (a container still initialising for that action counts: the run waits for its /init);
2. else a prewarm container of the same kind and memory (it gets the action's /init);
3. else a new container if the user-memory budget has room;
4. else the least recently used idle warm containers are removed until it has room (prewarms are
   never evicted), then a new container;
5. else the run waits for a slot (`None`).

A new version of an action never matches an old container (the key holds the version), so an
updated action is always served by fresh containers. The invoker applies each placement (starts,
initialises, removes containers) and calls `release` when a run ends and `remove` when a container
goes. `idle` lists containers idle past the idle time-out; `prewarms_wanted` says which stem cells
to start so each (kind, memory) has its count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActionKey:
    """What a warm container is reusable for: the invoking namespace and the action's revision."""

    namespace: str
    action: str  # "ns/name"
    version: str


@dataclass(frozen=True)
class StemCell:
    """`initialCount` prewarm containers of `kind` with `memory_mb` (the manifest's stemCells)."""

    kind: str
    memory_mb: int
    count: int


@dataclass
class Slot:
    """One container: a prewarm (no action yet) or an action's container."""

    id: str
    kind: str
    memory_mb: int
    action: ActionKey | None = None
    max_concurrent: int = 1
    active: int = 0
    last_used: float = 0.0
    # Started and, for an action's container, initialised: runs placed before wait for it.
    ready: bool = False

    @property
    def is_prewarm(self) -> bool:
        return self.action is None

    @property
    def has_room(self) -> bool:
        return self.active < self.max_concurrent


@dataclass(frozen=True)
class Placement:
    """Where a run goes. `kind`: "warm" (reuse `slot`), "prewarm" (`slot` was a prewarm, now the
    action's: /init it), "cold" (`slot` is new: start and /init it, after removing `evicted`)."""

    kind: str
    slot: Slot
    evicted: tuple[Slot, ...] = ()


@dataclass
class Pool:
    user_memory_mb: int
    stem_cells: tuple[StemCell, ...] = ()
    slots: dict[str, Slot] = field(default_factory=dict)
    _ids: Iterable[int] = field(default_factory=itertools.count, repr=False)

    # -- queries -------------------------------------------------------------------------------------
    @property
    def memory_used_mb(self) -> int:
        return sum(s.memory_mb for s in self.slots.values())

    def _fits(self, memory_mb: int, freed_mb: int = 0) -> bool:
        return self.memory_used_mb - freed_mb + memory_mb <= self.user_memory_mb

    def _new_id(self) -> str:
        return f"c{next(self._ids)}"  # type: ignore[call-overload]

    # -- decisions -----------------------------------------------------------------------------------
    def place(
        self, key: ActionKey, kind: str, memory_mb: int, max_concurrent: int, now: float
    ) -> Placement | None:
        """Reserve a slot for one run (its `active` counts it), or None: wait for `release`."""
        warm = [s for s in self.slots.values() if s.action == key and s.has_room]
        if warm:
            # Fill the busiest container first (fewer containers stay busy; idle ones time out).
            slot = max(warm, key=lambda s: (s.ready, s.active, s.last_used))
            return self._take(Placement("warm", slot), now)
        prewarm = next(
            (
                s
                for s in self.slots.values()
                if s.is_prewarm and s.ready and s.kind == kind and s.memory_mb == memory_mb
            ),
            None,
        )
        if prewarm is not None:
            prewarm.action, prewarm.max_concurrent, prewarm.ready = key, max_concurrent, False
            return self._take(Placement("prewarm", prewarm), now)
        evicted: list[Slot] = []
        if not self._fits(memory_mb):
            idle = sorted(
                (s for s in self.slots.values() if not s.is_prewarm and s.active == 0 and s.ready),
                key=lambda s: s.last_used,
            )
            freed = 0
            for slot in idle:
                if self._fits(memory_mb, freed):
                    break
                evicted.append(slot)
                freed += slot.memory_mb
            if not self._fits(memory_mb, freed):
                return None
            for slot in evicted:
                del self.slots[slot.id]
        slot = Slot(self._new_id(), kind, memory_mb, key, max_concurrent)
        self.slots[slot.id] = slot
        return self._take(Placement("cold", slot, tuple(evicted)), now)

    @staticmethod
    def _take(placement: Placement, now: float) -> Placement:
        placement.slot.active += 1
        placement.slot.last_used = now
        return placement

    def ready(self, slot_id: str) -> None:
        """The container answered (a prewarm started, or an action's container initialised)."""
        if slot_id in self.slots:
            self.slots[slot_id].ready = True

    def release(self, slot_id: str, now: float) -> None:
        slot = self.slots.get(slot_id)
        if slot is not None:
            slot.active = max(0, slot.active - 1)
            slot.last_used = now

    def remove(self, slot_id: str) -> Slot | None:
        return self.slots.pop(slot_id, None)

    def idle(self, now: float, idle_timeout_s: float) -> list[Slot]:
        """Action containers idle for longer than the time-out (the invoker removes them)."""
        return [
            s for s in self.slots.values()
            if not s.is_prewarm and s.ready and s.active == 0 and now - s.last_used >= idle_timeout_s
        ]  # fmt: skip

    def prewarms_wanted(self) -> list[Slot]:
        """New prewarm slots to start so each stem cell has its count (memory permitting); they
        are reserved here and become `ready` when their container answers."""
        wanted = []
        for cell in self.stem_cells:
            have = sum(
                1
                for s in self.slots.values()
                if s.is_prewarm and s.kind == cell.kind and s.memory_mb == cell.memory_mb
            )
            for _ in range(cell.count - have):
                if not self._fits(cell.memory_mb):
                    break
                slot = Slot(self._new_id(), cell.kind, cell.memory_mb)
                self.slots[slot.id] = slot
                wanted.append(slot)
        return wanted
