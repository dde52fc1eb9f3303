"""The model store: each model loaded once per process, shared, and evicted under a budget.

- Keyed by content (`ModelKey`): the same weights built the same way are one entry, whoever asks.
- Single-flight: concurrent first requests wait for the one load in flight; a failed load is
  reported to all of them and forgotten, so the next request tries again.
- A memory budget with least-recently-used eviction of models that no activation holds; a model
  in use (leased) is never evicted. The budget is reserved before loading, so a model that
  cannot fit fails fast instead of pushing the container out of memory.

The store knows nothing about torch: loading is a function passed in (see `loaders.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


class ModelError(Exception):
    """A model could not be provided; the message says why, for the action's caller."""


@dataclass(frozen=True)
class Loaded:
    """What a loader returns: the model object and the bytes it accounts for."""

    value: Any
    size_bytes: int


@dataclass
class _Entry:
    key: Hashable
    name: str
    size_bytes: int
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: ModelError | None = None
    users: int = 0
    last_used: float = 0.0
    load_seconds: float = 0.0


class Lease:
    """A model in use. Release it (or use `with`) when the activation is done with it."""

    def __init__(self, store: ModelStore, entry: _Entry) -> None:
        self._store = store
        self._entry = entry
        self._released = False

    @property
    def value(self) -> Any:
        return self._entry.value

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._store._release(self._entry)

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *_exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class ModelRequest:
    """Everything the store needs to provide a model: identity, expected size, how to load."""

    key: Hashable
    name: str
    size_bytes: int
    load: Callable[[], Loaded]


class ModelStore:
    def __init__(self, budget_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_bytes = budget_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self.loads = 0  # completed loads, for metrics and tests
        self.evictions = 0

    def acquire(self, request: ModelRequest) -> Lease:
        """Lease the model, loading it first if nobody has (or while somebody is)."""
        with self._lock:
            entry = self._entries.get(request.key)
            loader = entry is None
            if loader:
                self._reserve(request)
                entry = _Entry(request.key, request.name, request.size_bytes)
                self._entries[request.key] = entry
            entry.users += 1
            entry.last_used = self._clock()
        if loader:
            self._load(entry, request)
        else:
            entry.done.wait()
        if entry.error is not None:
            with self._lock:
                entry.users -= 1
            raise entry.error
        return Lease(self, entry)

    def _reserve(self, request: ModelRequest) -> None:
        """Make room for `request` by evicting idle models, least recently used first."""
        if request.size_bytes > self.budget_bytes:
            raise ModelError(
                f"model {request.name!r} needs {_mb(request.size_bytes)}, more than the whole model "
                f"memory budget of {_mb(self.budget_bytes)} (WARMWHISK_MODEL_MEMORY_BYTES)"
            )
        idle = sorted((e for e in self._entries.values() if e.users == 0 and e.done.is_set()),
                      key=lambda e: e.last_used)  # fmt: skip
        while self._used() + request.size_bytes > self.budget_bytes and idle:
            victim = idle.pop(0)
            del self._entries[victim.key]
            self.evictions += 1
        if self._used() + request.size_bytes > self.budget_bytes:
            busy = ", ".join(sorted(e.name for e in self._entries.values()))
            raise ModelError(
                f"model {request.name!r} ({_mb(request.size_bytes)}) does not fit in the model memory "
                f"budget of {_mb(self.budget_bytes)}: the models in use now ({busy}) cannot be evicted"
            )

    def _used(self) -> int:
        return sum(e.size_bytes for e in self._entries.values())

    def _load(self, entry: _Entry, request: ModelRequest) -> None:
        started = time.perf_counter()
        try:
            loaded = request.load()
        except ModelError as exc:
            entry.error = exc
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes a clear model error
            entry.error = ModelError(f"loading model {request.name!r} failed: {type(exc).__name__}: {exc}")
        with self._lock:
            if entry.error is not None:
                self._entries.pop(entry.key, None)  # forget it: the next request retries
            else:
                entry.value = loaded.value
                entry.size_bytes = loaded.size_bytes
                entry.load_seconds = time.perf_counter() - started
                self.loads += 1
        entry.done.set()

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            entry.last_used = self._clock()

    def snapshot(self) -> list[dict[str, Any]]:
        """The resident models, for /healthz and metrics."""
        with self._lock:
            return [
                {"name": e.name, "bytes": e.size_bytes, "users": e.users,
                 "load_seconds": round(e.load_seconds, 3), "ready": e.done.is_set()}
                for e in self._entries.values()
            ]  # fmt: skip

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
