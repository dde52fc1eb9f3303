"""The action container's behaviour, independent of HTTP: /init once, then many /run.

`Runtime.init` and `Runtime.run` take a request body (bytes) and return `(status, JSON bytes)`;
the WSGI layer in `app.py` only moves bytes. Statuses and messages follow `contract.py`.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from typing import Any

from . import contract
from .action import import_action, unpack
from .config import RuntimeConfig
from .contract import ContractError, error_body
from .invocation import Invocation
from .isolation import Activation, ActivationEnviron, ActivationLog, LogSink, current_activation
from .metrics import RuntimeMetrics
from .models import ModelProvider
from .procmem import pss_bytes
from .runner import DeadlineExceeded, DeadlineRunner, now_ms, seconds_left
from .store import ModelError

Response = tuple[int, bytes]

# One encoder for every response: strict JSON (no NaN/Infinity), UTF-8 as is.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def json_response(status: int, body: dict[str, Any] | list[Any]) -> Response:
    return status, _ENCODER.encode(body).encode()


def error_response(status: int, message: str) -> Response:
    return json_response(status, error_body(message))


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        sink: LogSink,
        environ: ActivationEnviron,
        metrics: RuntimeMetrics,
        provider: ModelProvider,
    ) -> None:
        self.config = config
        self.sink = sink
        self.environ = environ
        self.metrics = metrics
        self.provider = provider
        self.action: Invocation | None = None
        self._init_lock = threading.Lock()
        self._init_claimed = False
        # Admission: concurrent mode waits for one of `max_concurrent` slots; otherwise a /run
        # that overlaps another is refused, as upstream runtimes do.
        self._slots = threading.BoundedSemaphore(config.max_concurrent if config.allow_concurrent else 1)
        self._runner = DeadlineRunner()

    # ----------------------------------------------------------------------------------- /init
    def init(self, raw: bytes) -> Response:
        with self._init_lock:
            if self._init_claimed:
                # Logged, but no sentinel (§2 "The init-once rule").
                self.sink.write_direct("stderr", contract.ERR_REINIT + "\n")
                return error_response(contract.FORBIDDEN, contract.ERR_REINIT)
            self._init_claimed = True
        started = time.perf_counter()
        try:
            fields = contract.init_fields(contract.parse_json_object(raw, "/init"))
            self._apply_init_env(fields["env"])
            timeout = seconds_left(contract.deadline_ms(fields["env"]), now_ms())
            self.action = self._runner.call(lambda: self._load(fields), timeout)
        except ContractError as exc:
            return self._init_failed(exc.status, exc.message)
        except DeadlineExceeded:
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

    def _load(self, fields: dict[str, Any]) -> Invocation:
        source = unpack(fields, self.config.handler, self.config.action_dir, self.config.max_zip_bytes)
        invocation = Invocation(
            import_action(source, fields["name"]),
            self.provider,
            self._runner,
            self.metrics.batch_size.observe,
        )
        invocation.load_models()
        return invocation

    def _apply_init_env(self, env: dict[str, str]) -> None:
        """Init parameters and the triggering activation's `__OW_*` become process environment,
        before the code loads (§2). Runs later see only their own `__OW_*` values."""
        for key, value in env.items():
            self.environ[key] = value
            if key.startswith(contract.ENV_PREFIX):
                self.environ.masked.add(key)

    def _init_failed(self, status: int, message: str) -> Response:
        if status == contract.BAD_REQUEST:
            self._init_claimed = False  # the body was unreadable: nothing was applied, try again
        self.sink.write_direct("stderr", message + "\n")
        self.sink.emit(None)  # one sentinel pair after a failed init (§5)
        self.metrics.count_error("init")
        return error_response(status, message)

    # ------------------------------------------------------------------------------------ /run
    def run(self, raw: bytes) -> Response:
        try:
            body = contract.parse_json_object(raw, "/run")
            value, context = contract.run_fields(body)
            deadline = contract.deadline_ms(context)
        except ContractError as exc:
            return self._refuse(exc.status, exc.message)
        if self.action is None:
            return self._refuse(contract.FORBIDDEN, contract.ERR_NOT_INITIALIZED)
        if not self._admit(deadline):
            if not self.config.allow_concurrent:
                return self._refuse(contract.FORBIDDEN, contract.ERR_BUSY)
            return self._refuse(contract.OK, "No activation slot became free before the deadline.")
        try:
            return self._run_admitted(self.action, value, context, deadline)
        finally:
            self._slots.release()

    def _admit(self, deadline: float | None) -> bool:
        if not self.config.allow_concurrent:
            return self._slots.acquire(blocking=False)
        return self._slots.acquire(timeout=seconds_left(deadline, now_ms()))

    def _refuse(self, status: int, message: str) -> Response:
        """A run that never reached the action: logged, no sentinel (only accepted runs write one)."""
        self.sink.write_direct("stderr", f"Internal system error: {message}\n")
        self.metrics.count_error("refused")
        return error_response(status, message)

    def _run_admitted(
        self, invocation: Invocation, value: Any, context: dict[str, str], deadline: float | None
    ) -> Response:
        activation = Activation(env=context, log=ActivationLog(limit=self.config.max_log_bytes))
        token = current_activation.set(activation)
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            status, result, failure = self._call(invocation, value, activation, deadline)
        finally:
            current_activation.reset(token)
            self.sink.emit(activation.log)
            self.metrics.in_flight.dec()
        self.metrics.duration.observe(time.perf_counter() - started)
        self.metrics.count_activation(failure)
        return status, result

    def _call(
        self, invocation: Invocation, value: Any, activation: Activation, deadline: float | None
    ) -> tuple[int, bytes, str | None]:
        """Call the action; return status, JSON body and the failure kind (None on success)."""
        log = activation.log
        try:
            result = invocation(value, activation, seconds_left(deadline, now_ms()))
        except DeadlineExceeded:
            message = (
                "The action exceeded its time limit: it was still running at its deadline "
                f"(__OW_DEADLINE={activation.env.get(contract.env_name('deadline'))}) and was interrupted."
            )
            log.append("stderr", message + "\n")
            return *error_response(contract.OK, message), "timeout"
        except SystemExit as exc:
            # Upstream's process exits here (400 "command exited"); ours stays up, models and all.
            log.append("stderr", f"The action called sys.exit({exc.code!r}).\n")
            return *error_response(contract.BAD_REQUEST, contract.ERR_EXITED), "exit"
        except BaseException as exc:  # noqa: BLE001 - any failure of action code is its result
            log.append("stderr", traceback.format_exc())
            return *error_response(
                contract.OK, f"An error has occurred: {type(exc).__name__}: {exc}"
            ), "exception"
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
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "initialized": self.action is not None,
            "action": None if self.action is None else self.action.action.name,
            "concurrent": self.config.allow_concurrent,
            "max_concurrent": self.config.max_concurrent if self.config.allow_concurrent else 1,
            "stuck_threads": self._runner.stuck,
            "models": self.provider.store.snapshot(),
            "model_loads": self.provider.store.loads,
            "pss_bytes": pss_bytes(),
            "model_memory_budget_bytes": self.provider.store.budget_bytes,
        }
