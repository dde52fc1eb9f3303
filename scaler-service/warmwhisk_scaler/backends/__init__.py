"""Backends that start and stop model hosts: Docker containers (default) or local processes.

``HostBackend`` (in ``base``) is the whole interface the scaler uses; ``DockerBackend`` is imported
lazily so that ``ProcessBackend`` works where the docker SDK is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BackendError, HostBackend, HostSpec, RunningHost
from .process_backend import ProcessBackend

if TYPE_CHECKING:
    from .docker_backend import DockerBackend

__all__ = ["BackendError", "DockerBackend", "HostBackend", "HostSpec", "ProcessBackend", "RunningHost"]


def __getattr__(name: str) -> Any:
    if name == "DockerBackend":
        from .docker_backend import DockerBackend

        return DockerBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
