"""The model store: single-flight loading, failure handling, LRU eviction under a budget."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from warmwhisk_runtime.store import Loaded, ModelError, ModelRequest, ModelStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request(key: str, size: int = 10, load=None, counter: list | None = None) -> ModelRequest:
    def default_load() -> Loaded:
        if counter is not None:
            counter.append(key)
        return Loaded(value=f"model-{key}", size_bytes=size)

    return ModelRequest(key=key, name=key, size_bytes=size, load=load or default_load)


def test_concurrent_first_requests_cause_exactly_one_load():
    store = ModelStore(budget_bytes=1000)
    loads = []
    gate = threading.Event()

    def slow_load() -> Loaded:
        loads.append(1)
        gate.wait(5)
        return Loaded("weights", 10)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(store.acquire, request("m", load=slow_load)) for _ in range(16)]
        time.sleep(0.2)  # every thread is now waiting on the one load
        gate.set()
        leases = [f.result(timeout=5) for f in futures]
    assert len(loads) == 1 and store.loads == 1
    assert {lease.value for lease in leases} == {"weights"}
    assert store.snapshot()[0]["users"] == 16
    for lease in leases:
        lease.release()
    assert store.snapshot()[0]["users"] == 0


def test_a_failed_load_is_reported_to_every_waiter_and_retried_next_time():
    store = ModelStore(budget_bytes=1000)
    attempts = []
    gate = threading.Event()

    def failing_then_ok() -> Loaded:
        attempts.append(1)
        if len(attempts) == 1:
            gate.wait(5)
            raise OSError("disk on fire")
        return Loaded("ok", 10)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(store.acquire, request("m", load=failing_then_ok)) for _ in range(8)]
        time.sleep(0.2)
        gate.set()
        errors = [f.exception(timeout=5) for f in futures]
    assert all(isinstance(e, ModelError) and "disk on fire" in str(e) for e in errors)
    assert len(attempts) == 1
    assert store.snapshot() == []  # forgotten
    with store.acquire(request("m", load=failing_then_ok)) as value:
        assert value == "ok"
    assert len(attempts) == 2


def test_least_recently_used_idle_models_are_evicted_to_fit_the_budget():
    clock = FakeClock()
    store = ModelStore(budget_bytes=30, clock=clock)
    loads: list[str] = []
    for key in ("a", "b", "c"):
        clock.now += 1
        store.acquire(request(key, counter=loads)).release()
    clock.now += 1
    store.acquire(request("a", counter=loads)).release()  # a is now the most recent
    clock.now += 1
    store.acquire(request("d", counter=loads)).release()  # evicts b, the least recently used
    assert sorted(m["name"] for m in store.snapshot()) == ["a", "c", "d"]
    assert store.evictions == 1 and loads == ["a", "b", "c", "d"]
    store.acquire(request("b", counter=loads)).release()  # b comes back: loaded again
    assert loads[-1] == "b" and store.used_bytes <= 30


def test_a_model_in_use_is_never_evicted():
    store = ModelStore(budget_bytes=20)
    held = store.acquire(request("a"))
    store.acquire(request("b")).release()
    store.acquire(request("c")).release()  # b (idle) goes, a (in use) stays
    assert sorted(m["name"] for m in store.snapshot()) == ["a", "c"]
    other = store.acquire(request("c"))
    with pytest.raises(ModelError, match="cannot be evicted"):
        store.acquire(request("d"))
    held.release()
    other.release()
    store.acquire(request("d")).release()
    assert held.value == "model-a"


def test_a_model_larger_than_the_budget_is_a_clear_error():
    store = ModelStore(budget_bytes=100)
    with pytest.raises(ModelError, match="more than the whole model memory budget"):
        store.acquire(request("huge", size=101))
    assert store.snapshot() == []
