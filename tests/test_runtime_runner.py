"""Running action code on worker threads within a deadline (runner.py)."""

from __future__ import annotations

import threading
import time

import pytest

from warmwhisk_runtime.runner import MAX_WAIT_S, DeadlineExceeded, DeadlineRunner, seconds_left


def test_seconds_left() -> None:
    assert seconds_left(None, 1000.0) is None
    assert seconds_left(3500.0, 1000.0) == 2.5
    assert seconds_left(500.0, 1000.0) == 0.0  # passed: no time left
    assert seconds_left(1000.0 + (MAX_WAIT_S + 1) * 1000, 1000.0) is None  # absurdly far: none


def test_a_call_returns_its_value_or_raises_its_error_and_reuses_the_worker() -> None:
    runner = DeadlineRunner()
    assert runner.call(lambda: 41 + 1, 5.0) == 42
    with pytest.raises(ZeroDivisionError):
        runner.call(lambda: 1 / 0, 5.0)
    threads = threading.active_count()
    for _ in range(20):
        runner.call(lambda: None, 5.0)
    assert threading.active_count() == threads  # one reusable worker, not a thread per call


def test_a_call_past_its_deadline_is_interrupted_and_counted_as_stuck_until_it_ends() -> None:
    runner = DeadlineRunner()
    finished = threading.Event()

    def spin() -> None:
        try:
            while True:  # pure Python: the interrupt lands at the next bytecode
                pass
        finally:
            finished.set()

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        runner.call(spin, 0.2)
    assert time.monotonic() - started < 1.0
    assert finished.wait(2.0)
    deadline = time.monotonic() + 2.0
    while runner.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.stuck == 0


def test_a_call_blocked_in_c_stays_stuck_until_the_call_returns() -> None:
    runner = DeadlineRunner()
    with pytest.raises(DeadlineExceeded):
        runner.call(lambda: time.sleep(0.6), 0.1)  # sleep() is interrupted only when it returns
    assert runner.stuck == 1
    time.sleep(0.8)
    assert runner.stuck == 0


def test_the_callers_context_travels_with_the_call() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("v", default="none")
    var.set("the caller's")
    assert DeadlineRunner().call(var.get, 1.0) == "the caller's"
