"""Invoker behaviour: each activation runs in a real container placed by OpenWhisk's pool rules.

`Invoker.run` takes an action document and a payload and returns the stored activation record
once the run ended. Between: `Pool.place` (warm, prewarm, cold, evict, or wait for a slot), the
container's start and /init (bodies as ContainerProxy builds them), /run with the action's time
limit, the outcome classified as OpenWhisk does, the record stored, and the logs added when both
streams' sentinels arrived. A developer error (time-out, crash, bad answer) removes the container,
an application error keeps it (ContainerProxy). Prewarm containers (the manifest's stem cells) are
kept at their count; action containers idle past `idle_timeout_s` are removed.

`Mode` says how action containers are configured: "warmwhisk" (the invoker patch's settings:
concurrency on, routed to warm model hosts) or "stock" (OpenWhisk's own settings: one activation
per container, the action and its model in the container).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER

from . import actions, activations, messages
from .activations import Outcome
from .containers import LOG_ACTIVATION_IDS, Container, ContainerError, ContainerSpec, Engine
from .pool import ActionKey, Placement, Pool, Slot
from .store import Store

log = logging.getLogger("warmwhisk.devstack")


@dataclass(frozen=True)
class InvokerSettings:
    """`env` and `volumes`: what every action container gets (from the invoker patch).
    `images`: the image of each manifest kind. `credential_kinds`: kinds whose /init carries the
    namespace's registry credential (routed ML actions)."""

    env: Mapping[str, str]
    volumes: Mapping[str, Mapping[str, str]]
    images: Mapping[str, str]
    credential_kinds: frozenset[str] = frozenset()
    idle_timeout_s: float = 600.0
    max_response_bytes: int = 1024 * 1024  # whisk.activation.payload.max
    labels: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0


Credentials = Callable[[str], Awaitable[str]]


class InitFailed(ContainerError):
    """A container's /init failed: the runs waiting for it get the same developer error."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"/init failed: {json.dumps(outcome.result)[:200]}")
        self.outcome = outcome


class Invoker:
    def __init__(
        self,
        engine: Engine,
        pool: Pool,
        store: Store,
        settings: InvokerSettings,
        credentials: Credentials | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._store = store
        self._settings = settings
        self._credentials = credentials
        self._clock = clock
        self._containers: dict[str, Container] = {}
        # Resolved when a slot's container is ready for runs (set to the error when it failed).
        self._ready: dict[str, asyncio.Future[Container]] = {}
        self._slot_freed = asyncio.Condition()
        self._background: set[asyncio.Task[Any]] = set()
        self._names = 0
        self.counters = {"cold": 0, "prewarm": 0, "warm": 0, "waited": 0, "evicted": 0, "idle_removed": 0}

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self._reap_idle())
        self._refill_prewarms()

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._engine.remove(c) for c in self._containers.values()))
        self._containers.clear()
        await self._engine.close()

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def snapshot(self) -> dict[str, Any]:
        """Containers now (by state) and what the pool did so far."""
        slots = list(self._pool.slots.values())
        return {
            "containers": len(slots),
            "prewarm": sum(1 for s in slots if s.is_prewarm),
            "busy": sum(1 for s in slots if s.active),
            "memory_mb": self._pool.memory_used_mb,
            **self.counters,
        }

    # -- one activation ------------------------------------------------------------------------------
    async def run(
        self,
        action: Mapping[str, Any],
        namespace: str,
        payload: Mapping[str, Any],
        activation_id: str,
        received: float,
    ) -> dict[str, Any]:
        """Run one activation to its end; the stored record (logs follow when collected)."""
        key = ActionKey(namespace, f"{action['namespace']}/{action['name']}", action["version"])
        limits = action["limits"]
        kind = action["exec"]["kind"]
        placement, ready = await self._place(key, kind, limits["memory"], limits["concurrency"])
        slot = placement.slot
        started = self._clock()
        init_ms: int | None = None
        container: Container | None = None
        try:
            if placement.kind == "warm":
                container = await ready
                started = self._clock()
            else:
                container, outcome, init_ms = await self._initialise(
                    placement, ready, action, namespace, activation_id
                )
                if outcome is not None:
                    return self._finish(
                        action, namespace, activation_id, received, started, init_ms, outcome, None
                    )
            outcome = await self._run(container, action, payload, activation_id)
        except InitFailed as exc:  # waited for a container whose /init failed
            outcome, container = exc.outcome, None
        except ContainerError as exc:
            log.warning("activation %s: %s", activation_id, exc)
            outcome = activations.no_resources()
            container = None
        except asyncio.CancelledError:
            self._discard(slot.id)
            raise
        finally:
            self._pool.release(slot.id, self._clock())
            await self._notify()
        if outcome.status_code == activations.DEVELOPER_ERROR:
            self._discard(slot.id)  # ContainerProxy: a developer error destroys the container
        return self._finish(action, namespace, activation_id, received, started, init_ms, outcome, container)

    async def _place(
        self, key: ActionKey, kind: str, memory_mb: int, concurrency: int
    ) -> tuple[Placement, asyncio.Future[Container]]:
        """A slot for the run, and the future of its container (resolved once it is ready)."""
        waited = False
        async with self._slot_freed:
            while True:
                placement = self._pool.place(key, kind, memory_mb, concurrency, self._clock())
                if placement is not None:
                    break
                waited = True
                await self._slot_freed.wait()
        self.counters[placement.kind] += 1
        self.counters["waited"] += waited
        for slot in placement.evicted:
            self.counters["evicted"] += 1
            self._remove_container(slot.id)
        if placement.kind != "warm":
            self._ready[placement.slot.id] = asyncio.get_running_loop().create_future()
            self._refill_prewarms()
        return placement, self._ready[placement.slot.id]

    async def _notify(self) -> None:
        async with self._slot_freed:
            self._slot_freed.notify_all()

    async def _initialise(
        self,
        placement: Placement,
        ready: asyncio.Future[Container],
        action: Mapping[str, Any],
        namespace: str,
        activation_id: str,
    ) -> tuple[Container | None, Outcome | None, int]:
        """Start (cold) and /init the slot's container; (container, failure or None, init ms).
        `ready` is resolved for the runs placed on the same slot meanwhile."""
        slot = placement.slot
        begun = self._clock()
        try:
            container = self._containers.get(slot.id)
            if container is None:
                container = await self._engine.start(
                    self._spec(action["exec"], slot.memory_mb), self._name(), self._settings.start_timeout_s
                )
                self._containers[slot.id] = container
                if slot.id not in self._pool.slots:  # removed meanwhile (stop)
                    raise ContainerError("the stack is stopping")
            failure = await self._init(container, action, namespace, activation_id)
        except (ContainerError, asyncio.CancelledError) as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, ContainerError) else ContainerError("cancelled"))
                ready.exception()  # retrieved: waiters see it, nobody else must
            self._discard(slot.id)
            raise
        init_ms = round((self._clock() - begun) * 1000)
        if failure is not None:
            ready.set_exception(InitFailed(failure))
            ready.exception()
            self._discard(slot.id)
            return None, failure, init_ms
        self._pool.ready(slot.id)
        ready.set_result(container)
        return container, None, init_ms

    async def _init(
        self, container: Container, action: Mapping[str, Any], namespace: str, activation_id: str
    ) -> Outcome | None:
        exec_ = action["exec"]
        env: dict[str, Any] = {key: _as_env(v) for key, v in actions.init_parameters(action).items()}
        if (
            exec_["kind"] in self._settings.credential_kinds
            and CREDENTIAL_PARAMETER not in env
            and self._credentials
        ):
            env[CREDENTIAL_PARAMETER] = await self._credentials(action["namespace"])
        timeout_ms = action["limits"]["timeout"]
        env.update(self._ow_env(action, namespace, activation_id, timeout_ms))
        value = {
            "name": action["name"],
            "main": exec_.get("main", "main"),
            "binary": exec_["binary"],
            "env": env,
        }
        if "code" in exec_:
            value["code"] = exec_["code"]
        body = json.dumps({"value": value}).encode()
        try:
            status, answer = await self._engine.post(container, "/init", body, timeout_ms / 1000)
        except TimeoutError:
            return activations.timed_out(timeout_ms, during_init=True)
        except aiohttp.ClientError:
            return activations.exited(during_init=True)
        return activations.classify_init(status, answer)

    async def _run(
        self, container: Container, action: Mapping[str, Any], payload: Mapping[str, Any], activation_id: str
    ) -> Outcome:
        timeout_ms = action["limits"]["timeout"]
        context = self._ow_env(action, action["namespace"], activation_id, timeout_ms)
        body = {"value": actions.run_arguments(action, payload),
                **{k.removeprefix("__OW_").lower(): v for k, v in context.items()}}  # fmt: skip
        try:
            status, answer = await self._engine.post(
                container, "/run", json.dumps(body).encode(), timeout_ms / 1000
            )
        except TimeoutError:
            return activations.timed_out(timeout_ms, during_init=False)
        except aiohttp.ClientError:
            return activations.exited(during_init=False)
        return activations.classify_run(status, answer, self._settings.max_response_bytes)

    def _ow_env(
        self, action: Mapping[str, Any], namespace: str, activation_id: str, timeout_ms: int
    ) -> dict[str, str]:
        """The activation's context (ContainerProxy: `__OW_<KEY>`; the deadline in epoch ms)."""
        return {
            "__OW_NAMESPACE": namespace,
            "__OW_ACTION_NAME": f"/{action['namespace']}/{action['name']}",
            "__OW_ACTION_VERSION": action["version"],
            "__OW_ACTIVATION_ID": activation_id,
            "__OW_TRANSACTION_ID": activation_id,
            "__OW_DEADLINE": str(round(self._clock() * 1000) + timeout_ms),
        }

    def _finish(
        self,
        action: Mapping[str, Any],
        namespace: str,
        activation_id: str,
        received: float,
        started: float,
        init_ms: int | None,
        outcome: Outcome,
        container: Container | None,
    ) -> dict[str, Any]:
        end = self._clock()
        stored = activations.record(
            activation_id=activation_id, namespace=namespace, action=action, outcome=outcome,
            start_ms=round(started * 1000), end_ms=round(end * 1000),
            wait_ms=max(0, round((started - received) * 1000)), init_ms=init_ms, logs=[],
        )  # fmt: skip
        self._store.add_activation(stored)
        if container is not None:
            self._spawn(self._collect_logs(container, stored, action["limits"]["logs"] * 1024 * 1024))
        return stored

    async def _collect_logs(self, container: Container, stored: dict[str, Any], limit_bytes: int) -> None:
        """The run's block of each stream; taken even at a log limit of 0 (then dropped), so the
        next run on this container gets its own."""
        lines = await asyncio.to_thread(container.logs.take, stored["activationId"])
        if limit_bytes == 0:
            return
        if lines is None:
            lines = ["There was an issue while collecting your logs. Data might be missing."]
        kept, size = [], 0
        for line in lines:
            size += len(line.encode())
            if size > limit_bytes:
                kept.append(messages.LOGS_TRUNCATED.format(limit=limit_bytes))
                break
            kept.append(line)
        self._store.add_activation({**stored, "logs": kept})

    # -- containers ----------------------------------------------------------------------------------
    def _spec(self, exec_: Mapping[str, Any], memory_mb: int) -> ContainerSpec:
        blackbox = exec_["kind"] == actions.BLACKBOX
        image = exec_["image"] if blackbox else self._settings.images[exec_["kind"]]
        # Only the stack's own runtime image is known to honour the switch; a blackbox image
        # gets the same environment but may print bare sentinels.
        by_activation = not blackbox and self._settings.env.get(LOG_ACTIVATION_IDS) == "true"
        return ContainerSpec(
            image, memory_mb, self._settings.env, self._settings.volumes, self._settings.labels, by_activation
        )

    def _name(self) -> str:
        self._names += 1
        stack = self._settings.labels.get("warmwhisk.devstack", "stack")
        return f"wsk-{stack}-{self._names}"

    def _discard(self, slot_id: str) -> None:
        if self._pool.remove(slot_id) is not None:
            self._remove_container(slot_id)

    def _remove_container(self, slot_id: str) -> None:
        self._ready.pop(slot_id, None)
        container = self._containers.pop(slot_id, None)
        if container is not None:
            self._spawn(self._engine.remove(container))
        self._spawn(self._notify())
        self._refill_prewarms()

    def _refill_prewarms(self) -> None:
        for slot in self._pool.prewarms_wanted():
            self._spawn(self._start_prewarm(slot))

    async def _start_prewarm(self, slot: Slot) -> None:
        exec_ = {"kind": slot.kind}
        try:
            container = await self._engine.start(
                self._spec(exec_, slot.memory_mb), self._name(), self._settings.start_timeout_s
            )
        except ContainerError as exc:
            log.warning("prewarm %s: %s", slot.kind, exc)
            self._pool.remove(slot.id)
            return
        if slot.id not in self._pool.slots:
            await self._engine.remove(container)
            return
        self._containers[slot.id] = container
        self._pool.ready(slot.id)
        self.counters["prewarm_started"] = self.counters.get("prewarm_started", 0) + 1
        await self._notify()

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._settings.idle_timeout_s / 4))
            for slot in self._pool.idle(self._clock(), self._settings.idle_timeout_s):
                self.counters["idle_removed"] += 1
                self._discard(slot.id)


def _as_env(value: Any) -> str:
    """An init parameter as /init's env holds it (WhiskAction.scala: strings as is, null as "",
    anything else as compact JSON)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))
