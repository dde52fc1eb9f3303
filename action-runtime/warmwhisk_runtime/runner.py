"""Running action code on worker threads, each call bounded by its deadline.

A call is handed to a reusable worker thread (`DeadlineRunner.start`) and returns a `Call`, a
`Pending` outcome: the event loop registers a callback for when it is done and keeps the deadline
with a timer of its own; a thread can instead block on it (`DeadlineRunner.call`). Either way a
call that never returns still gets a clear answer in time and holds up no other activation.
Python cannot kill a thread; a runaway call is interrupted with an asynchronous exception, which
takes effect at its next Python bytecode (a call blocked inside C code finishes that call first).
Such threads are counted as `stuck` until they end; /healthz and the metrics show them, and past
a budget the runtime stops taking work and exits (`Runtime.max_stuck`).
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


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


class Pending(Protocol):
    """The outcome of work handed to another thread: a call on a worker, an item of a batch.

    Whoever waits for it either blocks (`wait`) or registers a callback (`when_done`); at the
    activation's deadline it calls `expire`, and, unless that returned True, reads `outcome`."""

    # Whether the waiting side keeps the deadline (False: the work keeps it itself, e.g. a
    # forward to a model host, whose socket time-outs end at the deadline).
    enforces_deadline: bool

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, on the thread that completes the work (now, if done already).
        It may still come after `expire` returned True: the waiter then ignores it."""
        ...

    def wait(self, timeout_s: float | None) -> bool:
        """Block until done (True) or for at most `timeout_s` seconds (False)."""
        ...

    def expire(self) -> bool:
        """At the deadline: True if the work was still running (it is interrupted or dropped, and
        the answer is the deadline's); False if it finished meanwhile (read `outcome`)."""
        ...

    def outcome(self) -> Any:
        """The work's result, or raises what it raised. Only once done."""
        ...


class Call:
    """One call handed to a worker thread (a `Pending`): its outcome, and a lock released when it
    is done.

    Interruptible only while it is still running, so an interrupt can never hit the worker's own
    loop or the next call on that thread.
    """

    def __init__(
        self, runner: DeadlineRunner, context: contextvars.Context, fn: Callable[[], Any], interruptible: bool
    ) -> None:
        self._runner = runner
        self._context = context
        self._fn = fn
        self.enforces_deadline = interruptible
        self.finished = threading.Lock()
        self.finished.acquire()  # released by the worker when the call ends
        self._state = threading.Lock()
        self._thread_id: int | None = None
        self._done = False
        self._abandoned = False  # the deadline came first and counted us as stuck
        self._callback: Callable[[], None] | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> Callable[[], None] | None:
        """On the worker: run the call. Returns the done-callback to call once the worker is
        reusable again (so that the next activation it wakes finds the worker idle)."""
        with self._state:
            self._thread_id = threading.get_ident()
            expired = self._abandoned  # the deadline came before the worker took the call up
        try:
            if not expired:
                self.result = self._context.run(self._fn)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter, who re-raises it
            self.error = exc
        finally:
            with self._state:
                self._done = True
                late = self._abandoned
                if late:  # drop an interrupt that arrived too late to matter
                    _set_async_exc(self._thread_id, None)
                callback = self._callback
            self.finished.release()
        if late:
            self._runner._unstick()
            return None
        return callback

    def when_done(self, callback: Callable[[], None]) -> None:
        with self._state:
            if not self._done:
                self._callback = callback
                return
            if self._abandoned:
                return
        callback()

    def wait(self, timeout_s: float | None) -> bool:
        if not self.finished.acquire(timeout=-1 if timeout_s is None else timeout_s):
            return False
        self.finished.release()  # done for good: later waits return at once
        return True

    def expire(self) -> bool:
        """Interrupt the call if it still runs (it then counts as stuck until it ends)."""
        with self._state:
            if self._done:
                return False
            self._abandoned = True
            if self._thread_id is not None:
                _set_async_exc(self._thread_id, ActivationTimeout)
        self._runner._stick()
        return True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


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
        self._call: Call | None = None
        threading.Thread(target=self._loop, name="activation", daemon=True).start()

    def hand(self, call: Call) -> None:
        self._call = call
        self._wake.release()

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            call, self._call = self._call, None
            assert call is not None
            done = call.run()
            self._pool._idle.append(self)  # list.append is atomic; the thread is reusable again
            if done is not None:
                done()


class DeadlineRunner:
    """Runs callables on worker threads: `start` hands one over and returns its `Call`; `call`
    also waits for it, returning its value or raising by the deadline."""

    def __init__(self) -> None:
        # Workers are created on demand and reused; admission control bounds how many run.
        self._idle: list[_Worker] = []
        self._stuck = 0
        self._lock = threading.Lock()

    @property
    def stuck(self) -> int:
        return self._stuck

    def start(self, fn: Callable[[], Any], interruptible: bool = True) -> Call:
        """Run `fn` on a worker, in a copy of the caller's context. `interruptible`: the deadline
        interrupts it (action code); otherwise it keeps its deadline itself (runtime code)."""
        call = Call(self, contextvars.copy_context(), fn, interruptible)
        try:
            worker = self._idle.pop()
        except IndexError:
            worker = _Worker(self)
        worker.hand(call)
        return call

    def call(self, fn: Callable[[], Any], timeout_s: float | None) -> Any:
        """Run `fn` in the caller's context on a worker; wait at most `timeout_s` seconds."""
        return wait_for(self.start(fn), timeout_s)

    def _stick(self) -> None:
        with self._lock:
            self._stuck += 1

    def _unstick(self) -> None:
        with self._lock:
            self._stuck -= 1


def wait_for(pending: Pending, timeout_s: float | None) -> Any:
    """Block for `pending`'s outcome; DeadlineExceeded once `timeout_s` passed (if it keeps one)."""
    if not pending.wait(timeout_s if pending.enforces_deadline else None) and pending.expire():
        raise DeadlineExceeded
    pending.wait(None)  # finished just as the deadline came
    return pending.outcome()


def now_ms() -> float:
    return time.time() * 1000.0
