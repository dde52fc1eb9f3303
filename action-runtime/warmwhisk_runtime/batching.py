"""Micro-batching: concurrent activations of one action run as one call, then split back.

An action opts in by decorating its batch entry point:

    @warmwhisk.batch(max_batch_size=16, max_batch_delay_ms=5)
    def main(batch, models):          # batch: a list of activation arguments
        return [...]                   # one result (or Exception) per item, in order

Gathering rule (`should_wait`, pure): a batch runs as soon as it is full, or as soon as it holds
every item expected: the activations of the action in flight, or, right after a batch of
several, as many as that batch had (closed-loop clients are about to send again). Otherwise it
waits for more, at most `max_batch_delay_ms` after its first item. A lone activation on an idle
action runs at once.

Errors: an item whose result is an Exception fails alone. If the whole call raises, each item
is retried on its own, so only the items that fail by themselves fail. Deadlines: every
activation waits for its result only until its own deadline; items already past theirs when a
batch forms are dropped from it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from .runner import DeadlineExceeded, wait_for

BATCH_ATTRIBUTE = "__warmwhisk_batch__"


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_batch_delay_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.max_batch_delay_ms < 0:
            raise ValueError("max_batch_delay_ms must not be negative")


def batch(max_batch_size: int = 16, max_batch_delay_ms: float = 5.0) -> Callable[[Callable], Callable]:
    """Mark `fn(batch[, models]) -> list` as a batch entry point."""
    policy = BatchPolicy(max_batch_size, max_batch_delay_ms)

    def mark(fn: Callable) -> Callable:
        setattr(fn, BATCH_ATTRIBUTE, policy)
        return fn

    return mark


def run_valid(
    batch: list[Any], parse: Callable[[Any], Any], compute: Callable[[list[Any]], list[Any]]
) -> list[Any]:
    """The usual body of a batch entry point: `parse` each item (a ValueError fails that item
    alone), `compute` once over the parsed valid items, and return results in batch order."""
    parsed: list[Any] = []
    for args in batch:
        try:
            parsed.append(parse(args))
        except ValueError as exc:
            parsed.append(exc)
    valid = [item for item in parsed if not isinstance(item, ValueError)]
    answers = iter(compute(valid) if valid else [])
    return [item if isinstance(item, ValueError) else next(answers) for item in parsed]


def batch_policy(fn: Callable) -> BatchPolicy | None:
    return getattr(fn, BATCH_ATTRIBUTE, None)


def should_wait(
    policy: BatchPolicy,
    gathered: int,
    in_flight: int,
    waited_s: float,
    last_batch_size: int,
    since_last_batch_s: float,
) -> bool:
    """Whether a partial batch of `gathered` items waits for more (pure; time is passed in)."""
    delay_s = policy.max_batch_delay_ms / 1000.0
    if gathered >= policy.max_batch_size or waited_s >= delay_s:
        return False
    # Expected items: those in flight now, or as many as the last batch if it just ended (its
    # clients are about to send again). Once they are all here, waiting longer gains nothing.
    expected = in_flight
    if last_batch_size > 1 and since_last_batch_s < delay_s:
        expected = max(expected, last_batch_size)
    return gathered < expected


@dataclass
class _Item:
    args: Any
    future: Future
    deadline: float | None  # time.monotonic() seconds


class BatchItem:
    """One activation's place in a batch, as a `runner.Pending`: done when its batch answered it.

    It counts in the batcher's `in_flight` until its waiter has the answer (`outcome`) or gave up
    at the deadline (`expire`)."""

    enforces_deadline = True

    def __init__(self, batcher: Batcher, item: _Item) -> None:
        self._batcher = batcher
        self._future = item.future
        self._settled = False

    def when_done(self, callback: Callable[[], None]) -> None:
        self._future.add_done_callback(lambda _: callback())

    def wait(self, timeout_s: float | None) -> bool:
        try:
            self._future.exception(timeout=timeout_s)
        except FutureTimeout:
            return False
        except CancelledError:
            pass
        return True

    def expire(self) -> bool:
        if self._future.done():
            return False
        self._future.cancel()  # not yet taken into a batch: it never runs
        self._settle()
        return True

    def outcome(self) -> Any:
        self._settle()
        return self._future.result()

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._batcher._answered()


class Batcher:
    """One per batched action: a thread that gathers items and calls the batch entry point.

    Submitting threads append to `_pending`; while the batcher gathers, they wake it only when
    its batch may run (full, or every expected item here), so a batch of N costs one wake-up,
    not N. `_in_flight` counts the action's activations in the runtime, from submit until their
    waiter has its answer: right after a batch, the answered ones still count while their
    answers go out, which is what lets closed-loop clients come back into one batch."""

    def __init__(
        self,
        call: Callable[[list[Any]], list[Any]],
        policy: BatchPolicy,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._call = call
        self.policy = policy
        self._on_batch = on_batch
        self._ready = threading.Condition(threading.Lock())
        self._pending: deque[_Item] = deque()
        self._in_flight = 0
        self._gathering_since: float | None = None  # when the batcher took up the oldest item
        self._last_size = 0
        self._last_end = 0.0
        threading.Thread(target=self._loop, name="batcher", daemon=True).start()

    def enqueue(self, args: Any, timeout_s: float | None) -> BatchItem:
        """Put `args` into the next batch; its `BatchItem` is done once that batch answered it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        item = _Item(args, Future(), deadline)
        with self._ready:
            self._pending.append(item)
            self._in_flight += 1
            # An idle batcher wakes for any item; a gathering one only once it may run.
            if self._gathering_since is None or not self._wait_for_more(time.monotonic()):
                self._ready.notify()
        return BatchItem(self, item)

    def submit(self, args: Any, timeout_s: float | None) -> Any:
        """Run `args` in a batch; return its result, raise its exception or DeadlineExceeded."""
        return wait_for(self.enqueue(args, timeout_s), timeout_s)

    def _answered(self) -> None:
        with self._ready:
            self._in_flight -= 1

    def _wait_for_more(self, now: float) -> bool:
        """should_wait for the pending items (call with the lock held, while gathering)."""
        assert self._gathering_since is not None
        return should_wait(self.policy, len(self._pending), self._in_flight, now - self._gathering_since,
                           self._last_size, now - self._last_end)  # fmt: skip

    def _gather(self) -> list[_Item]:
        delay_s = self.policy.max_batch_delay_ms / 1000.0
        with self._ready:
            while not self._pending:
                self._ready.wait()
            # The delay counts from when the batcher takes the item up: one that arrived during
            # the previous batch may still wait for the clients that batch is answering.
            self._gathering_since = now = time.monotonic()
            while self._wait_for_more(now):
                self._ready.wait(timeout=max(delay_s - (now - self._gathering_since), 0.0001))
                now = time.monotonic()
            self._gathering_since = None
            size = min(len(self._pending), self.policy.max_batch_size)
            return [self._pending.popleft() for _ in range(size)]

    def _loop(self) -> None:
        while True:
            items = self._gather()
            now = time.monotonic()
            live = [i for i in items if i.future.set_running_or_notify_cancel()]
            expired = [i for i in live if i.deadline is not None and i.deadline <= now]
            for item in expired:
                item.future.set_exception(DeadlineExceeded())
            live = [i for i in live if i not in expired]
            if live:
                self._run(live)
            self._last_size = len(live)
            self._last_end = time.monotonic()
            if live:
                self._on_batch(len(live))

    def _run(self, items: list[_Item]) -> None:
        try:
            results = self._checked_call([i.args for i in items])
        except BaseException:  # noqa: BLE001 - isolate the failing items, one call each
            if len(items) == 1:
                self._settle(items[0], _exception())
                return
            for item in items:
                try:
                    self._settle(item, self._checked_call([item.args])[0])
                except BaseException:  # noqa: BLE001
                    self._settle(item, _exception())
            return
        for item, result in zip(items, results, strict=True):
            self._settle(item, result)

    def _checked_call(self, args: list[Any]) -> list[Any]:
        results = self._call(args)
        if not isinstance(results, (list, tuple)) or len(results) != len(args):
            got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
            raise TypeError(f"the batch entry point must return a list of {len(args)} results, got {got}")
        return list(results)

    @staticmethod
    def _settle(item: _Item, result: Any) -> None:
        if isinstance(result, BaseException):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)


def _exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc
