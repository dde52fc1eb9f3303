"""Running action code on worker threads, each call bounded by its deadline.

The request thread hands the call to a worker and waits at most until the deadline, so a call
that never returns still gets a clear answer in time and holds up no other activation. Python
cannot kill a thread; the runaway call is interrupted with an asynchronous exception, which takes
effect at its next Python bytecode (a call blocked inside C code finishes that call first).
Such threads are counted as `stuck` until they end; /healthz and the metrics show them, and past
a budget the runtime stops taking work and exits (`Runtime.max_stuck`).
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
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
    """One call handed to a worker thread: its outcome, and a lock released when it is done.

    Interruptible only while it is still running, so an interrupt can never hit the worker's own
    loop or the next call on that thread.
    """

    def __init__(
        self, context: contextvars.Context, fn: Callable[[], Any], on_late_finish: Callable[[], None]
    ) -> None:
        self._context = context
        self._fn = fn
        self._on_late_finish = on_late_finish
        self.finished = threading.Lock()
        self.finished.acquire()  # released by the worker when the call ends
        self._state = threading.Lock()
        self._thread_id: int | None = None
        self._done = False
        self._abandoned = False  # the caller gave up at the deadline and counted us as stuck
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self._state:
            self._thread_id = threading.get_ident()
        try:
            self.result = self._context.run(self._fn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            self.error = exc
        finally:
            with self._state:
                self._done = True
                # Drop an interrupt that arrived too late to matter.
                _set_async_exc(self._thread_id, None)
                late = self._abandoned
            self.finished.release()
            if late:
                self._on_late_finish()

    def abandon(self) -> bool:
        """At the deadline: interrupt the call if it still runs. True if it was still running."""
        with self._state:
            if self._done:
                return False
            self._abandoned = True
            if self._thread_id is not None:
                _set_async_exc(self._thread_id, ActivationTimeout)
            return True


def _set_async_exc(thread_id: int | None, exc: type[BaseException] | None) -> None:
    if thread_id is None:
        return
    target = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


class _Worker:
    """A reusable thread that runs one handed-over call at a time (a lock per handoff: cheaper
    than a queue, a condition and a Future per activation)."""

    def __init__(self, pool: DeadlineRunner) -> None:
        self._pool = pool
        self._wake = threading.Lock()
        self._wake.acquire()
        self._call: _Call | None = None
        threading.Thread(target=self._loop, name="activation", daemon=True).start()

    def hand(self, call: _Call) -> None:
        self._call = call
        self._wake.release()

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            call, self._call = self._call, None
            assert call is not None
            call.run()
            self._pool._idle.append(self)  # list.append is atomic; the thread is reusable again


class DeadlineRunner:
    """Runs callables on worker threads; `call` returns their value or raises by the deadline."""

    def __init__(self) -> None:
        # Workers are created on demand and reused; admission control bounds how many run.
        self._idle: list[_Worker] = []
        self._stuck = 0
        self._lock = threading.Lock()

    @property
    def stuck(self) -> int:
        return self._stuck

    def call(self, fn: Callable[[], Any], timeout_s: float | None) -> Any:
        """Run `fn` in the caller's context on a worker; wait at most `timeout_s` seconds."""
        call = _Call(contextvars.copy_context(), fn, self._unstick)
        try:
            worker = self._idle.pop()
        except IndexError:
            worker = _Worker(self)
        worker.hand(call)
        if not call.finished.acquire(timeout=-1 if timeout_s is None else timeout_s):
            if call.abandon():
                with self._lock:
                    self._stuck += 1
                raise DeadlineExceeded
            call.finished.acquire()  # it finished just now
        if call.error is not None:
            raise call.error
        return call.result

    def _unstick(self) -> None:
        with self._lock:
            self._stuck -= 1


def now_ms() -> float:
    return time.time() * 1000.0
