"""Host mode: a runtime started by the scaler that serves forwarded runs of several actions of
one namespace, each loaded on first use from its registration, with all their models in one
process-wide store (shared when equal). It heartbeats its state into the registry.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from warmwhisk_protocol.forwarding import ActionSpec
from warmwhisk_protocol.records import HostRecord

from .runner import Pending

if TYPE_CHECKING:  # direct mode imports this module, and needs no Redis client
    from warmwhisk_protocol.registry import Registry


class Target(Protocol):
    """What /run calls: a loaded action (`invocation.Invocation`) or a route to a host."""

    name: str

    def start(self, value: Any, activation: Any, timeout_s: float | None) -> Pending:
        """Start the call for one activation (never blocks); its outcome is the result."""
        ...


class HostingError(Exception):
    """A forwarded run this host cannot serve; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HostedActions:
    """The actions this host serves, each loaded once, on first use (single-flight), by `load`.

    Only actions of the host's own namespace are served: a host never mixes namespaces.
    """

    def __init__(self, registry: Registry, namespace: str, load: Callable[[str, ActionSpec], Target]) -> None:
        self.registry = registry
        self.namespace = namespace
        self._load_action = load
        self._lock = threading.Lock()
        self._ready: dict[str, Target] = {}
        self._loading: dict[str, threading.Event] = {}
        self._failed: dict[str, HostingError] = {}

    def keys(self) -> list[str]:
        return sorted(self._ready)

    def ready(self, key: str) -> Target | None:
        """The action if it is loaded; None otherwise (`get` loads it, or waits for its load)."""
        return self._ready.get(key)

    def get(self, key: str) -> Target:
        target = self._ready.get(key)
        if target is not None:
            return target
        with self._lock:
            if key in self._ready:
                return self._ready[key]
            event = self._loading.get(key)
            loader = event is None
            if loader:
                event = self._loading[key] = threading.Event()
                self._failed.pop(key, None)
        assert event is not None
        if loader:
            self._load(key, event)
        else:
            event.wait()
        if key in self._ready:
            return self._ready[key]
        raise self._failed.get(key) or HostingError(502, f"action {key} could not be loaded")

    def load_assigned(self, keys: Sequence[str], retry_s: float, stop: threading.Event) -> None:
        """Load the actions the scaler assigned at start. Until each is loaded: its registration
        may come later (a router puts it back after Redis lost it), so a failed load is tried
        again every `retry_s` until `stop` is set."""
        pending = list(keys)
        while pending and not stop.is_set():
            for key in list(pending):
                try:
                    self.get(key)
                    pending.remove(key)
                except HostingError as exc:
                    sys.stderr.write(f"warmwhisk host: {exc}; trying again\n")
            stop.wait(retry_s)

    def _load(self, key: str, event: threading.Event) -> None:
        try:
            if not key.startswith(f"/{self.namespace}/"):
                raise HostingError(403, f"action {key} belongs to another namespace than this host's")
            raw = self.registry.action_spec(key)
            if raw is None:
                raise HostingError(404, f"action {key} is not registered")
            try:
                spec = ActionSpec.from_json(raw)
            except ValueError as exc:
                raise HostingError(502, f"action {key}: {exc}") from exc
            if spec.namespace != self.namespace:
                raise HostingError(403, f"action {key} belongs to another namespace than this host's")
            if spec.key(key.rpartition("@")[0]) != key:
                # Whoever wrote the registration, its code is not the code the key names.
                message = f"the registration of {key} does not match its key; refusing to load it"
                raise HostingError(403, message)
            target = self._load_action(key, spec)
            with self._lock:
                self._ready[key] = target
        except HostingError as exc:
            self._failed[key] = exc
        except Exception as exc:  # noqa: BLE001 - reported to every waiting run
            self._failed[key] = HostingError(502, f"loading action {key} failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._loading.pop(key, None)
            event.set()


@dataclass(frozen=True)
class HostIdentity:
    host_id: str
    address: str  # where routers reach this host's action port
    namespace: str
    limit: int  # the most activations this host runs at once
    actions: tuple[str, ...]  # assigned by the scaler at start
    keepalive_s: float  # how long the host keeps an idle connection open (routers read it)
    token: str  # what routers must send (they read it from the record, as only they may)


@dataclass(frozen=True)
class HostState:
    """What the host reports of itself at one heartbeat."""

    actions: Sequence[str]  # loaded
    models: Sequence[str]  # resident
    in_flight: int
    memory_bytes: int  # PSS; 0 when the kernel does not say
    model_load_s: float | None


class Heartbeat:
    """Writes this host's record into the registry every `interval_s`, on its own thread."""

    def __init__(
        self, registry: Registry, identity: HostIdentity, state: Callable[[], HostState], interval_s: float
    ) -> None:
        self._registry = registry
        self._identity = identity
        self._state = state
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def record(self) -> HostRecord:
        state = self._state()
        me = self._identity
        loaded = set(state.actions)
        return HostRecord(
            host_id=me.host_id,
            address=me.address,
            namespace=me.namespace,
            actions=tuple(sorted(set(me.actions) | loaded)) or me.actions,
            models=tuple(state.models),
            state="warm" if set(me.actions) <= loaded else "starting",
            limit=me.limit,
            reported_in_flight=state.in_flight,
            memory_bytes=state.memory_bytes,
            model_load_s=state.model_load_s,
            keepalive_s=me.keepalive_s,
            token=me.token,
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._registry.heartbeat(self.record())
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying; routers stop using us
                sys.stderr.write(f"warmwhisk host: heartbeat failed: {exc}\n")
            self._stop.wait(self._interval_s)
