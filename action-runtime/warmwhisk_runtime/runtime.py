"""The action container's behaviour, independent of HTTP: /init once, then many /run.

`Runtime.init` and `Runtime.run` take a request body (bytes) and return `(status, JSON bytes)`;
`/run` also comes in steps an event loop can drive (`prepare_run`, `launch`, `finish_run`): the
HTTP layer (`protocol.py`, `app.py`) only moves bytes. Statuses and messages follow `contract.py`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from warmwhisk_protocol.forwarding import Envelope, Forwarding

from . import contract, jsoncodec
from .config import RuntimeConfig
from .contract import ContractError, error_body
from .hosting import Target
from .isolation import Activation, ActivationLog, LogSink, current_activation
from .metrics import RuntimeMetrics
from .modes import Mode
from .procmem import IdleHeapTrimmer, own_pss_bytes
from .router import RoutingError
from .runner import DeadlineExceeded, DeadlineRunner, Pending, now_ms, seconds_left
from .store import ModelError, ModelStore

Response = tuple[int, bytes]

# One encoder for every response: strict JSON (no NaN/Infinity), UTF-8 as is.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def json_response(status: int, body: dict[str, Any] | list[Any]) -> Response:
    return status, _ENCODER.encode(body).encode()


def error_response(status: int, message: str) -> Response:
    return json_response(status, error_body(message))


@dataclass(frozen=True)
class RunRequest:
    """A /run that passed the contract's checks: what it calls, with what, until when."""

    target: Target
    value: Any
    context: dict[str, str]  # its __OW_* values
    deadline: float | None  # epoch ms, when enforced
    raw: bytes  # the body as received (routed mode forwards it unchanged)


@dataclass(frozen=True)
class ActiveRun:
    """A /run that holds a slot and whose call is under way."""

    activation: Activation
    pending: Pending
    timeout_s: float | None  # from its start to its deadline
    started: float  # perf_counter() at its start


class _Failed:
    """A call that failed before it was under way (the target raised while starting it)."""

    enforces_deadline = False

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def when_done(self, callback: Callable[[], None]) -> None:
        callback()

    def wait(self, timeout_s: float | None) -> bool:
        return True

    def expire(self) -> bool:
        return False

    def outcome(self) -> Any:
        raise self._error


# WARMWHISK_MAX_STUCK: activations allowed to run on past their deadline (they caught the
# interrupt, or are blocked in C) before the container stops taking work and is replaced.
DEFAULT_MAX_STUCK = 4


class Runtime:
    """The contract every mode shares: init-once, parsing, admission, per-activation context and
    logs, deadlines, results and metrics. What differs per mode is asked of `mode`.

    Also the container's health: each activation stuck past its deadline keeps a thread (and
    whatever it holds) that Python cannot kill. Past `max_stuck` of them the runtime turns
    unhealthy for good: new /init and /run get 503 (OpenWhisk retries them elsewhere), and once
    the activations already admitted are done it calls `retire` (the server stops this process,
    which exits non-zero, so the container is replaced)."""

    def __init__(
        self,
        config: RuntimeConfig,
        sink: LogSink,
        metrics: RuntimeMetrics,
        store: ModelStore,
        runner: DeadlineRunner,
        mode: Mode,
        activity: IdleHeapTrimmer,
    ) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.store = store
        self.mode = mode
        self.action: Target | None = None
        self._init_lock = threading.Lock()
        self._init_claimed = False
        # The activation whose /init this is (its env's __OW_ACTIVATION_ID): a failed init's
        # sentinel names it, like a run's (`LogSink`, `config.log_activation_ids`).
        self._init_activation_id = ""
        # Admission: concurrent mode waits for one of `max_concurrent` slots; otherwise a /run
        # that overlaps another is refused, as upstream runtimes do.
        self._slots = threading.BoundedSemaphore(config.max_concurrent if config.concurrent else 1)
        self._runner = runner
        # Activations admitted and not finished (a host's heartbeat reports them); when none is
        # left, the freed C heap goes back to the kernel.
        self._activity = activity
        # `max_stuck` is RuntimeConfig's once it has the field (WARMWHISK_MAX_STUCK).
        self.max_stuck: int = getattr(config, "max_stuck", DEFAULT_MAX_STUCK)
        self.unhealthy: str | None = None  # why new work is refused; None while healthy
        # Called once, when unhealthy and no admitted activation is left: the server stops the
        # process (None: nothing to stop, e.g. a Runtime built in a test).
        self.retire: Callable[[], None] | None = None
        self._retired = False
        self._health_lock = threading.Lock()
        # Called after each slot is given back (any thread): an event loop resumes the runs that
        # found no free slot (`app.ActionApp`).
        self.slot_freed: Callable[[], None] | None = None
        metrics.watch_stuck(lambda: runner.stuck)

    # ----------------------------------------------------------------------------------- /init
    def init(self, raw: bytes) -> Response:
        if self.unhealthy is not None:
            return self._unavailable()
        with self._init_lock:
            if self._init_claimed:
                # Logged, but no sentinel (§2 "The init-once rule").
                self.sink.write_direct("stderr", contract.ERR_REINIT + "\n")
                return error_response(contract.FORBIDDEN, contract.ERR_REINIT)
            self._init_claimed = True
        started = time.perf_counter()
        try:
            fields = contract.init_fields(contract.parse_json_object(raw, "/init"))
            self._init_activation_id = str(fields["env"].get(contract.env_name("activation_id")) or "")
            now = now_ms()
            timeout = seconds_left(contract.deadline_ms(fields["env"], now), now)
            self.action = self.mode.init(fields, timeout)
        except ContractError as exc:
            return self._init_failed(exc.status, exc.message)
        except DeadlineExceeded:
            self._count_stuck()
            self._retire_when_drained()
            return self._init_failed(
                contract.INIT_FAILED, "The action did not finish initializing before its deadline."
            )
        except ModelError as exc:
            return self._init_failed(contract.INIT_FAILED, f"Cannot start action: {exc}")
        except BaseException as exc:  # noqa: BLE001 - any failure of action code fails the init
            self.sink.write_direct("stderr", traceback.format_exc())
            what = (
                "called sys.exit()" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}: {exc}"
            )
            return self._init_failed(
                contract.INIT_FAILED, f"Cannot start action: loading its code {what}. Check logs for details."
            )
        self.metrics.init_seconds.set(time.perf_counter() - started)
        return json_response(contract.OK, {"ok": True})

    def _init_failed(self, status: int, message: str) -> Response:
        if status == contract.BAD_REQUEST:
            self._init_claimed = False  # the body was unreadable: nothing was applied, try again
        self.sink.write_direct("stderr", message + "\n")
        self.sink.emit(None, self._init_activation_id)  # one sentinel pair after a failed init (§5)
        self.metrics.count_error("init")
        return error_response(status, message)

    # ------------------------------------------------------------------------------------ /run
    # A /run in three steps, so that an event loop can drive it without a thread of its own
    # (`app.ActionApp`): `prepare_run` (parse, check, find the target), `launch` (a slot, then the
    # target's call under way: a `Pending`) and `finish_run` (once the outcome is known, or the
    # deadline came first: logs, metrics, the answer). `run` does all three on the caller's thread.
    def run(self, raw: bytes, forwarding: Forwarding | None = None) -> Response:
        """A /run, answered when done; `forwarding` says which action a router forwarded it for
        (host mode)."""
        request = self.prepare_run(raw, forwarding)
        if not isinstance(request, RunRequest):
            return request
        started = self.launch(request)
        if not isinstance(started, ActiveRun):
            return started
        pending = started.pending
        timeout_s = started.timeout_s if pending.enforces_deadline else None
        expired = not pending.wait(timeout_s) and pending.expire()
        if not expired:
            pending.wait(None)  # finished just as the deadline came
        return self.finish_run(started, expired)

    def prepare_run(
        self, raw: bytes, forwarding: Forwarding | None, wait: bool = True
    ) -> RunRequest | Response | None:
        """Parse and check a /run and find what it calls. None (only with `wait` False): the
        target is not ready (a host still loading the action); `prepare_run` with `wait` blocks."""
        if self.unhealthy is not None:
            return self._unavailable()
        try:
            target = self.mode.target(self.action, forwarding, wait)
            if target is None:
                return None
            body = contract.parse_json_object(raw, "/run")
            value, context = contract.run_fields(body)
            deadline = contract.deadline_ms(context, now_ms())
        except ContractError as exc:
            return self._refuse(exc.status, exc.message)
        return RunRequest(target, value, context, deadline, raw)

    def launch(self, request: RunRequest, wait: bool = True) -> ActiveRun | Response | None:
        """Take an activation slot (waiting until the deadline for one, if `wait`; None without
        `wait` when none is free) and start the target's call."""
        if not self._slots.acquire(blocking=False):
            if not self.config.concurrent:
                return self._refuse(contract.FORBIDDEN, contract.ERR_BUSY)
            if not wait:
                return None
            if not self._slots.acquire(timeout=seconds_left(request.deadline, now_ms())):
                return self.no_slot()
        try:
            return self._start(request)
        except BaseException:
            self._release_slot()
            raise

    def no_slot(self) -> Response:
        """The answer to a run that found no free slot before its deadline."""
        return self._refuse(contract.OK, "No activation slot became free before the deadline.")

    def _refuse(self, status: int, message: str) -> Response:
        """A run that never reached the action: logged, no sentinel (only accepted runs write one)."""
        self.sink.write_direct("stderr", f"Internal system error: {message}\n")
        self.metrics.count_error("refused")
        return error_response(status, message)

    def _start(self, request: RunRequest) -> ActiveRun:
        activation = Activation(
            env=request.context, log=ActivationLog(limit=self.config.max_log_bytes), body=request.raw
        )
        self.metrics.in_flight.inc()
        self._activity.begin()
        started = time.perf_counter()
        timeout_s = seconds_left(request.deadline, now_ms())
        # The activation is the context of the call (the target copies the context it starts in).
        token = current_activation.set(activation)
        try:
            pending: Pending = request.target.start(request.value, activation, timeout_s)
        except BaseException as exc:  # noqa: BLE001 - answered as the activation's failure
            pending = _Failed(exc)
        finally:
            current_activation.reset(token)
        return ActiveRun(activation, pending, timeout_s, started)

    def finish_run(self, run: ActiveRun, expired: bool) -> Response:
        """The answer to a run whose call is done, or whose deadline came first (`expired`)."""
        activation = run.activation
        try:
            status, result, failure = self._outcome(run, expired)
        finally:
            if self.mode.answers_with_envelope:
                logs = activation.log.close()
            else:
                self.sink.emit(activation.log, activation.env.get(contract.env_name("activation_id"), ""))
            self.metrics.in_flight.dec()
            self._activity.end()
            self._retire_when_drained()
            self._release_slot()
        self.metrics.duration.observe(time.perf_counter() - run.started)
        self.metrics.count_activation(failure)
        if self.mode.answers_with_envelope:
            envelope = Envelope(status, result, failure is None, logs["stdout"], logs["stderr"])
            return contract.OK, envelope.encode()
        return status, result

    def _release_slot(self) -> None:
        self._slots.release()
        if self.slot_freed is not None:
            self.slot_freed()

    def _outcome(self, run: ActiveRun, expired: bool) -> tuple[int, bytes, str | None]:
        """The call's status, JSON body and failure kind (None on success)."""
        activation = run.activation
        log = activation.log
        try:
            if expired:
                raise DeadlineExceeded
            result = run.pending.outcome()
        except DeadlineExceeded:
            self._count_stuck()
            message = (
                "The action exceeded its time limit: it was still running at its deadline "
                f"(__OW_DEADLINE={activation.env.get(contract.env_name('deadline'))}) and was interrupted."
            )
            log.append("stderr", message + "\n")
            return *error_response(contract.OK, message), "timeout"
        except RoutingError as exc:
            log.append("stderr", f"{exc}\n")
            return *error_response(contract.OK, f"warmwhisk router: {exc}"), "routing"
        except SystemExit as exc:
            # Upstream's process exits here (400 "command exited"); ours stays up, models and all.
            log.append("stderr", f"The action called sys.exit({exc.code!r}).\n")
            return *error_response(contract.BAD_REQUEST, contract.ERR_EXITED), "exit"
        except BaseException as exc:  # noqa: BLE001 - any failure of action code is its result
            log.append("stderr", "".join(traceback.format_exception(exc)))
            return *error_response(
                contract.OK, f"An error has occurred: {type(exc).__name__}: {exc}"
            ), "exception"
        if isinstance(result, Envelope):  # routed mode: the host's answer, as it is
            log.append("stdout", result.stdout)
            log.append("stderr", result.stderr)
            return result.status, result.body, None if result.ok else "remote"
        if not isinstance(result, (dict, list)):
            return *error_response(contract.BAD_RESULT, contract.ERR_NOT_DICT), "result"
        try:
            payload = jsoncodec.dumps(result)
        except (TypeError, ValueError, RecursionError) as exc:
            message = f"The action's result is not valid JSON: {exc}"
            log.append("stderr", message + "\n")
            return *error_response(contract.OK, message), "result"
        failure = "application" if isinstance(result, dict) and "error" in result else None
        return contract.OK, payload, failure

    # ---------------------------------------------------------------------------------- health
    @property
    def in_flight(self) -> int:
        return self._activity.running

    def _count_stuck(self) -> None:
        """After a call was abandoned at its deadline: past the budget of stuck activations, turn
        unhealthy (for good: the process is about to be replaced)."""
        stuck = self._runner.stuck
        if stuck <= self.max_stuck:
            return
        with self._health_lock:
            if self.unhealthy is not None:
                return
            self.unhealthy = (
                f"{stuck} activations are still running past their deadlines (more than "
                f"WARMWHISK_MAX_STUCK={self.max_stuck}); this container takes no new work and exits "
                "once the activations it admitted are done, so that it is replaced."
            )
        self.sink.write_direct("stderr", f"warmwhisk: unhealthy: {self.unhealthy}\n")

    def _retire_when_drained(self) -> None:
        """Once unhealthy and no admitted activation is left, stop the process (once)."""
        if self.unhealthy is None or self._activity.running:
            return
        with self._health_lock:
            if self._retired:
                return
            self._retired = True
        if self.retire is not None:
            self.retire()

    def _unavailable(self) -> Response:
        return self._refuse(contract.SHUTTING_DOWN, f"This container is shutting down: {self.unhealthy}")

    def health(self) -> dict[str, Any]:
        stuck = self._runner.stuck
        return {
            "status": "ok" if self.unhealthy is None else "unhealthy",
            "reason": self.unhealthy,
            "pid": os.getpid(),
            "mode": self.mode.name,
            "initialized": self.action is not None,
            "action": None if self.action is None else self.action.name,
            "hosted_actions": [],
            **self.mode.health(),
            "concurrent": self.config.concurrent,
            "max_concurrent": self.config.max_concurrent if self.config.concurrent else 1,
            "stuck_activations": stuck,
            "stuck_threads": stuck,  # the same count, under its earlier name
            "max_stuck": self.max_stuck,
            "heap_trims": self._activity.trims,
            "models": self.store.snapshot(),
            "model_loads": self.store.loads,
            "pss_bytes": own_pss_bytes(),
            "model_memory_budget_bytes": self.store.budget_bytes,
        }
