"""Action containers on the real Docker engine, started the way a patched OpenWhisk invoker starts
them, and their /init, /run and logs.

Each container gets the invoker patch's environment and volumes (`ContainerSpec`, built from
`warmwhisk_invoker_patch.ContainerConfig` by the invoker: nothing re-spelled here), OpenWhisk's
own docker defaults (DockerContainerFactory / InvokerReactive.scala: `--cap-drop NET_RAW,NET_ADMIN`,
`--ulimit nofile=1024:1024`, `--pids-limit 1024`, the action's memory as `--memory` without
swap), `__OW_API_HOST`, and labels naming the stack. This machine's engine has no bridge network
(host networking, 127.0.0.1 only), so where OpenWhisk would reach each container at its own
address on :8080, the stack gives each a free port in `PORT` (the warmwhisk runtime reads it; a
blackbox image must too) and `WARMWHISK_HOST=127.0.0.1`.

Logs: OpenWhisk reads each activation's lines up to the sentinel printed on stdout and stderr.
`LogCollector` follows both streams of a container and cuts them into blocks at the sentinels.
The stack's runtime containers get `WARMWHISK_LOG_ACTIVATION_IDS=true`, so each sentinel (a failed
/init's too) names the activation it ends and the invoker takes a run's own block even when
several runs of one container finish at the same instant (OpenWhisk lists interleaved logs of
concurrent activations as a known issue, docs/intra-concurrency.md). A blackbox image's blocks
are taken in the order they came.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import docker
import docker.errors
import docker.types
import requests

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
# The runtime's switch that makes each sentinel name its activation (`LogCollector`).
LOG_ACTIVATION_IDS = "WARMWHISK_LOG_ACTIVATION_IDS"
LABEL = "warmwhisk.devstack"
# OpenWhisk's defaults for every action container (InvokerReactive.scala).
OPENWHISK_DEFAULTS: dict[str, Any] = {
    "cap_drop": ["NET_RAW", "NET_ADMIN"],
    "ulimits": [docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
    "pids_limit": 1024,
}
# Docker's json-file log: OpenWhisk waits this long between lines for the sentinels.
LOG_IDLE_S = 2.0
# What one activation's block may hold (OpenWhisk's largest log limit) and how many finished
# blocks a container may have waiting to be taken: past them, lines and the oldest blocks are dropped.
MAX_BLOCK_BYTES = 10 * 1024 * 1024
MAX_WAITING_BLOCKS = 1024


class ContainerError(RuntimeError):
    """A container could not be created or started (the message says why, never a secret)."""


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    memory_mb: int
    env: Mapping[str, str]
    volumes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Its sentinels name their activation (the runtime with LOG_ACTIVATION_IDS; `LogCollector`).
    logs_by_activation: bool = False


class PortPool:
    """Free 127.0.0.1 ports, never one handed out recently (a dying container may still hold it)."""

    def __init__(self, memory: int = 4096) -> None:
        self._recent: collections.deque[int] = collections.deque(maxlen=memory)
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            for _ in range(64):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                if port not in self._recent:
                    self._recent.append(port)
                    return port
        raise ContainerError("no free 127.0.0.1 port")


class LogCollector:
    """Both streams of one container, cut into blocks at the sentinels (a thread per stream).

    `by_activation`: the container names the activation after each sentinel (the stack's runtime
    kinds), so a run takes only the block that names it, whatever order runs finish in, and a
    bare sentinel that action code prints never hands its lines to another run. Otherwise (a
    blackbox image) blocks are taken in the order they came, as OpenWhisk does.
    """

    def __init__(self, container: Any, by_activation: bool, max_line_chars: int = 16 * 1024) -> None:
        self._by_activation = by_activation
        # per stream, in arrival order: (the activation the sentinel named, or "", the lines)
        self._blocks: dict[str, collections.deque[tuple[str, list[str]]]] = {
            "stdout": collections.deque(maxlen=MAX_WAITING_BLOCKS),
            "stderr": collections.deque(maxlen=MAX_WAITING_BLOCKS),
        }
        self._changed = threading.Condition()
        self._max_line = max_line_chars
        self._threads = [
            threading.Thread(
                target=self._follow, args=(container, stream), daemon=True, name=f"logs-{stream}"
            )
            for stream in ("stdout", "stderr")
        ]
        for thread in self._threads:
            thread.start()

    def _follow(self, container: Any, stream: str) -> None:
        lines: list[str] = []
        size = 0  # bytes of `lines`: past MAX_BLOCK_BYTES the block's further lines are dropped
        pending = b""
        options = {"stdout": stream == "stdout", "stderr": stream == "stderr"}
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException, OSError):
            for chunk in container.logs(stream=True, follow=True, timestamps=True, **options):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                if len(pending) > self._max_line * 4:  # a line without end: cut it here
                    complete.append(pending)
                    pending = b""
                for raw in complete:
                    stamp, _, text = raw.decode(errors="replace").partition(" ")
                    if SENTINEL in text:
                        with self._changed:
                            self._blocks[stream].append((text.partition(SENTINEL)[2].strip(), lines))
                            self._changed.notify_all()
                        lines, size = [], 0
                    elif size < MAX_BLOCK_BYTES:
                        line = f"{stamp:<30} {stream}: {text[: self._max_line]}"
                        lines.append(line)
                        size += len(line)

    def _pop(self, stream: str, activation_id: str) -> list[str] | None:
        blocks = self._blocks[stream]
        if not self._by_activation:
            return blocks.popleft()[1] if blocks else None
        for i, (named, lines) in enumerate(blocks):
            if named == activation_id:
                del blocks[i]
                return lines
        return None

    def take(self, activation_id: str, timeout_s: float = LOG_IDLE_S) -> list[str] | None:
        """The block of each stream for `activation_id` (by activation, else the next one),
        interleaved by time; None when they do not arrive."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if self._ready(activation_id):
                    out = self._pop("stdout", activation_id), self._pop("stderr", activation_id)
                    return sorted((out[0] or []) + (out[1] or []))
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _ready(self, activation_id: str) -> bool:
        if not self._by_activation:
            return bool(self._blocks["stdout"] and self._blocks["stderr"])
        return all(any(named == activation_id for named, _ in self._blocks[s]) for s in ("stdout", "stderr"))


@dataclass
class Container:
    """A started container: its docker object, where it answers, its logs."""

    id: str
    port: int
    handle: Any
    logs: LogCollector

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Engine:
    """The Docker engine and an HTTP session to the containers. Docker calls run in threads."""

    def __init__(self, client: docker.DockerClient, api_host: str, stop_timeout_s: int = 2) -> None:
        self._client = client
        self._api_host = api_host
        self._ports = PortPool()
        self._stop_timeout_s = stop_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit here: the invoker bounds runs per container by its concurrency slots.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def start(self, spec: ContainerSpec, name: str, ready_timeout_s: float = 60.0) -> Container:
        port = self._ports.take()
        env = {**spec.env, "__OW_API_HOST": self._api_host, "PORT": str(port),
               "WARMWHISK_HOST": "127.0.0.1", "WARMWHISK_METRICS_PORT": "0"}  # fmt: skip
        options = {
            **OPENWHISK_DEFAULTS,
            "name": name, "environment": env, "labels": dict(spec.labels), "network_mode": "host",
            "mem_limit": f"{spec.memory_mb}m", "memswap_limit": f"{spec.memory_mb}m",
            "volumes": {k: dict(v) for k, v in spec.volumes.items()}, "detach": True,
        }  # fmt: skip

        def create() -> Any:
            try:
                handle = self._client.containers.create(spec.image, **options)
                handle.start()
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise ContainerError(f"starting a container of {spec.image}: {exc}") from exc
            return handle

        handle = await asyncio.to_thread(create)
        container = Container(handle.id, port, handle, LogCollector(handle, spec.logs_by_activation))
        try:
            await self._wait_listening(container, ready_timeout_s)
        except BaseException:
            await self.remove(container)
            raise
        return container

    async def _wait_listening(self, container: Container, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", container.port)
                writer.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ContainerError(
                        f"container {container.id[:12]} did not listen within {timeout_s:.0f} s"
                    ) from None
                if not await asyncio.to_thread(self._running, container):
                    raise ContainerError(f"container {container.id[:12]} exited at start") from None
                await asyncio.sleep(0.02)

    @staticmethod
    def _running(container: Container) -> bool:
        try:
            container.handle.reload()
        except (docker.errors.DockerException, requests.RequestException):
            return False
        return container.handle.status in ("created", "running")

    async def post(self, container: Container, path: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """One call; raises asyncio.TimeoutError past `timeout_s`, aiohttp.ClientError when the
        container closed the connection or died."""
        async with asyncio.timeout(timeout_s):
            async with self.session.post(
                container.url + path, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                return response.status, await response.read()

    async def remove(self, container: Container) -> None:
        def remove() -> None:
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                container.handle.remove(force=True)

        await asyncio.to_thread(remove)

    def remove_labelled(self, label: str) -> int:
        """Remove every container carrying `label` (`key=value`), e.g. left by a stack that was
        killed; the count removed."""
        found = self._client.containers.list(all=True, filters={"label": label})
        for handle in found:
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                handle.remove(force=True)
        return len(found)


def memory_of(handle_id: str, reader: Callable[[str], str] | None = None) -> int | None:
    """A container's current memory use in bytes from its cgroup (v2, then v1); None if gone."""
    read = reader or (lambda path: open(path).read())  # noqa: SIM115
    for path in (
        f"/sys/fs/cgroup/system.slice/docker-{handle_id}.scope/memory.current",
        f"/sys/fs/cgroup/docker/{handle_id}/memory.current",
        f"/sys/fs/cgroup/memory/docker/{handle_id}/memory.usage_in_bytes",
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(read(path).strip())
    return None
