"""The action port's routes, on the worker's event loop: POST /init and POST /run, nothing else.

A /run costs the loop one hand-off: it is parsed and admitted here (`Runtime.prepare_run`,
`Runtime.launch`), its call goes to an activation thread (or into a batch, or, in routed mode, a
forward on a worker thread), and its answer is made here once that call is done
(`Runtime.finish_run`). The deadline is a timer on the loop: when it fires first, the call is
interrupted and the activation answered at once, also when its thread stays stuck. Work that
blocks goes to a worker thread whole: /init, and a /run whose action a model host is still
loading. A /run that finds every slot taken waits here, holding no thread, until one is free or
its deadline passes.

Every answer is JSON with a Content-Length, also when something here fails (500): never an
HTML error page.
"""

from __future__ import annotations

import asyncio
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .contract import INTERNAL_ERROR
from .protocol import Request, Respond, Response
from .runner import DeadlineRunner, Pending, now_ms, seconds_left
from .runtime import ActiveRun, RunRequest, Runtime, error_response


@dataclass(eq=False)
class _Parked:
    """A /run waiting for a free slot."""

    request: RunRequest
    respond: Respond
    timer: asyncio.TimerHandle | None = field(default=None)


class ActionApp:
    """Serves `protocol.Request`s with a `Runtime`, on the loop it is bound to."""

    def __init__(self, runtime: Runtime, runner: DeadlineRunner) -> None:
        self._runtime = runtime
        self._runner = runner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes: dict[bytes, Callable[[Request, Respond], None]] = {
            b"/init": self._init,
            b"/run": self._run,
        }
        self._parked: deque[_Parked] = deque()
        runtime.slot_freed = self._slot_freed

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on `loop` (the worker's, once it runs)."""
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "ActionApp.bind(loop) first"
        return self._loop

    # ------------------------------------------------------------------------ protocol.Handler
    def handle(self, request: Request, respond: Respond) -> None:
        try:
            route = self._routes.get(request.path)
            if route is None:
                respond(self.error(404, "Not found: the action container serves POST /init and POST /run."))
            elif request.method != b"POST":
                respond(self.error(405, f"{request.path.decode('latin-1')} accepts POST only."))
            else:
                route(request, respond)
        except Exception as exc:  # noqa: BLE001 - a fault of ours still answers JSON, not HTML
            respond(self._internal_error(exc))

    def error(self, status: int, message: str) -> Response:
        return error_response(status, message)

    def _internal_error(self, exc: BaseException) -> Response:
        self._runtime.sink.write_direct("stderr", "".join(traceback.format_exception(exc)))
        message = f"warmwhisk runtime: internal error: {type(exc).__name__}: {exc}"
        return error_response(INTERNAL_ERROR, message)

    # ------------------------------------------------------------------------------- routes
    def _init(self, request: Request, respond: Respond) -> None:
        runtime = self._runtime
        self._offload(lambda: runtime.init(request.body), respond)

    def _run(self, request: Request, respond: Respond) -> None:
        runtime = self._runtime
        prepared = runtime.prepare_run(request.body, request.forwarding, wait=False)
        if prepared is None:  # a host still loading the action: wait for it on a thread
            self._offload(lambda: runtime.run(request.body, request.forwarding), respond)
        elif isinstance(prepared, RunRequest):
            if not self._launch(prepared, respond):
                self._park(prepared, respond)
        else:
            respond(prepared)

    def _launch(self, request: RunRequest, respond: Respond) -> bool:
        """Start the run if a slot is free (True); False: it is not started."""
        started = self._runtime.launch(request, wait=False)
        if started is None:
            return False
        if isinstance(started, ActiveRun):
            _InFlight(self, started, respond)
        else:
            respond(started)
        return True

    # ---------------------------------------------------------------- blocking work elsewhere
    def _offload(self, work: Callable[[], Response], respond: Respond) -> None:
        """Run blocking runtime work on a worker thread; answer with its result on the loop."""
        call = self._runner.start(work, interruptible=False)
        call.when_done(lambda: self.loop.call_soon_threadsafe(self._answer_offloaded, call, respond))

    def _answer_offloaded(self, call: Pending, respond: Respond) -> None:
        try:
            response = call.outcome()
        except BaseException as exc:  # noqa: BLE001 - answered as JSON
            response = self._internal_error(exc)
        respond(response)

    # ------------------------------------------------------------------ waiting for a slot
    def _park(self, request: RunRequest, respond: Respond) -> None:
        parked = _Parked(request, respond)
        timeout_s = seconds_left(request.deadline, now_ms())
        if timeout_s is not None:
            parked.timer = self.loop.call_later(timeout_s, self._give_up, parked)
        self._parked.append(parked)
        self._unpark()  # a slot freed since the launch found none

    def _slot_freed(self) -> None:
        """A slot was given back (on any thread)."""
        if self._parked:
            self.loop.call_soon_threadsafe(self._unpark)

    def _unpark(self) -> None:
        while self._parked:
            parked = self._parked[0]
            try:
                if not self._launch(parked.request, parked.respond):
                    return
            except Exception as exc:  # noqa: BLE001
                parked.respond(self._internal_error(exc))
            self._parked.popleft()
            if parked.timer is not None:
                parked.timer.cancel()

    def _give_up(self, parked: _Parked) -> None:
        try:
            self._parked.remove(parked)
        except ValueError:
            return  # started meanwhile
        parked.respond(self._runtime.no_slot())


class _InFlight:
    """A started /run, until it is answered: when its call is done, or at its deadline (then the
    call is interrupted, and the answer does not wait for its thread)."""

    __slots__ = ("_answered", "_app", "_respond", "_run", "_timer")

    def __init__(self, app: ActionApp, run: ActiveRun, respond: Respond) -> None:
        self._app, self._run, self._respond = app, run, respond
        self._timer: asyncio.TimerHandle | None = None
        self._answered = False
        pending = run.pending
        if pending.enforces_deadline and run.timeout_s is not None:
            self._timer = app.loop.call_later(run.timeout_s, self._deadline)
        pending.when_done(self._done_elsewhere)

    def _done_elsewhere(self) -> None:
        """On the thread that finished the call."""
        self._app.loop.call_soon_threadsafe(self._answer, False)

    def _deadline(self) -> None:
        self._timer = None
        if self._run.pending.expire():
            self._answer(True)
        # else: it finished just now, and its answer is on its way

    def _answer(self, expired: bool) -> None:
        if self._answered:
            return
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            response = self._app._runtime.finish_run(self._run, expired)
        except Exception as exc:  # noqa: BLE001
            response = self._app._internal_error(exc)
        self._respond(response)
