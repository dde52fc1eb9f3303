"""Running action code on worker threads, each call bounded by its deadline.

The request thread hands the call to a worker and waits at most until the deadline, so a call
that never returns still gets a clear answer in time and holds up no other activation. Python
cannot kill a thread; the runaway call is interrupted with an asynchronous exception, which takes
effect at its next Python bytecode (a call blocked inside C code finishes that call first).
Such threads are counted as `stuck` until they end; /healthz and the metrics show them.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any


class ActivationTimeout(BaseException):
    """Raised inside a call that ran past its deadline. A BaseException, so that a bare
    `except Exception` in action code does not swallow it."""


class DeadlineExceeded(Exception):
    """The call did not finish before its deadline."""


# Deadlines further away than this are no deadline (lock timeouts overflow on absurd values).
MAX_WAIT_S = 1_000_000.0


def seconds_left(deadline_ms: float | None, now_ms: float) -> float | None:
    """Seconds from `now_ms` to `deadline_ms` (epoch ms), never negative; None for no deadline."""
    if deadline_ms is None:
        return None
    left = (deadline_ms - now_ms) / 1000.0
    return None if left > MAX_WAIT_S else max(0.0, left)


class _Call:
    """One call on a worker thread, interruptible only while it is still running."""

    def __init__(self, context: contextvars.Context, fn: Callable[[], Any]) -> None:
        self._context = context
        self._fn = fn
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._done = False

    def run(self) -> Any:
        with self._lock:
            self._thread_id = threading.get_ident()
        try:
            return self._context.run(self._fn)
        finally:
            with self._lock:
                self._done = True
                # Drop an interrupt that arrived too late to matter, so it cannot hit the
                # pool's own code (or the next call) on this thread.
                _set_async_exc(self._thread_id, None)

    def interrupt(self) -> bool:
        """Raise ActivationTimeout in the running call; False if it had already finished."""
        with self._lock:
            if self._done or self._thread_id is None:
                return False
            _set_async_exc(self._thread_id, ActivationTimeout)
            return True


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    target = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


class DeadlineRunner:
    """Runs callables on a thread pool; `call` returns their value or raises by the deadline."""

    def __init__(self, max_workers: int) -> None:
        # Threads are created on demand and reused; the bound leaves room for stuck threads.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="activation")
        self._stuck = 0
        self._lock = threading.Lock()

    @property
    def stuck(self) -> int:
        return self._stuck

    def call(self, fn: Callable[[], Any], timeout_s: float | None) -> Any:
        """Run `fn` in the caller's context on a worker; wait at most `timeout_s` seconds."""
        call = _Call(contextvars.copy_context(), fn)
        future: Future[Any] = self._pool.submit(call.run)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            if future.cancel():  # never started: nothing to interrupt
                raise DeadlineExceeded from None
            if call.interrupt():
                with self._lock:
                    self._stuck += 1
                future.add_done_callback(self._unstick)
            raise DeadlineExceeded from None

    def _unstick(self, _future: Future[Any]) -> None:
        with self._lock:
            self._stuck -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def now_ms() -> float:
    return time.time() * 1000.0
