"""A budget of activations stuck past their deadline (`Runtime.max_stuck`, WARMWHISK_MAX_STUCK).

Python cannot kill a thread: an action that catches the deadline interrupt (`except
BaseException`), or is blocked in C, keeps its thread and whatever it holds. Past the budget the
runtime reports itself unhealthy, answers new work 503 (OpenWhisk retries it elsewhere), and once
the activations it admitted are done the process exits non-zero, so its container is replaced.
"""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from runtime_harness import wait_until
from warmwhisk_runtime.config import RuntimeConfig
from warmwhisk_runtime.contract import SHUTTING_DOWN
from warmwhisk_runtime.isolation import LogSink
from warmwhisk_runtime.metrics import RuntimeMetrics
from warmwhisk_runtime.procmem import IdleHeapTrimmer
from warmwhisk_runtime.runner import DeadlineRunner
from warmwhisk_runtime.runtime import DEFAULT_MAX_STUCK, Runtime
from warmwhisk_runtime.server import WORKER_LOST_EXIT
from warmwhisk_runtime.store import ModelStore

CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}


# ------------------------------------------------------------------------------ unit: Runtime
@dataclass(frozen=True)
class _Config(RuntimeConfig):
    """RuntimeConfig with the `max_stuck` field it is to gain (read with getattr until then)."""

    max_stuck: int = 1


class _BlockingAction:
    """An action that blocks (in C, on an event) until the test releases it: its threads stay
    stuck past their deadlines, and still end when the test is over."""

    name = "blocking"

    def __init__(self, runner: DeadlineRunner) -> None:
        self.runner = runner
        self.gates: list[threading.Event] = []

    def start(self, value: Any, activation: Any, timeout_s: float | None) -> Any:
        gate = threading.Event()
        self.gates.append(gate)
        return self.runner.start(lambda: gate.wait() and value)

    def release(self) -> None:
        for gate in self.gates:
            gate.set()


class _DirectStandIn:
    """The mode: /init sets up the blocking action, /run calls it."""

    name = "direct"
    answers_with_envelope = False

    def __init__(self, action: _BlockingAction) -> None:
        self.action = action

    def init(self, fields: dict[str, Any], timeout_s: float | None) -> Any:
        return self.action

    def target(self, initialized: Any, forwarding: Any, wait: bool = True) -> Any:
        return initialized

    def health(self) -> dict[str, Any]:
        return {}


def _runtime(config: RuntimeConfig, action: _BlockingAction) -> Runtime:
    return Runtime(
        config, LogSink(io.StringIO(), io.StringIO()), RuntimeMetrics(), ModelStore(1 << 20),
        action.runner, _DirectStandIn(action), IdleHeapTrimmer(),  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def blocking_runtime() -> Any:
    action = _BlockingAction(DeadlineRunner())
    runtime = _runtime(_Config(allow_concurrent=True, max_concurrent=8), action)
    retired: list[float] = []
    runtime.retire = lambda: retired.append(time.monotonic())
    assert runtime.init(b'{"value": {"code": "x"}}')[0] == 200
    yield runtime, action, retired
    action.release()


def _soon(ms: int = 50) -> bytes:
    return f'{{"value": {{}}, "deadline": "{int(time.time() * 1000) + ms}"}}'.encode()


def test_the_budget_defaults_to_four_and_comes_from_the_config() -> None:
    assert DEFAULT_MAX_STUCK == 4
    runtime = _runtime(RuntimeConfig(), _BlockingAction(DeadlineRunner()))
    assert runtime.max_stuck == 4 and runtime.health()["max_stuck"] == 4


def test_past_the_budget_new_work_gets_503_and_the_idle_runtime_retires(blocking_runtime) -> None:
    runtime, action, retired = blocking_runtime
    status, body = runtime.run(_soon())
    assert status == 200 and "time limit" in body.decode()
    health = runtime.health()
    assert (health["status"], health["stuck_activations"], health["reason"]) == ("ok", 1, None)
    assert retired == []

    assert runtime.run(_soon())[0] == 200  # the second stuck one: past a budget of 1
    health = runtime.health()
    assert health["status"] == "unhealthy" and health["stuck_activations"] == 2
    assert "2 activations are still running past their deadlines" in health["reason"]
    assert len(retired) == 1  # nothing else was in flight: retired at once
    assert "warmwhisk_stuck_activations 2.0" in runtime.metrics.exposition().decode()

    for route in (runtime.run, runtime.init):
        status, body = route(b'{"value": {}}')
        assert status == SHUTTING_DOWN and b"shutting down" in body

    action.release()  # the stuck threads end; the verdict stays (the process is being replaced)
    deadline = time.monotonic() + 5
    while runtime.health()["stuck_activations"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.health()["stuck_activations"] == 0
    assert runtime.health()["status"] == "unhealthy" and runtime.run(b"{}")[0] == SHUTTING_DOWN
    assert len(retired) == 1


def test_retiring_waits_for_the_activations_already_admitted(blocking_runtime) -> None:
    runtime, action, retired = blocking_runtime
    with ThreadPoolExecutor(max_workers=1) as pool:
        admitted = pool.submit(runtime.run, b'{"value": {"admitted": true}}')  # no deadline
        while runtime.in_flight == 0:
            time.sleep(0.01)
        runtime.run(_soon())
        runtime.run(_soon())
        assert runtime.health()["status"] == "unhealthy"
        time.sleep(0.1)
        assert retired == [] and not admitted.done()  # draining: the admitted one still runs
        action.gates[0].set()
        status, body = admitted.result(timeout=5)
        assert (status, json.loads(body)) == (200, {"admitted": True})
    assert len(retired) == 1


# ------------------------------------------------------------------------- a runtime process
SPINNER = """
import os, time
def main(args):
    if args.get("spin"):
        try:
            while True:
                pass
        except BaseException:  # catches the deadline's interrupt, then never ends
            while True:
                pass
    while not os.path.exists(args["gate"]):  # until the test opens the gate
        time.sleep(0.02)
    return {"done": True}
"""


def test_stuck_activations_past_the_budget_drain_and_end_the_process(start_process_runtime, tmp_path):
    gate = tmp_path / "gate"
    runtime = start_process_runtime(env=CONCURRENT)
    assert runtime.init(SPINNER)[0] == 200

    def post(body: dict) -> tuple[int, Any]:
        response = requests.post(runtime.url + "/run", json=body, timeout=60)
        return response.status_code, response.json()

    def spin() -> tuple[int, Any]:
        return post({"value": {"spin": True}, "deadline": str(int(time.time() * 1000) + 300)})

    with ThreadPoolExecutor(max_workers=8) as pool:
        # Admitted before the runtime turns unhealthy: it must still be answered.
        admitted = pool.submit(post, {"value": {"gate": str(gate)}})
        wait_until(lambda: "warmwhisk_in_flight 1.0" in runtime.metrics(), 10, "the run to be admitted")
        for status, body in pool.map(lambda _: spin(), range(4)):  # the budget: 4
            assert status == 200 and "exceeded its time limit" in body["error"]
        assert runtime.health()["status"] == "ok" and runtime.health()["stuck_activations"] == 4
        status, body = spin()  # the fifth
        assert status == 200 and "exceeded its time limit" in body["error"]

        response = requests.get(runtime.metrics_url + "/healthz", timeout=5)
        health = response.json()
        assert response.status_code == 503 and health["status"] == "unhealthy"
        assert health["stuck_activations"] == 5 and "WARMWHISK_MAX_STUCK=4" in health["reason"]
        assert "warmwhisk_stuck_activations 5.0" in runtime.metrics()
        for path in ("/run", "/init"):
            response = requests.post(runtime.url + path, json={"value": {}}, timeout=10)
            assert response.status_code == 503 and "shutting down" in response.json()["error"]
            assert response.headers["Content-Length"] == str(len(response.content))
        assert runtime.alive() and not admitted.done()  # draining: the admitted run goes on

        gate.touch()
        assert admitted.result(timeout=30) == (200, {"done": True})
    assert runtime.process.wait(timeout=30) == WORKER_LOST_EXIT
    _, err = runtime.logs()
    assert "warmwhisk: unhealthy: 5 activations" in err
