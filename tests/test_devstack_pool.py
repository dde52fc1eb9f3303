"""`warmwhisk_devstack.pool`: OpenWhisk's container-pool rules, decision by decision (no I/O)."""

from __future__ import annotations

import pytest

from warmwhisk_devstack.pool import ActionKey, Pool, StemCell

KIND = "python:3-ml"
V1 = ActionKey("guest", "guest/classify", "0.0.1")
V2 = ActionKey("guest", "guest/classify", "0.0.2")
OTHER_NS = ActionKey("other", "guest/classify", "0.0.1")  # same action, invoked by another namespace


def started(pool: Pool) -> Pool:
    """Every slot's container answered (started prewarms, initialised action containers)."""
    for slot_id in list(pool.slots):
        pool.ready(slot_id)
    return pool


def test_a_warm_container_of_the_same_namespace_action_and_version_is_reused() -> None:
    pool = Pool(user_memory_mb=1024)
    first = pool.place(V1, KIND, 256, 1, now=0)
    assert first is not None and first.kind == "cold"
    pool.ready(first.slot.id)
    pool.release(first.slot.id, now=1)
    again = pool.place(V1, KIND, 256, 1, now=2)
    assert again is not None and (again.kind, again.slot.id) == ("warm", first.slot.id)


def test_a_new_version_or_another_invoking_namespace_never_gets_an_old_container() -> None:
    pool = Pool(user_memory_mb=4096)
    first = pool.place(V1, KIND, 256, 4, now=0)
    assert first is not None
    pool.ready(first.slot.id)
    pool.release(first.slot.id, now=1)
    for key in (V2, OTHER_NS):
        placed = pool.place(key, KIND, 256, 4, now=2)
        assert placed is not None and placed.kind == "cold" and placed.slot.id != first.slot.id


def test_concurrency_slots_fill_one_container_before_a_second_starts() -> None:
    pool = Pool(user_memory_mb=4096)
    placements = [pool.place(V1, KIND, 256, 3, now=i) for i in range(4)]
    assert [p.kind for p in placements if p] == ["cold", "warm", "warm", "cold"]
    first = placements[0]
    assert first is not None and first.slot.active == 3
    # One activation per container at concurrency 1: the stock setting.
    stock = Pool(user_memory_mb=4096)
    kinds = [p.kind for p in (stock.place(V1, KIND, 256, 1, now=i) for i in range(3)) if p]
    assert kinds == ["cold", "cold", "cold"] and len(stock.slots) == 3


def test_runs_placed_on_a_container_still_initialising_wait_for_it() -> None:
    pool = Pool(user_memory_mb=4096)
    cold = pool.place(V1, KIND, 256, 2, now=0)
    warm = pool.place(V1, KIND, 256, 2, now=0)
    assert cold is not None and warm is not None
    assert warm.kind == "warm" and warm.slot is cold.slot and not warm.slot.ready


def test_a_prewarm_of_the_same_kind_and_memory_is_taken_before_a_cold_start() -> None:
    pool = Pool(user_memory_mb=2048, stem_cells=(StemCell(KIND, 256, 2),))
    wanted = pool.prewarms_wanted()
    assert len(wanted) == 2 and all(s.is_prewarm for s in wanted)
    started(pool)
    other_memory = pool.place(V1, KIND, 512, 1, now=0)
    assert other_memory is not None and other_memory.kind == "cold"  # memory must match
    taken = pool.place(V2, KIND, 256, 1, now=1)
    assert taken is not None and taken.kind == "prewarm" and taken.slot.action == V2
    assert not taken.slot.ready  # it needs the action's /init
    # The stem cell is short of one now: one more is wanted.
    assert [s.memory_mb for s in pool.prewarms_wanted()] == [256]


def test_a_prewarm_not_yet_started_is_not_taken() -> None:
    pool = Pool(user_memory_mb=2048, stem_cells=(StemCell(KIND, 256, 1),))
    pool.prewarms_wanted()  # reserved, its container still starting
    placed = pool.place(V1, KIND, 256, 1, now=0)
    assert placed is not None and placed.kind == "cold"


def test_when_memory_is_short_the_least_recently_used_idle_containers_go_never_prewarms() -> None:
    pool = Pool(user_memory_mb=1024, stem_cells=(StemCell(KIND, 256, 1),))
    pool.prewarms_wanted()
    started(pool)
    # 384 MB: not the stem cell's memory, so the prewarm stays a prewarm.
    a = pool.place(ActionKey("guest", "guest/a", "0.0.1"), KIND, 384, 1, now=0)
    b = pool.place(ActionKey("guest", "guest/b", "0.0.1"), KIND, 384, 1, now=1)
    assert a is not None and b is not None
    started(pool)
    pool.release(a.slot.id, now=5)
    pool.release(b.slot.id, now=3)  # b idle longer: evicted first
    assert pool.memory_used_mb == 1024
    placed = pool.place(ActionKey("guest", "guest/c", "0.0.1"), KIND, 384, 1, now=6)
    assert placed is not None and placed.kind == "cold"
    assert [s.id for s in placed.evicted] == [b.slot.id]
    assert a.slot.id in pool.slots and any(s.is_prewarm for s in pool.slots.values())
    assert pool.memory_used_mb == 1024


def test_with_every_container_busy_and_no_memory_the_run_waits() -> None:
    pool = Pool(user_memory_mb=512)
    busy = [pool.place(ActionKey("guest", f"guest/a{i}", "0.0.1"), KIND, 256, 1, now=i) for i in range(2)]
    assert all(busy)
    assert pool.place(V1, KIND, 256, 1, now=3) is None
    first = busy[0]
    assert first is not None
    pool.ready(first.slot.id)
    pool.release(first.slot.id, now=4)
    placed = pool.place(V1, KIND, 256, 1, now=5)
    assert placed is not None and placed.evicted and placed.evicted[0].id == first.slot.id


def test_idle_containers_past_the_time_out_are_listed_busy_and_prewarms_never() -> None:
    pool = Pool(user_memory_mb=4096, stem_cells=(StemCell(KIND, 256, 1),))
    pool.prewarms_wanted()
    idle = pool.place(V1, KIND, 256, 1, now=0)
    busy = pool.place(V2, KIND, 256, 1, now=0)
    assert idle is not None and busy is not None
    started(pool)
    pool.release(idle.slot.id, now=10)
    assert pool.idle(now=69, idle_timeout_s=60) == []
    assert [s.id for s in pool.idle(now=70, idle_timeout_s=60)] == [idle.slot.id]


@pytest.mark.parametrize("budget", [100, 255])
def test_a_run_bigger_than_the_whole_budget_waits_forever_rather_than_overcommit(budget: int) -> None:
    pool = Pool(user_memory_mb=budget)
    assert pool.place(V1, KIND, 256, 1, now=0) is None
    assert pool.slots == {}


def test_stem_cells_stop_at_the_memory_budget() -> None:
    pool = Pool(user_memory_mb=600, stem_cells=(StemCell(KIND, 256, 4),))
    assert len(pool.prewarms_wanted()) == 2
    assert pool.prewarms_wanted() == []
