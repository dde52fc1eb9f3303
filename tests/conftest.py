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


# Fixtures that start runtime processes or containers: a test using one is `slow` (seconds), and
# `make test-fast` leaves it out.
_SLOW_FIXTURES = frozenset(
    {"start_runtime", "start_process_runtime", "docker_client", "scaler", "backends", "docker_backends"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
