"""The runtime's three modes, one object each, chosen once at start-up (`WARMWHISK_MODE`).

* `DirectMode` (default): /init loads the action into this process; /run calls it here.
* `RoutedMode`: /init registers the action with the registry; /run forwards to a warm model host
  (`router.py`). No action code and no torch in this container.
* `HostMode`: a model host started by the scaler; no /init; /run serves forwarded runs of the
  registered actions of one namespace (`hosting.py`) and answers with an envelope.

`Runtime` does what every mode shares (the contract, init-once, admission, deadlines, per-activation
isolation, metrics) and asks its mode only what differs.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from warmwhisk_protocol.credentials import NamespaceCredential
from warmwhisk_protocol.forwarding import ACTION_HEADER, TOKEN_HEADER, Forwarding

from . import contract
from .contract import ContractError
from .hosting import Heartbeat, HostedActions, HostingError, Target
from .invocation import ActionLoader
from .isolation import current_activation, quiet_activation
from .router import RoutedTarget, Router, routed_action
from .runner import DeadlineRunner

if TYPE_CHECKING:  # direct mode needs no Redis client
    from warmwhisk_protocol.registry import Registry


class Mode(Protocol):
    name: str
    # The answer to a run is an envelope with the logs (host mode), not the action's own answer.
    answers_with_envelope: bool

    def init(self, fields: dict[str, Any], timeout_s: float | None) -> Target:
        """The action /init set up; raises ContractError (or what loading raised)."""
        ...

    def target(
        self, initialized: Target | None, forwarding: Forwarding | None, wait: bool = True
    ) -> Target | None:
        """What a /run calls; raises ContractError when there is none (or it may not be called).
        With `wait` False, None when it is not ready yet (a host still loading the action)."""
        ...

    def health(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _OneAction:
    """Direct and routed modes: /run calls the one action /init set up; nothing runs beside."""

    def target(
        self, initialized: Target | None, forwarding: Forwarding | None, wait: bool = True
    ) -> Target | None:
        if initialized is None:
            raise ContractError(contract.FORBIDDEN, contract.ERR_NOT_INITIALIZED)
        return initialized

    def health(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def load_in_init_context(env: Mapping[str, str], load: Callable[[], Target]) -> Target:
    """Run `load` with the /init's environment in place before the code loads (contract §2): init
    parameters become process environment (one action per process here), the triggering
    activation's `__OW_*` context is that load's own, never the process's (so no later run, and
    no thread the action starts, sees that activation's API key)."""
    context = {k: v for k, v in env.items() if k.startswith(contract.ENV_PREFIX)}
    for key, value in env.items():
        if key not in context:
            os.environ[key] = value
    token = current_activation.set(quiet_activation(context))
    try:
        return load()
    finally:
        current_activation.reset(token)


class DirectMode(_OneAction):
    name = "direct"
    answers_with_envelope = False

    def __init__(self, loader: ActionLoader, runner: DeadlineRunner) -> None:
        self._loader = loader
        self._runner = runner

    def init(self, fields: dict[str, Any], timeout_s: float | None) -> Target:
        load = self._loader.load_initialized
        return load_in_init_context(fields["env"], lambda: self._runner.call(lambda: load(fields), timeout_s))


class RoutedMode(_OneAction):
    name = "routed"
    answers_with_envelope = False

    def __init__(
        self, connect: Callable[[str, NamespaceCredential | None], Registry], runner: DeadlineRunner
    ) -> None:
        """`connect(namespace, credential)`: the registry of the action's namespace, logged in
        with the credential the action carries (None: the registry URL's own, if it has one)."""
        self._connect = connect
        self._runner = runner
        self.router: Router | None = None

    def init(self, fields: dict[str, Any], timeout_s: float | None) -> Target:
        key, spec, credential = routed_action(fields)
        try:
            self.router = Router(self._connect(spec.namespace, credential))
            self.router.register(key, spec)
        except Exception as exc:
            raise ContractError(
                contract.INIT_FAILED, f"Cannot register the action with the router: {exc}"
            ) from exc
        return RoutedTarget(self.router, key, self._runner)

    def stop(self) -> None:
        if self.router is not None:
            self.router.registry.close()


class HostMode:
    name = "host"
    answers_with_envelope = True  # the logs travel back to the routed container

    def __init__(
        self,
        hosted: HostedActions,
        heartbeat: Heartbeat,
        assigned: tuple[str, ...],
        retry_s: float,
        token: str,
    ) -> None:
        self.hosted = hosted
        self._token = token.encode()
        self._heartbeat = heartbeat
        self._assigned = assigned
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._loader = threading.Thread(
            target=hosted.load_assigned, args=(assigned, retry_s, self._stop), name="host-actions",
            daemon=True,
        )  # fmt: skip

    def init(self, fields: dict[str, Any], timeout_s: float | None) -> Target:
        raise ContractError(contract.FORBIDDEN, "A model host serves forwarded runs only; it takes no /init.")

    def target(
        self, initialized: Target | None, forwarding: Forwarding | None, wait: bool = True
    ) -> Target | None:
        given = ((forwarding.token if forwarding else None) or "").encode()
        if not hmac.compare_digest(given, self._token):
            raise ContractError(
                contract.UNAUTHORIZED,
                f"A model host serves its routers only: the {TOKEN_HEADER} header is missing or wrong.",
            )
        if forwarding is None or not forwarding.action_key:
            raise ContractError(contract.BAD_REQUEST, f"A model host needs the {ACTION_HEADER} header.")
        if not wait:
            return self.hosted.ready(forwarding.action_key)
        try:
            return self.hosted.get(forwarding.action_key)
        except HostingError as exc:
            raise ContractError(exc.status, str(exc)) from exc

    def health(self) -> dict[str, Any]:
        return {"hosted_actions": self.hosted.keys()}

    def start(self) -> None:
        """Heartbeat from now on, and load the assigned actions in the background."""
        self._heartbeat.start()
        self._loader.start()

    def stop(self) -> None:
        self._stop.set()
        self._heartbeat.stop()
        if self._loader.is_alive():
            self._loader.join(timeout=5)
        self.hosted.registry.close()
