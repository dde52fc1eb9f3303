"""How a model host is started, and what it promises back: the one place both sides read.

A model host is the action runtime (``python -m warmwhisk_runtime``) in host mode. Whoever starts
one (the scaler's Docker and process backends, the benchmarks, the tests) builds its command line
with ``runtime_command``, its environment with ``HostLaunch.environment`` and its secrets file with
``HostSecrets`` (its path in ``Env.SECRETS_FILE``); the runtime reads the same names (``Env``) in its
configuration. In return a host heartbeats a ``HostRecord`` every
``heartbeat_s`` and is dropped from routing ``heartbeat_ttl_s(heartbeat_s)`` after its last one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The runtime's module, and gunicorn's process title for it: a backend recognises its host
# processes in /proc by either.
RUNTIME_MODULE = "warmwhisk_runtime"
PROC_NAME = "warmwhisk-runtime"
# The interpreter inside the runtime image.
IMAGE_PYTHON = "/opt/warmwhisk/bin/python"
# Where a host container sees the model folder (mounted read-only).
MODELS_MOUNT = "/models"

# A host that missed this many heartbeats in a row is gone.
HEARTBEATS_TO_EXPIRE = 3
# The share of a host's memory limit its resident models may use (the rest: the runtime itself,
# activations' tensors, the C heap).
MODEL_SHARE_OF_MEMORY = (3, 4)


class Env:
    """Names of the environment variables of the runtime's modes (the runtime documents each)."""

    MODE = "WARMWHISK_MODE"  # "direct", "routed" or "host"
    REGISTRY_URL = "WARMWHISK_ROUTER_URL"  # redis://[user:password@]host:port/db
    REDIS_PREFIX = "WARMWHISK_REDIS_PREFIX"
    HOST_ID = "WARMWHISK_HOST_ID"
    NAMESPACE = "WARMWHISK_NAMESPACE"
    HOST_ACTIONS = "WARMWHISK_HOST_ACTIONS"  # comma-separated action keys
    ADVERTISE = "WARMWHISK_ADVERTISE"  # host:port routers use to reach the host
    HEARTBEAT_S = "WARMWHISK_HEARTBEAT_S"
    MAX_CONCURRENT = "WARMWHISK_MAX_CONCURRENT"
    KEEPALIVE_S = "WARMWHISK_KEEPALIVE_S"
    MODEL_MEMORY_BYTES = "WARMWHISK_MODEL_MEMORY_BYTES"
    SECRETS_FILE = "WARMWHISK_SECRETS_FILE"  # a host's `HostSecrets`, read once and removed

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(v for k, v in vars(cls).items() if k.isupper())


def heartbeat_ttl_s(heartbeat_s: float) -> float:
    """How long a host record lives without a new heartbeat."""
    return HEARTBEATS_TO_EXPIRE * heartbeat_s


def model_memory_budget(memory_limit_bytes: int) -> int:
    """Bytes of resident models a process with this memory limit keeps (LRU beyond)."""
    numerator, denominator = MODEL_SHARE_OF_MEMORY
    return memory_limit_bytes * numerator // denominator


def runtime_flags(port: int, metrics_port: int, host: str = "127.0.0.1") -> list[str]:
    """The runtime's address flags: action port and metrics port."""
    return ["--host", host, "--port", str(port), "--metrics-port", str(metrics_port)]


def runtime_command(python: str, port: int, metrics_port: int, host: str = "127.0.0.1") -> list[str]:
    """The whole command line of a runtime bound to `host` (loopback by default)."""
    return [python, "-m", RUNTIME_MODULE, *runtime_flags(port, metrics_port, host)]


class SecretsError(RuntimeError):
    """A secrets file that cannot be read, parsed or removed (the message never holds a secret)."""


@dataclass(frozen=True)
class HostSecrets:
    """What a model host must know and nothing else may read: the registry's address with its
    namespace's credential, and the token routers must send it. The backend writes them to a
    file only the host's user can read; the host reads the file once at start and removes it,
    before any action code is loaded (nothing in the environment, the command line, `docker
    inspect` or a readable file afterwards)."""

    registry_url: str
    token: str

    def dump(self) -> str:
        return json.dumps(asdict(self))

    def write(self, path: Path) -> None:
        """Create `path` readable by its owner only (0400), failing if it exists."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as file:
            file.write(self.dump())

    @classmethod
    def take(cls, path: str) -> HostSecrets:
        """Read the secrets file and remove it; raises `SecretsError` (a host must not start with
        its secrets left readable, nor without them)."""
        try:
            raw = Path(path).read_text()
            os.unlink(path)
        except OSError as exc:
            reason = exc.strerror
            raise SecretsError(f"the secrets file {path} could not be read and removed: {reason}") from None
        try:
            value = json.loads(raw)
            return cls(str(value["registry_url"]), str(value["token"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SecretsError(f"the secrets file {path} is not a host's secrets") from exc


@dataclass(frozen=True)
class HostLaunch:
    """Everything a model host needs to be told at start."""

    host_id: str
    # The one namespace whose actions the host serves.
    namespace: str
    # Action keys it loads at start (more are loaded on first use).
    actions: Sequence[str]
    prefix: str = "warmwhisk"
    # Most activations it runs at once (its own cap; the scaler's routing limit is below it).
    max_concurrent: int = 32
    heartbeat_s: float = 1.0
    # Idle keep-alive of router connections (s); None: the runtime's default.
    keepalive_s: int | None = None
    # The host's memory limit (bytes); its model budget is `model_memory_budget` of it.
    memory_bytes: int | None = None

    def environment(self) -> dict[str, str]:
        env = {
            Env.MODE: "host",
            Env.HOST_ID: self.host_id,
            Env.NAMESPACE: self.namespace,
            Env.HOST_ACTIONS: ",".join(self.actions),
            Env.REDIS_PREFIX: self.prefix,
            Env.MAX_CONCURRENT: str(self.max_concurrent),
            Env.HEARTBEAT_S: repr(float(self.heartbeat_s)),
        }
        if self.keepalive_s is not None:
            env[Env.KEEPALIVE_S] = str(self.keepalive_s)
        if self.memory_bytes:
            env[Env.MODEL_MEMORY_BYTES] = str(model_memory_budget(self.memory_bytes))
        return env
