"""Shared fixtures: the runtime as a local process and as a container from the built image."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_harness import (
    IMAGE,
    TEST_LABELS,
    TEST_SESSION_LABEL,
    ContainerRuntime,
    ProcessRuntime,
    RuntimeHandle,
)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - turned into a clear failure below
        pytest.fail(f"no Docker engine answers ({exc}); run `make setup` (it starts dockerd)")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} is missing; run `make image`")
    _remove_test_containers(client)
    yield client
    _remove_test_containers(client)
    client.close()


def _remove_test_containers(client: Any) -> None:
    import docker

    session = f"{TEST_SESSION_LABEL}={TEST_LABELS[TEST_SESSION_LABEL]}"
    for container in client.containers.list(all=True, filters={"label": session}):
        with contextlib.suppress(docker.errors.NotFound):  # already gone
            container.remove(force=True)


RuntimeFactory = Callable[..., RuntimeHandle]


def _factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeFactory]:
    started: list[RuntimeHandle] = []

    def start(
        env: dict[str, str] | None = None, volumes: dict | None = None, ready: bool = True
    ) -> RuntimeHandle:
        if kind == "process":
            handle: RuntimeHandle = ProcessRuntime(tmp_path / f"rt{len(started)}", env)
        else:
            handle = ContainerRuntime(request.getfixturevalue("docker_client"), env, volumes)
        started.append(handle)
        if ready:
            handle.wait_ready()
        return handle

    start.kind = kind  # type: ignore[attr-defined]
    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(params=["process", pytest.param("container", marks=pytest.mark.docker)])
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeFactory]:
    """Start runtimes of one kind (the test runs once per kind); all are stopped afterwards."""
    yield from _factory(request.param, request, tmp_path)


@pytest.fixture
def start_process_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeFactory]:
    """Local-process runtimes only, for tests that need no image (fuzzing, many restarts)."""
    yield from _factory("process", request, tmp_path)


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A private, password-protected redis-server on a free loopback port (tests/redis_harness.py)."""
    from redis_harness import running_redis

    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def devstack(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The dev stack (tests/devstack_harness.py), one per test module: namespaces guest and other.
    Once it stopped (SIGTERM), it must have exited cleanly and left none of its containers."""
    from devstack_harness import running_stack
    from warmwhisk_devstack.containers import LABEL
    from warmwhisk_devstack.stack import stack_id

    state_dir = tmp_path_factory.mktemp("devstack") / "stack"
    with running_stack(state_dir) as stack:
        yield stack
    # SIGTERM is the user's Ctrl-C: the stack stops cleanly, exit status 0.
    assert stack.process.returncode == 0, f"the stack exited with {stack.process.returncode}:\n{stack.log()}"
    label = f"{LABEL}={stack_id(state_dir)}"
    left = docker_client.containers.list(all=True, filters={"label": label})
    assert left == [], f"the stack left {len(left)} container(s) behind: {[c.name for c in left]}"


# Fixtures that start runtime processes or containers: a test using one is `slow` (seconds), and
# `make test-fast` leaves it out.
_SLOW_FIXTURES = frozenset(
    {
        "start_runtime", "start_process_runtime", "docker_client", "scaler", "backends", "docker_backends",
        "devstack",
    }
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
