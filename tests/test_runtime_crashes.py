"""Init-once under crashes: a runtime whose worker process dies never serves again.

The action lives in gunicorn's one worker. A replacement worker would be uninitialized and accept
a second /init, which OpenWhisk's contract forbids, so when the worker dies for any reason the
whole runtime exits non-zero and Docker/OpenWhisk replace the container (`RuntimeServer`).
Runs in flight in the dead worker see their connection close. SIGTERM stays a graceful stop.

Each test runs against a local process and a container from the image (`start_runtime`), except
the out-of-memory one (a container with a memory limit) and the boot failure (a process).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

import runtime_harness
from runtime_harness import ContainerRuntime, ProcessRuntime, RuntimeHandle, wait_until
from warmwhisk_runtime.server import WORKER_LOST_EXIT

CONCURRENT = {"__OW_ALLOW_CONCURRENT": "true"}
ECHO = "def main(args):\n    return args\n"
CRASHER = """
import os, time
def main(args):
    if "exit" in args:
        os._exit(args["exit"])
    time.sleep(args.get("s", 0))
    return {"done": True}
"""


# -- helpers -----------------------------------------------------------------------------------
def arbiter_pid(runtime: RuntimeHandle) -> int:
    """The host pid of the runtime's gunicorn arbiter (a container's first process)."""
    if isinstance(runtime, ProcessRuntime):
        return runtime.process.pid
    assert isinstance(runtime, ContainerRuntime)
    runtime.container.reload()
    return int(runtime.container.attrs["State"]["Pid"])


def worker_pid(runtime: RuntimeHandle) -> int:
    """The host pid of its one worker (the process that holds the action)."""
    arbiter = arbiter_pid(runtime)
    (child,) = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return int(child)


def exit_status(runtime: RuntimeHandle, timeout_s: float = 30.0) -> int:
    if isinstance(runtime, ProcessRuntime):
        return runtime.process.wait(timeout=timeout_s)
    assert isinstance(runtime, ContainerRuntime)
    return int(runtime.container.wait(timeout=timeout_s)["StatusCode"])


def post_run(runtime: RuntimeHandle, value: dict, timeout_s: float = 60.0) -> tuple[int, Any]:
    """A /run on a connection of its own, as the invoker's pooled client sends overlapping runs."""
    response = requests.post(runtime.url + "/run", json={"value": value}, timeout=timeout_s)
    return response.status_code, response.json()


def run_in_flight(runtime: RuntimeHandle, pool: ThreadPoolExecutor) -> Future:
    """A minute-long run, returned once the runtime is running it."""
    future = pool.submit(post_run, runtime, {"s": 60})
    wait_until(lambda: "warmwhisk_in_flight 1.0" in runtime.metrics(), 10, "the run to be in flight")
    return future


def assert_closed_not_hung(future: Future, started: float) -> None:
    with pytest.raises(requests.ConnectionError):
        future.result(timeout=20)
    assert time.monotonic() - started < 15, "the run in flight hung instead of seeing its connection close"


def assert_never_initialized_again(runtime: RuntimeHandle) -> None:
    """Until the runtime is gone, no /init is answered 200 (connection errors are the norm)."""
    end = time.monotonic() + 30
    while runtime.alive():
        assert time.monotonic() < end, "the runtime is still up 30 s after its worker died"
        try:
            response = requests.post(runtime.url + "/init", json={"value": {"code": ECHO}}, timeout=5)
        except requests.ConnectionError:
            pass
        else:
            assert response.status_code != 200, "a second /init was accepted by a fresh worker"
        time.sleep(0.05)


# -- crashes -------------------------------------------------------------------------------------
def test_os_exit_in_a_run_ends_the_runtime_and_closes_the_runs_in_flight(start_runtime):
    runtime = start_runtime(env=CONCURRENT)
    assert runtime.init(CRASHER)[0] == 200
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = run_in_flight(runtime, pool)
        started = time.monotonic()
        with pytest.raises(requests.ConnectionError):
            post_run(runtime, {"exit": 3})
        assert_closed_not_hung(in_flight, started)
    assert_never_initialized_again(runtime)
    assert exit_status(runtime) != 0


@pytest.mark.parametrize("status", [0, 7])
def test_os_exit_while_the_code_loads_ends_the_runtime(start_runtime, status):
    # Status 0 too: the worker's exit status says nothing; that the server still listens does.
    runtime = start_runtime()
    with pytest.raises(requests.ConnectionError):
        runtime.init(f"import os\nos._exit({status})\n")
    assert_never_initialized_again(runtime)
    assert exit_status(runtime) == WORKER_LOST_EXIT


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGBUS], ids=["SIGKILL", "SIGBUS"])
def test_a_worker_killed_by_a_signal_ends_the_runtime(start_runtime, sig):
    # SIGKILL: the OOM killer or `kill -9` from the host; SIGBUS: a memory-mapped model file
    # truncated under the process.
    runtime = start_runtime(env=CONCURRENT)
    assert runtime.init(CRASHER)[0] == 200
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = run_in_flight(runtime, pool)
        started = time.monotonic()
        os.kill(worker_pid(runtime), sig)
        assert_closed_not_hung(in_flight, started)
    assert_never_initialized_again(runtime)
    assert exit_status(runtime) == WORKER_LOST_EXIT
    _, err = runtime.logs()
    assert "exited while serving" in err


class _WithLimits:
    """A Docker client whose `containers.run` adds resource limits (ContainerRuntime has none)."""

    def __init__(self, client: Any, **limits: Any) -> None:
        self._client = client
        self._limits = limits

    @property
    def containers(self) -> _WithLimits:
        return self

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.containers.run(*args, **kwargs, **self._limits)


@pytest.mark.docker
def test_out_of_memory_in_a_512m_container_ends_it(docker_client):
    runtime = ContainerRuntime(_WithLimits(docker_client, mem_limit="512m", memswap_limit="512m"))
    try:
        runtime.wait_ready(timeout_s=60)
        hog = "def main(args):\n    data = b'x' * (2 << 30)\n    return {'n': len(data)}\n"
        assert runtime.init(hog)[0] == 200
        with pytest.raises(requests.ConnectionError):
            runtime.run({}, timeout=120)
        assert_never_initialized_again(runtime)
        assert exit_status(runtime) == WORKER_LOST_EXIT
        _, err = runtime.logs()
        assert "SIGKILL" in err  # gunicorn: "Worker (pid:..) was sent SIGKILL! Perhaps out of memory?"
    finally:
        runtime.stop()


def test_a_worker_that_cannot_boot_is_not_retried(start_process_runtime, monkeypatch):
    # Its metrics port is taken: building the runtime in the worker fails.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([runtime_harness.free_port(), taken.getsockname()[1]])
        monkeypatch.setattr(runtime_harness, "free_port", lambda: next(ports))
        runtime = start_process_runtime(ready=False)
        assert runtime.process.wait(timeout=60) != 0
    _, err = runtime.logs()
    assert "Address already in use" in err


# -- the graceful stop ---------------------------------------------------------------------------
def test_sigterm_is_a_graceful_stop_with_status_0(start_runtime):
    runtime = start_runtime(env=CONCURRENT)
    assert runtime.init(CRASHER)[0] == 200
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(post_run, runtime, {"s": 1.5})
        wait_until(lambda: "warmwhisk_in_flight 1.0" in runtime.metrics(), 10, "the run to be in flight")
        if isinstance(runtime, ProcessRuntime):
            runtime.process.send_signal(signal.SIGTERM)
        else:
            runtime.container.kill(signal="SIGTERM")
        assert in_flight.result(timeout=30) == (200, {"done": True})  # finished, not cut off
    assert exit_status(runtime) == 0
    _, err = runtime.logs()
    assert "exited while serving" not in err
