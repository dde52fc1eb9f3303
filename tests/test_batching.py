"""Micro-batching: the gathering rule (pure), and the batcher with real threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from warmwhisk_runtime.batching import Batcher, BatchPolicy, should_wait
from warmwhisk_runtime.runner import DeadlineExceeded

POLICY = BatchPolicy(max_batch_size=4, max_batch_delay_ms=10)


@pytest.mark.parametrize(
    ("gathered", "in_flight", "waited_s", "last_size", "since_last_s", "wait"),
    [
        (1, 1, 0.0, 0, 100.0, False),  # a lone activation on an idle action runs at once
        (1, 3, 0.0, 0, 100.0, True),  # others are in flight: worth waiting for them
        (1, 1, 0.0, 4, 0.002, True),  # the last batch was full and just ended: more are coming
        (1, 1, 0.0, 1, 0.002, False),  # ...but not after a batch of one
        (3, 3, 0.0, 3, 0.002, False),  # everyone expected is here: go now
        (3, 3, 0.0, 4, 0.002, True),  # one of the last batch's clients is not back yet
        (4, 9, 0.0, 4, 0.0, False),  # full
        (2, 9, 0.010, 4, 0.0, False),  # waited the whole delay
    ],
)
def test_should_wait(gathered, in_flight, waited_s, last_size, since_last_s, wait):
    assert should_wait(POLICY, gathered, in_flight, waited_s, last_size, since_last_s) is wait


def test_concurrent_items_are_batched_and_results_split_back_in_order():
    calls: list[list[int]] = []

    def double(batch: list[int]) -> list[int]:
        calls.append(list(batch))
        time.sleep(0.02)
        return [x * 2 for x in batch]

    batcher = Batcher(double, BatchPolicy(max_batch_size=8, max_batch_delay_ms=20))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda x: batcher.submit(x, 5.0), range(32)))
    assert results == [x * 2 for x in range(32)]
    assert max(len(c) for c in calls) > 1 and all(len(c) <= 8 for c in calls)
    assert sorted(x for c in calls for x in c) == list(range(32))


def test_a_lone_item_does_not_wait_for_the_batch_delay():
    batcher = Batcher(lambda batch: batch, BatchPolicy(max_batch_size=32, max_batch_delay_ms=500))
    started = time.monotonic()
    assert batcher.submit("only", 5.0) == "only"
    assert time.monotonic() - started < 0.25


def test_an_error_in_one_item_fails_only_that_item():
    def check(batch: list[int]) -> list:
        return [ValueError(f"bad item {x}") if x < 0 else x for x in batch]

    batcher = Batcher(check, BatchPolicy(max_batch_size=8, max_batch_delay_ms=20))
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.submit, x, 5.0) for x in (1, -1, 2, 3)]
    assert futures[0].result() == 1 and futures[2].result() == 2 and futures[3].result() == 3
    with pytest.raises(ValueError, match="bad item -1"):
        futures[1].result()


def test_when_the_whole_call_raises_items_are_retried_alone():
    seen: list[list[int]] = []

    def fragile(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        if 13 in batch:
            raise RuntimeError("unlucky")
        return batch

    batcher = Batcher(fragile, BatchPolicy(max_batch_size=8, max_batch_delay_ms=30))
    barrier = threading.Barrier(4)

    def submit(x: int) -> int:
        barrier.wait()
        return batcher.submit(x, 5.0)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(submit, x) for x in (1, 13, 2, 3)]
    assert [f.result() for f in futures if f is not futures[1]] == [1, 2, 3]
    with pytest.raises(RuntimeError, match="unlucky"):
        futures[1].result()


def test_a_wrong_number_of_results_is_a_clear_error():
    batcher = Batcher(lambda batch: batch[:-1], BatchPolicy(max_batch_size=4, max_batch_delay_ms=1))
    with pytest.raises(TypeError, match="must return a list of 1 results, got 0"):
        batcher.submit(1, 5.0)


def test_each_item_keeps_its_own_deadline():
    release = threading.Event()

    def slow(batch: list[str]) -> list[str]:
        release.wait(5)
        return batch

    batcher = Batcher(slow, BatchPolicy(max_batch_size=2, max_batch_delay_ms=1))
    with ThreadPoolExecutor(2) as pool:
        patient = pool.submit(batcher.submit, "patient", 5.0)
        time.sleep(0.05)
        hurried = pool.submit(batcher.submit, "hurried", 0.2)
        with pytest.raises(DeadlineExceeded):
            hurried.result()
        release.set()
        assert patient.result() == "patient"
