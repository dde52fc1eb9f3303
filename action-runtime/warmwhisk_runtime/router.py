"""Routed mode: the container OpenWhisk created is a thin forwarder to warm model hosts.

`/init` registers the action (its code and init parameters) with the registry and returns; it
imports no action code and no torch, so the container answers within well under a second of
starting. Each `/run` acquires a slot on a warm host serving the action (one atomic Redis
operation), forwards the activation (`warmwhisk_protocol.forwarding`), relays the answer and the
host's log lines (written here, with this container's sentinels, so OpenWhisk's log collection
still works), and releases the slot with the measured duration. A host that fails mid-request is
reported and skipped, and the activation retried once on another host; inference is stateless.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httptools

from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, NamespaceCredential
from warmwhisk_protocol.forwarding import ActionSpec, Envelope, EnvelopeError, Forwarding
from warmwhisk_protocol.records import Slot

if TYPE_CHECKING:  # direct mode imports this module, and needs no Redis client
    from warmwhisk_protocol.registry import Registry

from . import contract
from .contract import ContractError
from .runner import DeadlineRunner, Pending


class RoutingError(Exception):
    """No model host could serve the activation; the message says why, `reason` says it in one word:

    * ``no_slot``: no warm host had a free slot before the deadline (none failed);
    * ``hosts_failed``: the hosts tried failed (refused, reset, answered 503), and no other warm
      host had a free slot before the deadline, or two hosts were tried already;
    * ``deadline``: the deadline passed while a host ran the activation;
    * ``registry``: Redis could not be reached;
    * ``refused``: a host refused the activation (a non-200 other than 503; it did not run it);
    * ``bad_answer``: a host answered with something that is not a forwarding envelope.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HostFailed(Exception):
    """A host could not be reached on a fresh connection, or broke the connection mid-request."""


def routed_action(fields: Mapping[str, Any]) -> tuple[str, ActionSpec, NamespaceCredential | None]:
    """The action's key and registration from its /init fields, and the credential it carries.

    The registration holds its code, entry point and init parameters, never the triggering
    activation's context nor the namespace credential (`CREDENTIAL_PARAMETER`, taken out here so
    no action code ever sees it). Its namespace is the action's own (the first segment of its
    fully qualified name; the activation's may differ, for a shared package). An update is a new
    key, as it is a new revision for OpenWhisk."""
    env = dict(fields["env"])
    raw_credential = env.pop(CREDENTIAL_PARAMETER, None)
    try:
        credential = NamespaceCredential.parse(raw_credential) if raw_credential else None
    except ValueError as exc:
        message = f"The {CREDENTIAL_PARAMETER} parameter is malformed: {exc}"
        raise ContractError(contract.INIT_FAILED, message) from None
    qualified = env.get(contract.env_name("action_name"), "")
    namespace = qualified.split("/")[1] if qualified.startswith("/") and qualified.count("/") >= 2 else ""
    namespace = namespace or env.get(contract.env_name("namespace"), "")
    if not namespace:
        message = "Routed mode needs the action's namespace (__OW_ACTION_NAME)."
        raise ContractError(contract.INIT_FAILED, message)
    per_activation = {contract.env_name(k) for k in contract.PER_ACTIVATION_KEYS}
    spec = ActionSpec(
        namespace=namespace,
        name=fields["name"],
        main=fields["main"],
        binary=fields["binary"],
        code=fields["code"],
        env={k: v for k, v in env.items() if k not in per_activation},
    )
    return spec.key(qualified or f"/{namespace}/{fields['name'] or 'action'}"), spec, credential


class _NoAnswer(Exception):
    """The exchange failed before any byte of an answer arrived (the host may not have read it)."""


# Errors of a send, or of waiting for the answer's first byte, that mean "the peer closed or reset it".
_CLOSED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
# A forwarded answer is read in pieces of this size.
_RECV_BYTES = 256 * 1024


def _readable(sock: socket.socket) -> bool:
    """True when a pooled socket has something to read: the host's FIN (it closed the connection)
    or stray bytes. Either way the connection cannot carry a new request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class _Answer:
    """One answer, parsed by httptools: its status, body, and whether the connection stays open."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.parts: list[bytes] = []
        self.complete = False
        self.status = 0
        self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        # Read here: once the message is parsed the parser is ready for the next one.
        self.complete = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()


class HostConnection:
    """One keep-alive HTTP/1.1 connection to a model host: a blocking socket, each request written
    with one send, each answer parsed by httptools (as the action port parses requests).

    Why not http.client: it sends headers and body in two writes and parses the answer's headers
    with the email package; measured, the forward's own CPU is about a third lower without."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None

    def exchange(self, request: bytes, timeout_s: float | None) -> tuple[int, bytes, bool]:
        """Send `request`, read the answer: (status, body, whether the connection stays open).
        Raises `_NoAnswer` when the connection closed before the answer's first byte."""
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        sock.settimeout(timeout_s)
        try:
            sock.sendall(request)
            first = sock.recv(_RECV_BYTES)
        except _CLOSED as exc:
            raise _NoAnswer from exc
        if not first:
            raise _NoAnswer from ConnectionResetError("the host closed the connection")
        answer = _Answer()
        chunk = first
        while True:
            try:
                answer.parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                raise HostFailed(f"the answer is not HTTP ({exc})") from exc
            if answer.complete:
                return answer.status, b"".join(answer.parts), answer.keep_alive
            try:
                chunk = sock.recv(_RECV_BYTES)
            except _CLOSED as exc:
                raise HostFailed(f"the answer broke off ({type(exc).__name__}: {exc})") from exc
            if not chunk:
                raise HostFailed("the answer broke off (the host closed the connection)")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _request(address: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """POST /run with `body` and `headers`, as bytes (header values may hold no line breaks)."""
    lines = [f"POST /run HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"]
    lines.append(f"Content-Length: {len(body)}\r\n")
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {name} header may hold no line break")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


class HostConnections:
    """Keep-alive HTTP connections to model hosts, reused across activations.

    A host closes a connection that stayed idle past its keep-alive, and a request sent on such a
    connection fails before any byte of an answer. Three defences, cheapest first: a pooled
    connection idle longer than the host's advertised keep-alive (less a margin) is dropped unused;
    a pooled socket that is already readable (the host's FIN arrived) is dropped; and a request on
    a reused connection that fails before any response byte is sent once more on a fresh
    connection (the host never read it, so it never started the activation). Only a failure on a
    fresh connection, or after the answer began, is the host's (`HostFailed`).
    """

    # Idle connections kept per host (more are closed when given back).
    MAX_IDLE_PER_HOST = 64

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle: dict[str, list[tuple[HostConnection, float]]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def post(
        self,
        address: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float | None,
        keepalive_s: float = 0.0,
    ) -> tuple[int, bytes]:
        """POST /run. Raises `HostFailed` (the host's fault) or `TimeoutError` (the deadline)."""
        request = _request(address, body, headers)
        conn = self._take(address, keepalive_s)
        if conn is not None:
            try:
                return self._exchange(address, conn, request, timeout_s)
            except _NoAnswer:
                pass  # a stale connection: the host closed it meanwhile; once more, on a new one
        try:
            return self._exchange(address, self._connect(address), request, timeout_s)
        except _NoAnswer as exc:
            raise HostFailed(f"the connection closed before an answer ({exc.__cause__!r})") from exc

    def _exchange(
        self, address: str, conn: HostConnection, request: bytes, timeout_s: float | None
    ) -> tuple[int, bytes]:
        try:
            try:
                status, payload, keep_alive = conn.exchange(request, timeout_s)
            except (TimeoutError, _NoAnswer, HostFailed):
                raise
            except ConnectionRefusedError as exc:
                raise HostFailed(f"connection refused ({exc})") from exc
            except OSError as exc:
                raise HostFailed(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if keep_alive:
            self._give_back(address, conn)
        else:
            conn.close()
        return status, payload

    def _take(self, address: str, keepalive_s: float) -> HostConnection | None:
        """A pooled connection to `address` that is still usable, or None."""
        # Leave a margin: the host's own timer may run a little ahead of ours.
        max_idle = keepalive_s - max(0.25, 0.1 * keepalive_s) if keepalive_s > 0 else float("inf")
        now = self._clock()
        while True:
            with self._lock:
                idle = self._idle.get(address)
                if not idle:
                    return None
                conn, since = idle.pop()
            if now - since < max_idle and conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()

    @staticmethod
    def _connect(address: str) -> HostConnection:
        host, _, port = address.rpartition(":")
        return HostConnection(host.strip("[]"), int(port))

    def _give_back(self, address: str, conn: HostConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(address, [])
            if len(idle) < self.MAX_IDLE_PER_HOST:
                idle.append((conn, self._clock()))
                return
        conn.close()

    def forget(self, address: str) -> None:
        with self._lock:
            idle = self._idle.pop(address, [])
        for conn, _ in idle:
            conn.close()


class Router:
    """Routed mode: finds a warm host for each activation and forwards it there."""

    # Waiting for a slot: first retry after 1 ms, doubling up to 20 ms.
    FIRST_WAIT_S = 0.001
    MAX_WAIT_S = 0.02
    # A run without a deadline (never from OpenWhisk) counts as waiting for at most this long.
    MAX_UNBOUNDED_WAIT_S = 300.0
    # Hosts one activation is sent to at most: a failure is retried once, elsewhere.
    MAX_HOSTS_TRIED = 2

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.connections = HostConnections(clock)
        self._clock = clock
        self._specs: dict[str, ActionSpec] = {}

    def register(self, key: str, spec: ActionSpec) -> None:
        self.registry.register_action(key, spec.to_json())
        self._specs[key] = spec

    def forward(self, key: str, body: bytes, timeout_s: float | None) -> Envelope:
        """Run one activation on a warm host, waiting for a free slot until the deadline. A host
        that fails is reported (routing skips it, the scaler replaces it) and the activation goes
        to another one, at most `MAX_HOSTS_TRIED` hosts in all."""
        end = None if timeout_s is None else self._clock() + timeout_s
        failures: dict[str, str] = {}  # host id -> what went wrong, in the order tried
        while True:
            slot = self._acquire(key, end, failures)
            started = self._clock()
            timeout = None if end is None else max(0.001, end - started)
            try:
                status, payload = self.connections.post(
                    slot.address, body, Forwarding(key, slot.token).headers(), timeout, slot.keepalive_s
                )
            except TimeoutError as exc:  # the deadline came: no time is left to try another host
                self._release(slot)
                self.connections.forget(slot.address)
                raise RoutingError(
                    f"model host {slot.host_id} did not answer before the deadline", "deadline"
                ) from exc
            except HostFailed as exc:
                self._release(slot)
                self.connections.forget(slot.address)
                failures[slot.host_id] = str(exc)
                self._report_unreachable(slot.host_id)
            else:
                self._release(slot, self._clock() - started)
                if status != 503:
                    return _unwrap(status, payload, slot.host_id)
                # 503: the host is shutting down or unhealthy and did not run the activation.
                failures[slot.host_id] = f"it answered HTTP 503 {_excerpt(payload)}"
            if len(failures) >= self.MAX_HOSTS_TRIED:
                raise RoutingError(f"{_failed(failures)}; the activation was tried on {len(failures)} hosts",
                                   "hosts_failed")  # fmt: skip

    def _report_unreachable(self, host_id: str) -> None:
        try:
            self.registry.report_unreachable(host_id)
        except Exception as exc:  # noqa: BLE001 - the registry is away too: routing still avoids it
            sys.stderr.write(f"warmwhisk router: reporting {host_id} unreachable failed: {exc}\n")

    def _release(self, slot: Slot, duration_s: float | None = None) -> None:
        """Give the slot back; if Redis fails here, the answer still stands (the slot count is
        re-seeded from the host's heartbeat when its record is rebuilt)."""
        try:
            self.registry.release(slot, duration_s)
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"warmwhisk router: releasing a slot on {slot.host_id} failed: {exc}\n")

    def _acquire(self, key: str, end: float | None, failures: Mapping[str, str]) -> Slot:
        try:
            return self._acquire_or_wait(key, end, failures)
        except RoutingError:
            raise
        except Exception as exc:
            raise RoutingError(
                f"the registry could not be reached: {type(exc).__name__}: {exc}", "registry"
            ) from exc

    def _acquire_or_wait(self, key: str, end: float | None, failures: Mapping[str, str]) -> Slot:
        slot = self.registry.acquire(key, avoid=failures)
        if slot is not None:  # the common case: one Redis round trip
            if not slot.registered:
                self._register_again(key)
            return slot
        # No free slot: wait, and say so in the registry so that the scaler sees the demand.
        if self.registry.action_spec(key) is None:
            self._register_again(key)
        wait_id = uuid.uuid4().hex
        until = time.time() + (self.MAX_UNBOUNDED_WAIT_S if end is None else max(0.0, end - self._clock()))
        self.registry.start_waiting(key, wait_id, until)
        try:
            wait = self.FIRST_WAIT_S
            while True:
                now = self._clock()
                if end is not None and now >= end:
                    if failures:
                        raise RoutingError(
                            f"{_failed(failures)}, and no other warm model host had a free slot before "
                            "the deadline (the scaler replaces failed hosts; see its /status)",
                            "hosts_failed",
                        )
                    raise RoutingError(
                        "no warm model host had a free slot for this action before its deadline "
                        "(the scaler adds hosts on demand; see its /status)",
                        "no_slot",
                    )
                time.sleep(wait if end is None else min(wait, max(0.0, end - now)))
                wait = min(wait * 2, self.MAX_WAIT_S)
                slot = self.registry.acquire(key, avoid=failures)
                if slot is not None:
                    if not slot.registered:
                        self._register_again(key)
                    return slot
        finally:
            self.registry.stop_waiting(key, wait_id)

    def _register_again(self, key: str) -> None:
        """Redis lost the action's registration (restarted empty): hosts started from now on
        load the action from it, so put it back."""
        if key in self._specs:
            self.registry.register_action(key, self._specs[key].to_json())


def _failed(failures: Mapping[str, str]) -> str:
    return "; ".join(f"model host {host_id} failed: {what}" for host_id, what in failures.items())


def _excerpt(payload: bytes) -> str:
    return repr(payload[:200])


def _unwrap(status: int, payload: bytes, host_id: str) -> Envelope:
    if status != 200:
        raise RoutingError(
            f"model host {host_id} refused the activation: HTTP {status} {_excerpt(payload)}", "refused"
        )
    try:
        return Envelope.decode(payload)
    except EnvelopeError as exc:
        raise RoutingError(f"model host {host_id} sent an unreadable answer: {exc}", "bad_answer") from exc


class RoutedTarget:
    """Routed mode's action: every activation is forwarded to a warm host, on a worker thread
    (the forward blocks on Redis and the host; it keeps the deadline itself)."""

    def __init__(self, router: Router, key: str, runner: DeadlineRunner) -> None:
        self.router = router
        self.key = key
        self.name = key
        self._runner = runner

    def start(self, value: Any, activation: Any, timeout_s: float | None) -> Pending:
        body = activation.body
        return self._runner.start(lambda: self.router.forward(self.key, body, timeout_s), interruptible=False)
