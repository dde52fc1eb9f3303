"""The scaler's configuration: read once, from flags and environment, into one typed object.

Secrets (the Redis URLs, which hold the password, and the API token) can be given as files
(``--redis-url-file``, ``WARMWHISK_REDIS_URL_FILE``, ...), so they show neither in ``ps`` nor in
the process's command line; every number is checked against its range here, so a typo stops the
start with a message naming the flag instead of a control loop that misbehaves later.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from warmwhisk_protocol.host import heartbeat_ttl_s

from .policy import POLICIES

# The most hosts one scaler runs, however much memory it has: the ceiling of `--max-hosts`, of the
# cap sized from memory, and of every pool's host knobs.
MAX_HOSTS_CEILING = 1024
# The highest concurrency limit of one host: `WARMWHISK_HOST_MAX_CONCURRENT` and pool knobs that
# are per-host limits.
MAX_LIMIT = 1024
# The shortest control-loop tick and heartbeat period (s): shorter ones only load Redis.
MIN_PERIOD_S = 0.05
# Memory each host is assumed to need when sizing the host cap without `--host-memory` (bytes).
DEFAULT_HOST_MEMORY_BYTES = 1 << 30
# A secret file larger than this is not a secret (a wrong path, a device): refused unread.
MAX_SECRET_FILE_BYTES = 64 * 1024
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class ScalerSettings:
    """Every knob of the scaler service; flag / environment variable / default / unit."""

    # The registry's Redis, with its password: redis://:PASSWORD@HOST:PORT/DB. Required.
    # `--redis-url-file`, `WARMWHISK_REDIS_URL_FILE` (a file holding the URL), or the URL itself:
    # `--redis-url`, `WARMWHISK_REDIS_URL` (visible in `ps` as a flag).
    redis_url: str
    # The URL hosts use to reach the same Redis (differs when hosts see another network).
    # `--host-redis-url-file`, `WARMWHISK_HOST_REDIS_URL_FILE`, `--host-redis-url`,
    # `WARMWHISK_HOST_REDIS_URL`; default: redis_url.
    host_redis_url: str
    # Bearer token every API call but /healthz needs (printable ASCII, no spaces). Required.
    # `--token-file`, `WARMWHISK_SCALER_TOKEN_FILE`, or `--token`, `WARMWHISK_SCALER_TOKEN`.
    token: str
    # API address. `--host` (127.0.0.1), `--port`, `PORT` (8090; 1..65535).
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
    # The address model hosts listen on and advertise to routed containers: 127.0.0.1 on one
    # machine, the private address in a cluster (never 0.0.0.0). `--host-bind`, `WARMWHISK_HOST_BIND`.
    host_bind: str = "127.0.0.1"
    # Folder on the engine's machine for the hosts' secrets folders (docker backend; a scaler in a
    # container mounts it at the same path). `--host-secrets-dir`, `WARMWHISK_HOST_SECRETS_DIR`.
    host_secrets_dir: str = "/var/lib/warmwhisk/host-secrets"
    # Memory limit of each host container (bytes). `--host-memory`, `WARMWHISK_HOST_MEMORY_BYTES`.
    host_memory_bytes: int | None = None
    # Policy used for pools without their own ("hybrid", "openwhisk", "kpa", "rayserve").
    # `--policy`, `WARMWHISK_SCALER_POLICY`.
    policy: str = "hybrid"
    # Control loop period (s). `--tick`, `WARMWHISK_SCALER_TICK_S` (1.0; 0.05..3600).
    tick_s: float = 1.0
    # Host heartbeat period (s); a host whose heartbeats stop for 3 periods is dropped.
    # `--heartbeat`, `WARMWHISK_HEARTBEAT_S` (1.0; 0.05..3600).
    heartbeat_s: float = 1.0
    # Window over which rates and latencies are measured (s). `WARMWHISK_SCALER_WINDOW_S` (10).
    window_s: float = 10.0
    # A host not warm this long after its start is given up and stopped (s).
    # `WARMWHISK_SCALER_START_TIMEOUT_S` (120).
    start_timeout_s: float = 120.0
    # Most activations one host may run at once (its own cap; the policy's limit is below it).
    # `WARMWHISK_HOST_MAX_CONCURRENT` (32; 1..1024).
    host_max_concurrent: int = 32
    # State folder of the process backend. `--state-dir`, `WARMWHISK_SCALER_STATE_DIR`.
    state_dir: str = "/tmp/warmwhisk-scaler"
    # Most hosts this scaler runs at once, all pools together; manual scale and every pool's
    # max_hosts stay below it. None: sized from the backend's memory at start (its memory over
    # `host_memory_bytes`, or 1 GiB per host), at most 1024; `service.build` fills it in.
    # `--max-hosts`, `WARMWHISK_SCALER_MAX_HOSTS` (1..1024).
    max_hosts: int | None = None
    # Most host starts per tick, all pools together (the rest wait for the next tick).
    # `WARMWHISK_SCALER_MAX_STARTS_PER_TICK` (4; 1..64).
    max_starts_per_tick: int = 4
    # After a failed start, a pool waits this long before the next one, doubling per failure in a
    # row up to `start_backoff_max_s` (s). `WARMWHISK_SCALER_START_BACKOFF_S` (1), `..._MAX_S` (60);
    # both > 0, the maximum at least the first.
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


# -- reading them --------------------------------------------------------------------------------

DAY_S = 86400.0


@dataclass(frozen=True)
class _Number:
    """A numeric setting: where it is read from (flag over environment), its type and range."""

    field: str
    env: str
    kind: type[int] | type[float]
    low: float
    high: float
    low_open: bool = False  # True: ``low`` itself is out of range
    flag: str | None = None

    def rule(self) -> str:
        what = "a whole number" if self.kind is int else "a finite number"
        low = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        return f"{what} {low} and <= {self.high:g}"

    def parse(self, text: str) -> int | float:
        """The value of ``text``; ValueError saying the rule (and the text, cut short) otherwise."""
        try:
            value = self.kind(text)
        except ValueError:
            value = math.nan
        finite = not isinstance(value, float) or math.isfinite(value)  # ints of any size compare
        fits = self.low < value if self.low_open else self.low <= value
        if not (finite and fits and value <= self.high):
            shown = text if len(text) <= 40 else f"{text[:40]}..."
            raise ValueError(f"must be {self.rule()}, got {shown!r}")
        return value


_NUMBERS = (
    _Number("port", "PORT", int, 1, 65535, flag="--port"),
    _Number("host_memory_bytes", "WARMWHISK_HOST_MEMORY_BYTES", int, 1, 2.0**63, flag="--host-memory"),
    _Number("tick_s", "WARMWHISK_SCALER_TICK_S", float, MIN_PERIOD_S, 3600, flag="--tick"),
    _Number("heartbeat_s", "WARMWHISK_HEARTBEAT_S", float, MIN_PERIOD_S, 3600, flag="--heartbeat"),
    _Number("window_s", "WARMWHISK_SCALER_WINDOW_S", float, 0, DAY_S, low_open=True),
    _Number("start_timeout_s", "WARMWHISK_SCALER_START_TIMEOUT_S", float, 0, DAY_S, low_open=True),
    _Number("host_max_concurrent", "WARMWHISK_HOST_MAX_CONCURRENT", int, 1, MAX_LIMIT),
    _Number("max_hosts", "WARMWHISK_SCALER_MAX_HOSTS", int, 1, MAX_HOSTS_CEILING, flag="--max-hosts"),
    _Number("max_starts_per_tick", "WARMWHISK_SCALER_MAX_STARTS_PER_TICK", int, 1, 64),
    _Number("start_backoff_s", "WARMWHISK_SCALER_START_BACKOFF_S", float, 0, DAY_S, low_open=True),
    _Number("start_backoff_max_s", "WARMWHISK_SCALER_START_BACKOFF_MAX_S", float, 0, DAY_S, low_open=True),
    _Number("credential_grace_s", "WARMWHISK_SCALER_CREDENTIAL_GRACE_S", float, 0, 30 * DAY_S),
)


@dataclass(frozen=True)
class _Secret:
    """A secret setting: a value (``--token``, ``WARMWHISK_SCALER_TOKEN``) or a file holding it
    (``--token-file``, ``WARMWHISK_SCALER_TOKEN_FILE``), never both."""

    field: str
    flag: str
    env: str

    @property
    def file_flag(self) -> str:
        return f"{self.flag}-file"

    @property
    def file_env(self) -> str:
        return f"{self.env}_FILE"


_REDIS_URL = _Secret("redis_url", "--redis-url", "WARMWHISK_REDIS_URL")
_HOST_REDIS_URL = _Secret("host_redis_url", "--host-redis-url", "WARMWHISK_HOST_REDIS_URL")
_TOKEN = _Secret("token", "--token", "WARMWHISK_SCALER_TOKEN")
_SECRETS = (_REDIS_URL, _HOST_REDIS_URL, _TOKEN)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names its flag or variable, never a secret."""


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> ScalerSettings:
    """Settings from ``argv`` and ``environ`` (a flag wins over its variable); on a bad value the
    parser prints the usage and what is wrong, and exits with status 2."""
    parser = _parser(environ)
    args = parser.parse_args(list(argv))
    try:
        return _settings(args, environ)
    except SettingsError as exc:
        parser.error(str(exc))


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmwhisk-scaler",
        description="warmwhisk scaler: registry, routing and hybrid scaling. Give secrets as files "
        "(--redis-url-file, --token-file): a flag's value shows in `ps`.",
    )
    env = environ.get
    for secret in _SECRETS:
        parser.add_argument(secret.file_flag, metavar="FILE", help=f"or {secret.file_env}")
        parser.add_argument(secret.flag, help=f"or {secret.env} (visible in `ps`: prefer {secret.file_flag})")
    defaults = {f.name: f.default for f in dataclasses.fields(ScalerSettings)}
    for number in _NUMBERS:
        if number.flag:
            help_text = f"or {number.env}; {number.rule()} (default {defaults[number.field]})"
            parser.add_argument(number.flag, dest=number.field, help=help_text)
    parser.add_argument("--host", default=env("WARMWHISK_SCALER_HOST", "127.0.0.1"))
    parser.add_argument("--prefix", default=env("WARMWHISK_REDIS_PREFIX", "warmwhisk"))
    parser.add_argument(
        "--backend", choices=("docker", "process"), default=env("WARMWHISK_SCALER_BACKEND", "docker")
    )
    parser.add_argument("--image", default=env("WARMWHISK_IMAGE", "warmwhisk/runtime:dev"))
    parser.add_argument("--model-dir", default=env("WARMWHISK_MODEL_DIR"))
    parser.add_argument("--host-bind", default=env("WARMWHISK_HOST_BIND", "127.0.0.1"))
    parser.add_argument(
        "--host-secrets-dir", default=env("WARMWHISK_HOST_SECRETS_DIR", "/var/lib/warmwhisk/host-secrets")
    )
    parser.add_argument(
        "--policy", choices=sorted(POLICIES), default=env("WARMWHISK_SCALER_POLICY", "hybrid")
    )
    parser.add_argument("--state-dir", default=env("WARMWHISK_SCALER_STATE_DIR", "/tmp/warmwhisk-scaler"))
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="start even when Redis answers commands without a password (refused otherwise)",
    )
    return parser


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> ScalerSettings:
    redis_url = _secret(_REDIS_URL, args, environ)
    token = _secret(_TOKEN, args, environ)
    if not redis_url:
        raise SettingsError(
            f"{_REDIS_URL.file_flag} (or {_REDIS_URL.file_env}) is required: a file holding "
            "redis://:PASSWORD@HOST:PORT/0"
        )
    if not token:
        raise SettingsError(f"{_TOKEN.file_flag} (or {_TOKEN.file_env}) is required: the API's bearer token")
    host_redis_url = _secret(_HOST_REDIS_URL, args, environ) or redis_url
    _check_redis_url(_REDIS_URL, redis_url)
    _check_redis_url(_HOST_REDIS_URL, host_redis_url)
    _check_host_bind(args.host_bind)
    if not (token.isascii() and token.isprintable() and " " not in token):
        raise SettingsError(f"{_TOKEN.flag}: the token must be printable ASCII without spaces (not shown)")
    numbers = {}
    for number in _NUMBERS:
        flag_text = getattr(args, number.field) if number.flag else None
        text, source = (
            (flag_text, number.flag) if flag_text is not None else (environ.get(number.env), number.env)
        )
        if text:
            try:
                numbers[number.field] = number.parse(text)
            except ValueError as exc:
                raise SettingsError(f"{source}: {exc}") from None
    settings = ScalerSettings(
        redis_url=redis_url,
        host_redis_url=host_redis_url,
        token=token,
        host=args.host,
        prefix=args.prefix,
        backend=args.backend,
        image=args.image,
        model_dir=args.model_dir,
        host_bind=args.host_bind,
        host_secrets_dir=args.host_secrets_dir,
        policy=args.policy,
        state_dir=args.state_dir,
        insecure_no_auth=args.insecure_no_auth,
        **numbers,
    )
    if settings.start_backoff_max_s < settings.start_backoff_s:
        raise SettingsError(
            f"WARMWHISK_SCALER_START_BACKOFF_MAX_S ({settings.start_backoff_max_s:g}) must be at least "
            f"WARMWHISK_SCALER_START_BACKOFF_S ({settings.start_backoff_s:g})"
        )
    return settings


def _secret(secret: _Secret, args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The secret's value, from its flag or variable, or read from its file; None if not given."""
    given = [
        (name, text)
        for name, text in (
            (secret.flag, getattr(args, secret.field)),
            (secret.env, environ.get(secret.env)),
            (secret.file_flag, getattr(args, f"{secret.field}_file")),
            (secret.file_env, environ.get(secret.file_env)),
        )
        if text
    ]
    value = next(((n, t) for n, t in given if not n.endswith(("-file", "_FILE"))), None)
    path = next(((n, t) for n, t in given if n.endswith(("-file", "_FILE"))), None)
    if value and path:
        raise SettingsError(
            f"{value[0]} and {path[0]} are both given: give the value either directly or as a file, not both"
        )
    if path:
        return read_secret_file(path[1], path[0])
    return value[1] if value else None


def read_secret_file(path: str, source: str) -> str:
    """The secret in the file at ``path`` without its trailing newline; SettingsError names the
    path and ``source`` (the flag or variable) when it cannot be read, never the content."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SettingsError(f"{source}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes: not a secret")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{source}: {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise SettingsError(f"{source}: {path} is empty")
    if "\n" in text or "\r" in text:
        raise SettingsError(f"{source}: {path} holds more than one line; it must hold the value alone")
    return text


def _check_host_bind(address: str) -> None:
    """Hosts bind to one address routers can reach: an IP address, not a wildcard (0.0.0.0 would
    expose every host's port on every interface of the machine)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SettingsError(f"--host-bind: {address!r} is not an IP address") from None
    if ip.is_unspecified:
        raise SettingsError(f"--host-bind: {address} listens on every interface; give one address")


def _check_redis_url(secret: _Secret, url: str) -> None:
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in REDIS_URL_SCHEMES:
        raise SettingsError(
            f"{secret.file_flag}: not a Redis URL (the value is not shown); expected "
            "redis://:PASSWORD@HOST:PORT/DB (or rediss://, unix://)"
        )
