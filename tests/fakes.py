"""In-memory stand-ins for the scaler's I/O, for tests that drive the controller tick by tick:
a host backend that starts nothing, and a clock the test moves. (The registry's in-memory twin is
`warmwhisk_protocol.memory.InMemoryRegistry`, which ships with the contract.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from warmwhisk_protocol.host import Env
from warmwhisk_protocol.records import HostRecord
from warmwhisk_scaler.backends import BackendError, HostSpec, RunningHost


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeBackend:
    """`HostBackend` whose hosts are records: started, listed, stopped, adopted. `fail_starts`
    makes the next starts raise BackendError, as an engine without the image would."""

    clock: Callable[[], float]
    owner: str = "fake"
    hosts: dict[str, RunningHost] = field(default_factory=dict)
    specs: dict[str, HostSpec] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    fail_starts: int = 0

    def start(self, spec: HostSpec) -> RunningHost:
        assert spec.secrets is not None and spec.secrets.token, "a host is always given its secrets"
        assert "@" in spec.secrets.registry_url and Env.REGISTRY_URL not in spec.env  # never in its env
        if self.fail_starts:
            self.fail_starts -= 1
            raise BackendError(f"starting model host {spec.host_id!r}: image not found (fake)")
        port = 20_000 + len(self.started)
        host = RunningHost(spec.host_id, spec.pool, f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}",
                           self.clock(), self.owner)  # fmt: skip
        self.hosts[spec.host_id] = host
        self.specs[spec.host_id] = spec
        self.started.append(spec.host_id)
        return host

    def stop(self, host_id: str) -> None:
        if self.hosts.pop(host_id, None) is not None:
            self.stopped.append(host_id)

    def running(self) -> list[RunningHost]:
        return sorted(self.hosts.values(), key=lambda h: (h.started_at, h.host_id))

    def reconcile(self, keep: Callable[[RunningHost], bool]) -> tuple[list[RunningHost], list[str]]:
        adopted = [h for h in self.running() if keep(h)]
        removed = [h.host_id for h in self.running() if not keep(h)]
        for host_id in removed:
            self.stop(host_id)
        return adopted, removed

    def wait_ready(self, host: RunningHost, timeout_s: float) -> bool:
        return host.host_id in self.hosts

    def logs(self, host_id: str, tail: int = 100) -> str:
        return ""


def heartbeat_from(backend: FakeBackend, host_id: str, state: str = "warm", in_flight: int = 0) -> HostRecord:
    """The record the started host would heartbeat (its namespace and actions from its launch)."""
    spec = backend.specs[host_id]
    return HostRecord(
        host_id=host_id,
        address=backend.hosts[host_id].address,
        namespace=spec.env[Env.NAMESPACE],
        actions=tuple(spec.env[Env.HOST_ACTIONS].split(",")),
        models=(),
        state=state,  # type: ignore[arg-type]
        limit=int(spec.env[Env.MAX_CONCURRENT]),
        reported_in_flight=in_flight,
    )
