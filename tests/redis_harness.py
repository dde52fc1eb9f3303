"""A private ``redis-server`` process for tests and benchmarks (the stack's own launcher,
`warmwhisk_devstack.services.RedisProcess`): password-protected, loopback-only, no persistence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from warmwhisk_devstack.services import RedisProcess, free_loopback_port

__all__ = ["RedisProcess", "free_loopback_port", "running_redis"]


@contextmanager
def running_redis() -> Iterator[RedisProcess]:
    """A started redis-server (``host``, ``port``, ``password``, ``url``, ``client()``, ``restart()``),
    stopped and its temporary directory removed afterwards."""
    with RedisProcess() as server:
        yield server
