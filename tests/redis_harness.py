"""A private redis-server for tests: password-protected, on a free loopback port, restartable.

A thin wrapper over ``warmwhisk_scaler.redis_process.RedisProcess`` (which the benchmarks use too),
so tests and benchmarks start Redis the same way and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from warmwhisk_scaler.redis_process import RedisProcess, free_loopback_port

__all__ = ["RedisProcess", "free_loopback_port", "running_redis"]


@contextmanager
def running_redis() -> Iterator[RedisProcess]:
    """A started redis-server (``host``, ``port``, ``password``, ``url``, ``client()``, ``restart()``),
    stopped and its temporary directory removed afterwards."""
    with RedisProcess() as server:
        yield server
