"""The backend interface: how the scaler starts, finds and stops model hosts.

A *model host* is the runtime (``python -m warmwhisk_runtime``) started by the scaler, bound to
127.0.0.1 on two ports the backend picks: the action port (``--port``, where activations are
forwarded) and the metrics port (``--metrics-port``, ``GET /healthz``). A backend records every
host it starts *in the engine itself* (container labels, pid files), never only in memory, so a
restarted scaler can list what is running (``running``) and adopt or remove it (``reconcile``).

Implementations: ``DockerBackend`` (containers, network mode "host"), ``ProcessBackend`` (local
processes, for a machine without a Docker engine). A Kubernetes backend implements the same
``HostBackend`` protocol (pods labelled with the owner, host id and ports).

Not thread-safe across scaler replicas: one scaler (the Redis lease holder) drives a backend; run
``reconcile`` before starting hosts, not concurrently with ``start``.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from warmwhisk_protocol.host import HostSecrets

# A host id names a container and a file, so it is restricted to Docker's container-name syntax.
HOST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
DEFAULT_OWNER = "warmwhisk-scaler"


class BackendError(RuntimeError):
    """The engine refused or failed an operation (image missing, engine down, name in use...).

    The message says what was attempted and why it failed; ``__cause__`` holds the engine's error.
    """


@dataclass(frozen=True)
class HostSpec:
    """What the scaler asks for: one model host."""

    # Unique id, e.g. "h-<pool-short>-<random>"; also the container name. [A-Za-z0-9][A-Za-z0-9_.-]*
    host_id: str
    # What the host serves (an action key); recorded with the host (label / record).
    pool: str
    # The host's environment: `warmwhisk_protocol.host.HostLaunch.environment()`.
    env: Mapping[str, str] = field(default_factory=dict)
    # Memory limit in bytes (docker --memory, swap included); None = no limit.
    memory_bytes: int | None = None
    # Host folder with the models, mounted read-only at /models; None = no mount.
    model_dir: str | None = None
    # CPU limit in CPUs (docker --cpus); None = no limit.
    cpus: float | None = None
    # The host's secrets: the backend writes them to a file only the host can read and names it
    # in `Env.SECRETS_FILE`; the host reads and removes it at start. None: no secrets (direct mode).
    secrets: HostSecrets | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not HOST_ID_PATTERN.fullmatch(self.host_id):
            raise ValueError(f"host_id {self.host_id!r} must match {HOST_ID_PATTERN.pattern}")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, got {self.memory_bytes}")
        if self.cpus is not None and self.cpus <= 0:
            raise ValueError(f"cpus must be positive, got {self.cpus}")


@dataclass(frozen=True)
class RunningHost:
    """A host the engine runs (started, not necessarily ready)."""

    host_id: str
    pool: str
    address: str  # "127.0.0.1:<port>": the action port
    metrics_address: str  # "127.0.0.1:<port>": GET /healthz, /metrics
    started_at: float  # epoch seconds, when the backend started it
    owner: str  # the backend owner that started it


class HostBackend(Protocol):
    """Starts, lists and stops model hosts. Every method may raise ``BackendError``."""

    owner: str

    def start(self, spec: HostSpec) -> RunningHost:
        """Start a host; returns once its process or container is started (not necessarily ready)."""
        ...

    def stop(self, host_id: str) -> None:
        """Stop and remove a host: SIGTERM, a short grace period, then SIGKILL. Unknown ids are a no-op."""
        ...

    def running(self) -> list[RunningHost]:
        """Every live host of this owner, read from the engine (so a restarted scaler finds them)."""
        ...

    def reconcile(self, keep: Callable[[RunningHost], bool]) -> tuple[list[RunningHost], list[str]]:
        """Adopt the live hosts ``keep`` accepts; remove the rest and every dead one of this owner.

        Returns (adopted hosts, removed host ids). Dead hosts are removed without asking ``keep``.
        """
        ...

    def wait_ready(self, host: RunningHost, timeout_s: float) -> bool:
        """Poll ``GET http://<metrics_address>/healthz`` until 200 (True), timeout or exit (False)."""
        ...

    def logs(self, host_id: str, tail: int = 100) -> str:
        """The last ``tail`` lines of the host's stdout and stderr ("" if unknown), for diagnostics."""
        ...


# -- helpers shared by the implementations --------------------------------------------------------


def loopback(port: int) -> str:
    return f"127.0.0.1:{port}"


class PortAllocator:
    """Free ports on ``bind_host`` (127.0.0.1), never handing out one of the last ``memory`` again.

    The kernel picks each port (bind to port 0); the sockets are closed before the host binds, so
    another process may take a port in between: the host then exits (gunicorn retries the bind for
    about 5 s first) and ``wait_ready`` says False; stop it and start another.
    """

    def __init__(self, memory: int = 1024, bind_host: str = "127.0.0.1") -> None:
        self._bind_host = bind_host
        self._recent: deque[int] = deque(maxlen=memory)
        self._lock = threading.Lock()

    def allocate(self, count: int, avoid: set[int] | None = None) -> list[int]:
        with self._lock:  # concurrent starts must not get the same port
            return self._allocate(count, set(avoid or ()) | set(self._recent))

    def _allocate(self, count: int, avoid: set[int]) -> list[int]:
        sockets: list[socket.socket] = []
        ports: list[int] = []
        try:
            for _ in range(count * 20):
                if len(ports) == count:
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)  # held open so the next bind gets a different port
                sock.bind((self._bind_host, 0))
                port = sock.getsockname()[1]
                if port not in avoid:
                    ports.append(port)
                    avoid.add(port)
        finally:
            for sock in sockets:
                sock.close()
        if len(ports) < count:
            raise BackendError(f"could not find {count} free {self._bind_host} ports")
        self._recent.extend(ports)
        return ports


def healthz_ok(metrics_address: str, timeout_s: float = 1.0) -> bool:
    """One ``GET /healthz``: True on HTTP 200, False on any error or other status."""
    host, _, port = metrics_address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        with contextlib.suppress(OSError):
            connection.close()


def adopt_or_stop(
    live: list[RunningHost], keep: Callable[[RunningHost], bool], stop: Callable[[str], None]
) -> tuple[list[RunningHost], list[str]]:
    """The live half of `reconcile`: keep() decides; the others are stopped. (adopted, stopped ids)"""
    adopted = [host for host in live if keep(host)]
    stopped = [host.host_id for host in live if host not in adopted]
    for host_id in stopped:
        stop(host_id)
    return adopted, stopped


def poll_ready(
    host: RunningHost,
    timeout_s: float,
    alive: Callable[[], bool],
    interval_s: float = 0.05,
    alive_every_s: float = 0.25,
) -> bool:
    """Poll /healthz until 200 (True); False at ``timeout_s`` or as soon as ``alive()`` says False."""
    deadline = time.monotonic() + timeout_s
    next_alive_check = time.monotonic() + alive_every_s
    while True:
        if healthz_ok(host.metrics_address, timeout_s=min(1.0, max(0.05, deadline - time.monotonic()))):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_alive_check:
            if not alive():
                return False
            next_alive_check = now + alive_every_s
        time.sleep(min(interval_s, max(0.0, deadline - now)))
