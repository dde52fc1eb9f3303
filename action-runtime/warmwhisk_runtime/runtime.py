"""The action container's behaviour, independent of HTTP: /init once, then many /run.

`Runtime.init` and `Runtime.run` take a request body (bytes) and return `(status, JSON bytes)`;
the WSGI layer in `app.py` only moves bytes. Statuses and messages follow `contract.py`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from warmwhisk_protocol.forwarding import Envelope, Forwarding

from . import contract
from .config import RuntimeConfig
from .contract import ContractError, error_body
from .hosting import Target
from .isolation import Activation, ActivationLog, LogSink, current_activation
from .metrics import RuntimeMetrics
from .modes import Mode
from .procmem import IdleHeapTrimmer, own_pss_bytes
from .router import RoutingError
from .runner import DeadlineExceeded, DeadlineRunner, now_ms, seconds_left
from .store import ModelError, ModelStore

Response = tuple[int, bytes]

# One encoder for every response: strict JSON (no NaN/Infinity), UTF-8 as is.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def json_response(status: int, body: dict[str, Any] | list[Any]) -> Response:
    return status, _ENCODER.encode(body).encode()


def error_response(status: int, message: str) -> Response:
    return json_response(status, error_body(message))


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
        self.sink.emit(None)  # one sentinel pair after a failed init (§5)
        self.metrics.count_error("init")
        return error_response(status, message)

    # ------------------------------------------------------------------------------------ /run
    def run(self, raw: bytes, forwarding: Forwarding | None = None) -> Response:
        """A /run; `forwarding` says which action a router forwarded it for (host mode)."""
        if self.unhealthy is not None:
            return self._unavailable()
        try:
            target = self.mode.target(self.action, forwarding)
            body = contract.parse_json_object(raw, "/run")
            value, context = contract.run_fields(body)
            deadline = contract.deadline_ms(context, now_ms())
        except ContractError as exc:
            return self._refuse(exc.status, exc.message)
        if not self._admit(deadline):
            if not self.config.concurrent:
                return self._refuse(contract.FORBIDDEN, contract.ERR_BUSY)
            return self._refuse(contract.OK, "No activation slot became free before the deadline.")
        try:
            return self._run_admitted(target, value, context, deadline, raw)
        finally:
            self._slots.release()

    def _admit(self, deadline: float | None) -> bool:
        if not self.config.concurrent:
            return self._slots.acquire(blocking=False)
        return self._slots.acquire(timeout=seconds_left(deadline, now_ms()))

    def _refuse(self, status: int, message: str) -> Response:
        """A run that never reached the action: logged, no sentinel (only accepted runs write one)."""
        self.sink.write_direct("stderr", f"Internal system error: {message}\n")
        self.metrics.count_error("refused")
        return error_response(status, message)

    def _run_admitted(
        self, target: Target, value: Any, context: dict[str, str], deadline: float | None, raw: bytes
    ) -> Response:
        activation = Activation(env=context, log=ActivationLog(limit=self.config.max_log_bytes), body=raw)
        token = current_activation.set(activation)
        self.metrics.in_flight.inc()
        self._activity.begin()
        started = time.perf_counter()
        try:
            status, result, failure = self._call(target, value, activation, deadline)
        finally:
            current_activation.reset(token)
            if self.mode.answers_with_envelope:
                logs = activation.log.close()
            else:
                self.sink.emit(activation.log)
            self.metrics.in_flight.dec()
            self._activity.end()
            self._retire_when_drained()
        self.metrics.duration.observe(time.perf_counter() - started)
        self.metrics.count_activation(failure)
        if self.mode.answers_with_envelope:
            envelope = Envelope(status, result, failure is None, logs["stdout"], logs["stderr"])
            return contract.OK, envelope.encode()
        return status, result

    def _call(
        self, target: Target, value: Any, activation: Activation, deadline: float | None
    ) -> tuple[int, bytes, str | None]:
        """Call the action; return status, JSON body and the failure kind (None on success)."""
        log = activation.log
        try:
            result = target(value, activation, seconds_left(deadline, now_ms()))
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
            log.append("stderr", traceback.format_exc())
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
            payload = _ENCODER.encode(result).encode()
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
