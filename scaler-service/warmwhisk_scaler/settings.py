"""The scaler's configuration: read once, from flags and environment, into one typed object."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warmwhisk_protocol.host import heartbeat_ttl_s

from .policy import POLICIES


@dataclass(frozen=True)
class ScalerSettings:
    """Every knob of the scaler service; flag / environment variable / default / unit."""

    # The registry's Redis, with its password: redis://:PASSWORD@HOST:PORT/DB.
    # `--redis-url`, `WARMWHISK_REDIS_URL`. Required.
    redis_url: str
    # The URL hosts use to reach the same Redis (differs when hosts see another network).
    # `--host-redis-url`, `WARMWHISK_HOST_REDIS_URL`; default: redis_url.
    host_redis_url: str
    # Bearer token every API call but /healthz needs. `--token`, `WARMWHISK_SCALER_TOKEN`. Required.
    token: str
    # API address. `--host` (127.0.0.1), `--port`, `PORT` (8090).
    host: str = "127.0.0.1"
    port: int = 8090
    # Key prefix in Redis. `--prefix`, `WARMWHISK_REDIS_PREFIX` ("warmwhisk").
    prefix: str = "warmwhisk"
    # Where model hosts run: "docker" (the docker SDK, default) or "process" (local processes).
    # `--backend`, `WARMWHISK_SCALER_BACKEND`.
    backend: str = "docker"
    # The runtime image of model hosts. `--image`, `WARMWHISK_IMAGE` ("warmwhisk/runtime:dev").
    image: str = "warmwhisk/runtime:dev"
    # Host folder mounted read-only at /models in every host. `--model-dir`, `WARMWHISK_MODEL_DIR`.
    model_dir: str | None = None
    # Memory limit of each host container (bytes). `--host-memory`, `WARMWHISK_HOST_MEMORY_BYTES`.
    host_memory_bytes: int | None = None
    # Policy used for pools without their own ("hybrid", "openwhisk", "kpa", "rayserve").
    # `--policy`, `WARMWHISK_SCALER_POLICY`.
    policy: str = "hybrid"
    # Control loop period (s). `--tick`, `WARMWHISK_SCALER_TICK_S` (1.0).
    tick_s: float = 1.0
    # Host heartbeat period (s); a host whose heartbeats stop for 3 periods is dropped.
    # `--heartbeat`, `WARMWHISK_HEARTBEAT_S` (1.0).
    heartbeat_s: float = 1.0
    # Window over which rates and latencies are measured (s). `WARMWHISK_SCALER_WINDOW_S` (10).
    window_s: float = 10.0
    # A host not warm this long after its start is given up and stopped (s).
    # `WARMWHISK_SCALER_START_TIMEOUT_S` (120).
    start_timeout_s: float = 120.0
    # Most activations one host may run at once (its own cap; the policy's limit is below it).
    # `WARMWHISK_HOST_MAX_CONCURRENT` (32).
    host_max_concurrent: int = 32
    # State folder of the process backend. `--state-dir`, `WARMWHISK_SCALER_STATE_DIR`.
    state_dir: str = "/tmp/warmwhisk-scaler"
    # Most hosts this scaler runs at once, all pools together; manual scale and every pool's
    # max_hosts stay below it. None: sized from the backend's memory at start (its memory over
    # `host_memory_bytes`, or 1 GiB per host). `--max-hosts`, `WARMWHISK_SCALER_MAX_HOSTS`.
    max_hosts: int | None = None
    # Most host starts per tick, all pools together (the rest wait for the next tick).
    # `WARMWHISK_SCALER_MAX_STARTS_PER_TICK` (4).
    max_starts_per_tick: int = 4
    # After a failed start, a pool waits this long before the next one, doubling per failure in a
    # row up to `start_backoff_max_s` (s). `WARMWHISK_SCALER_START_BACKOFF_S` (1), `..._MAX_S` (60).
    start_backoff_s: float = 1.0
    start_backoff_max_s: float = 60.0
    # Accept a Redis that asks for no password (the default user open to anyone). Off: the
    # scaler refuses to start against it. `--insecure-no-auth`.
    insecure_no_auth: bool = False
    # A rotated namespace credential stays valid this long after its successor is issued (s),
    # so routed containers holding it keep working until they are replaced.
    # `WARMWHISK_SCALER_CREDENTIAL_GRACE_S` (3600).
    credential_grace_s: float = 3600.0

    @property
    def lease_ttl_s(self) -> float:
        """The leader's lease: 10 s (like Kubernetes' leader election), at least three ticks, so a
        leader starved of CPU for a few seconds keeps it; a crashed one is replaced in 10 s."""
        return max(10.0, 3 * self.tick_s)

    @property
    def heartbeat_ttl_s(self) -> float:
        return heartbeat_ttl_s(self.heartbeat_s)


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> ScalerSettings:
    parser = argparse.ArgumentParser(
        prog="python -m warmwhisk_scaler",
        description="warmwhisk scaler: registry, routing and hybrid scaling",
    )
    env = environ.get
    parser.add_argument("--redis-url", default=env("WARMWHISK_REDIS_URL"))
    parser.add_argument("--host-redis-url", default=env("WARMWHISK_HOST_REDIS_URL"))
    parser.add_argument("--token", default=env("WARMWHISK_SCALER_TOKEN"))
    parser.add_argument("--host", default=env("WARMWHISK_SCALER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT") or 8090))
    parser.add_argument("--prefix", default=env("WARMWHISK_REDIS_PREFIX", "warmwhisk"))
    parser.add_argument(
        "--backend", choices=("docker", "process"), default=env("WARMWHISK_SCALER_BACKEND", "docker")
    )
    parser.add_argument("--image", default=env("WARMWHISK_IMAGE", "warmwhisk/runtime:dev"))
    parser.add_argument("--model-dir", default=env("WARMWHISK_MODEL_DIR"))
    parser.add_argument("--host-memory", type=int, default=_int(env("WARMWHISK_HOST_MEMORY_BYTES")))
    parser.add_argument(
        "--policy", choices=sorted(POLICIES), default=env("WARMWHISK_SCALER_POLICY", "hybrid")
    )
    parser.add_argument("--tick", type=float, default=float(env("WARMWHISK_SCALER_TICK_S") or 1.0))
    parser.add_argument("--heartbeat", type=float, default=float(env("WARMWHISK_HEARTBEAT_S") or 1.0))
    parser.add_argument("--state-dir", default=env("WARMWHISK_SCALER_STATE_DIR", "/tmp/warmwhisk-scaler"))
    args = parser.parse_args(list(argv))
    if not args.redis_url:
        parser.error("--redis-url (or WARMWHISK_REDIS_URL) is required: redis://:PASSWORD@HOST:PORT/0")
    if not args.token:
        parser.error("--token (or WARMWHISK_SCALER_TOKEN) is required: the API's bearer token")
    return ScalerSettings(
        redis_url=args.redis_url,
        host_redis_url=args.host_redis_url or args.redis_url,
        token=args.token,
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        backend=args.backend,
        image=args.image,
        model_dir=args.model_dir,
        host_memory_bytes=args.host_memory,
        policy=args.policy,
        tick_s=args.tick,
        heartbeat_s=args.heartbeat,
        window_s=float(env("WARMWHISK_SCALER_WINDOW_S") or 10.0),
        start_timeout_s=float(env("WARMWHISK_SCALER_START_TIMEOUT_S") or 120.0),
        host_max_concurrent=int(env("WARMWHISK_HOST_MAX_CONCURRENT") or 32),
        state_dir=args.state_dir,
    )


def _int(text: str | None) -> int | None:
    return int(text) if text else None
