"""The runtime's configuration: read once, at the edge, into one typed object."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from warmwhisk_protocol.host import Env, HostSecrets, SecretsError, heartbeat_ttl_s, model_memory_budget

MIB = 1024 * 1024


@dataclass(frozen=True)
class RuntimeConfig:
    """Every knob of the runtime. Environment variable names are given for each field."""

    # Address of the action server (OpenWhisk always talks to :8080). `--host`, `--port`, `PORT`.
    host: str = "0.0.0.0"
    port: int = 8080
    # Health and Prometheus metrics, on their own port so action routes never expose them.
    # `--metrics-port`, `WARMWHISK_METRICS_PORT` (0 turns the endpoint off); host defaults to `host`.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8081
    # Overlap /run calls (OpenWhisk's intra-container concurrency). `__OW_ALLOW_CONCURRENT=true`.
    allow_concurrent: bool = False
    # Most activations running at once when concurrent; more wait for a slot (until their
    # deadline). The invoker sends at most the action's `limits.concurrency`. `WARMWHISK_MAX_CONCURRENT`.
    max_concurrent: int = 64
    # Largest accepted request body, in bytes: a 48 MB zip action is 64 MB in base64.
    # `WARMWHISK_MAX_BODY_BYTES`.
    max_body_bytes: int = 64 * MIB
    # Largest uncompressed size of a zip action, in bytes. `WARMWHISK_MAX_ZIP_BYTES`.
    max_zip_bytes: int = 1024 * MIB
    # Log bytes kept per activation and stream (OpenWhisk's default log limit is 10 MB).
    # `WARMWHISK_MAX_LOG_BYTES`.
    max_log_bytes: int = 10 * MIB
    # Write the activation id after each sentinel (`XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX <id>`),
    # so that a log collector can give each of several concurrent activations its own block.
    # Off by default: OpenWhisk's Kubernetes collector compares the sentinel line exactly.
    # `WARMWHISK_LOG_ACTIVATION_IDS`.
    log_activation_ids: bool = False
    # A handler baked into the image, used by an /init without code (a `--docker` action with
    # no file): `path/to/file.py[:function]` or `dir[:function]` (dir holds `__main__.py`).
    # `WARMWHISK_HANDLER`.
    handler: str | None = None
    # Where action code is unpacked; a fresh temporary folder when unset. `WARMWHISK_ACTION_DIR`.
    action_dir: str | None = None
    # Seconds an idle connection (keep-alive, or opened and silent) stays open. `WARMWHISK_KEEPALIVE_S`.
    keepalive_s: int = 75
    # Seconds a request may take from its first byte to the end of its headers, and from there to
    # the end of its body; a client slower than that gets 408 and its connection is closed, so
    # slow or half-open clients hold nothing for long (checked once a second).
    # `WARMWHISK_HEADER_TIMEOUT_S`, `WARMWHISK_BODY_TIMEOUT_S`.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    # Open connections on the action port; more are closed at once (gunicorn's worker_connections).
    # `WARMWHISK_MAX_CONNECTIONS`.
    max_connections: int = 1000
    # Bytes of models kept resident; least recently used idle models are evicted beyond it.
    # Default: 3/4 of the container's memory limit (cgroup), or half the machine's memory.
    # `WARMWHISK_MODEL_MEMORY_BYTES`.
    model_memory_bytes: int = 0
    # Where models named by URL are fetched to, once per host (mount one host folder into every
    # container to share it). `WARMWHISK_MODEL_CACHE`.
    model_cache_dir: str = "/tmp/warmwhisk-models"
    # Model files or folders to load at process start, before /init (prewarmed containers).
    # Comma-separated. `WARMWHISK_PRELOAD`.
    preload: tuple[str, ...] = ()
    # torch intra-op threads; 0 means every CPU the container may use. `WARMWHISK_TORCH_THREADS`.
    torch_threads: int = 0
    # "direct" (the action runs here), "routed" (forwarded to warm model hosts) or "host" (a
    # model host started by the scaler). `WARMWHISK_MODE`.
    mode: str = "direct"
    # The registry, for routed and host modes: `redis://:password@host:port/db`.
    # `WARMWHISK_ROUTER_URL`.
    router_url: str | None = None
    # Key prefix in Redis (several deployments may share one). `WARMWHISK_REDIS_PREFIX`.
    redis_prefix: str = "warmwhisk"
    # Host mode: this host's id, the namespace it serves, the actions it loads at start
    # (comma-separated keys), where routers reach it, and how often it heartbeats (seconds).
    # `WARMWHISK_HOST_ID`, `WARMWHISK_NAMESPACE`, `WARMWHISK_HOST_ACTIONS`,
    # `WARMWHISK_ADVERTISE` (default 127.0.0.1:<port>), `WARMWHISK_HEARTBEAT_S`.
    host_id: str = ""
    namespace: str = ""
    host_actions: tuple[str, ...] = ()
    advertise: str = ""
    heartbeat_s: float = 1.0
    # Host mode: the registry URL with the namespace's credential, and the token routers send,
    # read once from the file `WARMWHISK_SECRETS_FILE` names, which is then removed.
    secrets: HostSecrets | None = field(default=None, repr=False)
    # Activations still running past their deadline (they ignored the interrupt or are blocked in
    # C) the runtime tolerates; past it, it reports unhealthy, refuses new work (503) and exits
    # once the rest are done, so it is replaced. `WARMWHISK_MAX_STUCK`.
    max_stuck: int = 4

    @property
    def concurrent(self) -> bool:
        """Overlapping runs: asked for by the invoker, and always so for routers and hosts."""
        return self.allow_concurrent or self.mode != "direct"

    @property
    def heartbeat_ttl_s(self) -> float:
        """How long the registry keeps this host's record without a new heartbeat."""
        return heartbeat_ttl_s(self.heartbeat_s)

    @property
    def server_threads(self) -> int:
        """Request threads a thread-per-request server needs for this configuration: one per
        admitted activation plus a few to answer while full (the benchmark's gthread floors)."""
        return (self.max_concurrent if self.concurrent else 1) + 4


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _positive_int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"warmwhisk runtime: {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"warmwhisk runtime: {name} must be >= {minimum}, got {value}")
    return value


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"warmwhisk runtime: {name} must be a number, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise SystemExit(f"warmwhisk runtime: {name} must be a positive number, got {raw!r}")
    return value


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> RuntimeConfig:
    """Build the configuration from command-line flags (first) and the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m warmwhisk_runtime",
        description="warmwhisk action runtime: OpenWhisk's /init and /run contract, concurrent.",
    )
    parser.add_argument("--host", default=environ.get("WARMWHISK_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=None, help="default: $PORT or 8080")
    parser.add_argument("--metrics-host", default=None, help="default: same as --host")
    parser.add_argument("--metrics-port", type=int, default=None, help="0 turns it off; default 8081")
    args = parser.parse_args(list(argv))
    port = args.port if args.port is not None else _positive_int(environ, "PORT", 8080)
    metrics_port = (
        args.metrics_port
        if args.metrics_port is not None
        else _positive_int(environ, "WARMWHISK_METRICS_PORT", 8081, minimum=0)
    )
    return RuntimeConfig(
        host=args.host,
        port=port,
        metrics_host=args.metrics_host or args.host,
        metrics_port=metrics_port,
        allow_concurrent=_truthy(environ.get("__OW_ALLOW_CONCURRENT")),
        max_concurrent=_positive_int(environ, Env.MAX_CONCURRENT, 64),
        max_body_bytes=_positive_int(environ, "WARMWHISK_MAX_BODY_BYTES", 64 * MIB),
        max_zip_bytes=_positive_int(environ, "WARMWHISK_MAX_ZIP_BYTES", 1024 * MIB),
        max_log_bytes=_positive_int(environ, "WARMWHISK_MAX_LOG_BYTES", 10 * MIB),
        log_activation_ids=_truthy(environ.get("WARMWHISK_LOG_ACTIVATION_IDS")),
        handler=environ.get("WARMWHISK_HANDLER") or None,
        action_dir=environ.get("WARMWHISK_ACTION_DIR") or None,
        keepalive_s=_positive_int(environ, Env.KEEPALIVE_S, 75),
        header_timeout_s=_positive_float(environ, "WARMWHISK_HEADER_TIMEOUT_S", 10.0),
        body_timeout_s=_positive_float(environ, "WARMWHISK_BODY_TIMEOUT_S", 60.0),
        max_connections=_positive_int(environ, "WARMWHISK_MAX_CONNECTIONS", 1000),
        model_memory_bytes=_positive_int(environ, Env.MODEL_MEMORY_BYTES, default_model_budget()),
        model_cache_dir=environ.get("WARMWHISK_MODEL_CACHE") or "/tmp/warmwhisk-models",
        preload=_csv(environ.get("WARMWHISK_PRELOAD", "")),
        torch_threads=_positive_int(environ, "WARMWHISK_TORCH_THREADS", 0, minimum=0),
        mode=_mode(environ),
        router_url=environ.get(Env.REGISTRY_URL) or None,
        redis_prefix=environ.get(Env.REDIS_PREFIX) or "warmwhisk",
        host_id=environ.get(Env.HOST_ID, ""),
        namespace=environ.get(Env.NAMESPACE, ""),
        host_actions=_csv(environ.get(Env.HOST_ACTIONS, "")),
        advertise=environ.get(Env.ADVERTISE) or f"127.0.0.1:{port}",
        heartbeat_s=_positive_float(environ, Env.HEARTBEAT_S, 1.0),
        secrets=_host_secrets(environ),
        max_stuck=_positive_int(environ, "WARMWHISK_MAX_STUCK", 4),
    )


def _host_secrets(environ: Mapping[str, str]) -> HostSecrets | None:
    path = environ.get(Env.SECRETS_FILE)
    if not path:
        return None
    try:
        return HostSecrets.take(path)
    except SecretsError as exc:
        raise SystemExit(f"warmwhisk runtime: {exc}") from None


MODES = ("direct", "routed", "host")


def _mode(environ: Mapping[str, str]) -> str:
    mode = environ.get(Env.MODE) or "direct"
    if mode not in MODES:
        raise SystemExit(f"warmwhisk runtime: {Env.MODE} must be one of {MODES}, got {mode!r}")
    if mode == "routed" and not environ.get(Env.REGISTRY_URL):
        raise SystemExit(
            f"warmwhisk runtime: {Env.MODE}={mode} needs {Env.REGISTRY_URL} (the registry's Redis)"
        )
    if mode == "host" and not environ.get(Env.HOST_ID):
        raise SystemExit(f"warmwhisk runtime: {Env.MODE}=host needs {Env.HOST_ID}")
    if mode == "host" and not environ.get(Env.SECRETS_FILE):
        raise SystemExit(
            f"warmwhisk runtime: {Env.MODE}=host needs {Env.SECRETS_FILE} (its registry credential and token)"
        )
    return mode


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def default_model_budget() -> int:
    """The model budget of the cgroup memory limit (docker --memory; `model_memory_budget`: 3/4),
    else half of the machine's memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # cgroup v2, then v1 (where "no limit" reads as a huge number)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(path).read_text().strip())
        except (OSError, ValueError):
            continue
        if 0 < limit < physical:
            return model_memory_budget(limit)
    return physical // 2
