"""What OpenWhisk's invoker, controller and scheduler must be told for warmwhisk: the single
source of truth for the action containers' environment, `docker run` arguments and limits, and
their spelling for each way OpenWhisk is deployed.

- `ContainerConfig`: what every action container of an ML invoker gets (`environment()`,
  `docker_args()`, `docker_run_args()`), and the invoker's ``CONFIG_*`` keys that make OpenWhisk
  pass them (`invoker_env(target)`). The local dev stack starts containers with exactly this.
- `component_environment()`: the ``CONFIG_*`` environment of an invoker, controller or scheduler
  started by hand (OpenWhisk turns ``CONFIG_a_bC`` into ``-Da.b-c``: common/scala/transformEnvironment.sh).
- `ansible_vars()`: variables for OpenWhisk's own playbooks (ansible/group_vars/all and the
  invoker, controller and schedulers roles' deploy.yml read them).
- `helm_values()`: values for apache/openwhisk-deploy-kube's chart.

Nothing secret is ever generated: ``extraEnvVars`` and ``extraArgs`` reach every container the
invoker starts, a tenant's own ``--docker`` image included. The registry's address goes to every
container without a password (Redis's default user opens nothing); each ML action carries its
namespace's credential as its init parameter ``WARMWHISK_CREDENTIAL``
(`warmwhisk_protocol.credentials`). A registry URL holding a password is refused.

All functions are pure; the CLI (`cli.py`) reads files and prints.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER, has_credential
from warmwhisk_protocol.host import Env
from warmwhisk_protocol.keys import RedisKeys

from .manifest import errors_in, merge_runtime, ml_runtime_entry, validate_manifest

Target = Literal["master", "2.0.0"]
Mode = Literal["routed", "direct"]
Component = Literal["invoker", "controller", "scheduler"]
ContainerFactory = Literal["docker", "kubernetes"]
TARGET_NAMES: tuple[str, ...] = get_args(Target)


@dataclass(frozen=True)
class TargetInfo:
    """What differs between OpenWhisk versions for this patch: the Akka to Pekko rename
    (apache/openwhisk 7538ced3e) renamed the invoker's pooled HTTP client key, its ``CONFIG_``
    variable and the ansible variable. The Helm chart's images (tag ef725a6) predate it, like
    release 2.0.0."""

    name: str
    http_client: str  # "pekko" or "akka"

    @property
    def client_env(self) -> str:
        return f"CONFIG_whisk_containerPool_{self.http_client}Client"

    @property
    def client_property(self) -> str:
        return f"whisk.container-pool.{self.http_client}-client"

    @property
    def client_ansible_var(self) -> str:
        return f"container_pool_{self.http_client}_client"


TARGETS: dict[str, TargetInfo] = {
    "master": TargetInfo("master", "pekko"),
    "2.0.0": TargetInfo("2.0.0", "akka"),
}

MODELS_MOUNT = "/models"
ALLOW_CONCURRENT = "__OW_ALLOW_CONCURRENT"
PRELOAD_ENV = "WARMWHISK_PRELOAD"
EXTRA_ENV_VARS = "CONFIG_whisk_containerFactory_containerArgs_extraEnvVars_"
EXTRA_ARGS = "CONFIG_whisk_containerFactory_containerArgs_extraArgs_"
# Index 0 is OpenWhisk's own: its invoker role and the Helm chart write
# `__OW_ALLOW_CONCURRENT={{ runtimes_enable_concurrency }}` there. Ours start after it; OpenWhisk
# turns the list into a map in order (ContainerArgsConfig.extraEnvVarMap), so index 1 wins when
# index 0 still says false.
FIRST_EXTRA_ENV_INDEX = 1
LOG_STORE_ENV = "CONFIG_whisk_spi_LogStoreProvider"
# OpenWhisk's docs/intra-concurrency.md: concurrent activations interleave on one container's
# stdout, so log collection must be decoupled ("disable log collection at invoker").
LOG_DRIVER_LOG_STORE = "org.apache.openwhisk.core.containerpool.logging.LogDriverLogStoreProvider"
RUNTIMES_MANIFEST_ENV = "RUNTIMES_MANIFEST"
DEFAULT_RUNTIMES_FILE = "runtimes-warmwhisk.json"

# Values travel single-quoted through transformEnvironment.sh (which also dereferences a leading
# `$`) and unquoted through Helm's `invoker.options` into the JVM start script: allow no blanks,
# quotes, `$`, backslashes or shell metacharacters.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/=@%+~\[\]-]+")


def _check_safe(what: str, value: str) -> None:
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} has characters the invoker's configuration cannot carry (blanks, quotes, "
            "$, backslashes or shell metacharacters); allowed: letters, digits and _ . , : / = @ % + ~ [ ] -"
        )


def check_registry_address(url: str) -> str:
    """The registry address routed containers get, or ValueError. It must hold no user or
    password: the invoker hands it to every container, a tenant's own image included. Routed
    containers log in with their action's init parameter ``WARMWHISK_CREDENTIAL`` instead."""
    parts = urlsplit(url)
    shown = _shown(url)
    if has_credential(url):
        raise ValueError(
            f"refusing a registry address with a user or password ({shown} plus "
            "credentials): the invoker's extraEnvVars reach every container it starts, a tenant's own "
            f"--docker image included; give each ML action its namespace's credential as its init "
            f"parameter {CREDENTIAL_PARAMETER} instead"
        )
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"the registry address is redis://HOST:PORT/DB (or rediss://), got {shown!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"the registry address takes no query or fragment (options): {shown}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"the registry address has a bad port: {shown!r}") from None
    if parts.path not in ("", "/") and not re.fullmatch(r"/[0-9]+", parts.path):
        raise ValueError(f"the registry address's path is a database number (/0), got {parts.path!r}")
    _check_safe("registry address", url)
    return url


def _shown(url: str) -> str:
    """`url` as an error message may show it: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


@dataclass(frozen=True)
class ContainerConfig:
    """What every action container of an ML invoker gets.

    `mode` "routed": containers forward to warm model hosts through the registry at
    `registry_address` (keys under `prefix`) and hold no model. "direct": the action and its
    models run in the container; `preload` names model folders under `models_dir` to load at
    process start (``WARMWHISK_PRELOAD=/models/<name>``), so prewarmed containers hide the model
    load. Every value here reaches *all* containers of the invoker, every kind and every tenant:
    the model folder is mounted read-only into each of them.
    """

    registry_address: str | None = None
    models_dir: str | None = None
    prefix: str = "warmwhisk"
    mode: Mode = "routed"
    preload: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise ValueError(f"mode is one of {get_args(Mode)}, got {self.mode!r}")
        if self.mode == "routed":
            if not self.registry_address:
                raise ValueError("routed mode needs the registry address (redis://HOST:PORT/0)")
            check_registry_address(self.registry_address)
            RedisKeys(self.prefix)  # the protocol's own rule for prefixes
            _check_safe("key prefix", self.prefix)
            if self.preload:
                raise ValueError("preload is for direct mode: routed containers hold no model (the hosts do)")
        elif self.registry_address:
            raise ValueError("direct mode routes nothing: leave the registry address out")
        if self.models_dir is not None:
            if not posixpath.isabs(self.models_dir) or ":" in self.models_dir or "," in self.models_dir:
                raise ValueError(
                    f"models_dir is an absolute host path without ':' or ',', got {self.models_dir!r}"
                )
            _check_safe("models_dir", self.models_dir)
        if self.preload and self.models_dir is None:
            raise ValueError(f"preload needs models_dir (models are read from {MODELS_MOUNT})")
        for name in self.preload:
            parts = name.split("/")
            if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "," in name:
                raise ValueError(
                    f"a preloaded model is a relative folder name under {MODELS_MOUNT}, got {name!r}"
                )
            _check_safe("preloaded model", name)

    def environment(self) -> dict[str, str]:
        """The environment variables of every action container, in the order they are passed."""
        env = {ALLOW_CONCURRENT: "true", Env.MODE: self.mode}
        if self.mode == "routed":
            assert self.registry_address is not None
            env[Env.REGISTRY_URL] = self.registry_address
            env[Env.REDIS_PREFIX] = self.prefix
        if self.preload:
            env[PRELOAD_ENV] = ",".join(f"{MODELS_MOUNT}/{name}" for name in self.preload)
        return env

    def docker_args(self) -> dict[str, list[str]]:
        """OpenWhisk's ``extra-args``: `docker run --<key> <value>` for each value."""
        if self.models_dir is None:
            return {}
        return {"volume": [f"{self.models_dir}:{MODELS_MOUNT}:ro"]}

    def docker_run_args(self) -> list[str]:
        """The `docker run` arguments these settings become (DockerContainerFactory.scala: the
        environment as ``-e``, each extra arg as ``--key value``), for starting containers the way
        the invoker does."""
        args: list[str] = []
        for name, value in self.environment().items():
            args += ["-e", f"{name}={value}"]
        for key, values in self.docker_args().items():
            for value in values:
                args += [f"--{key}", value]
        return args

    def container_factory_env(self) -> dict[str, str]:
        """The invoker's ``CONFIG_whisk_containerFactory_containerArgs_*`` keys for these settings:
        ``extraEnvVars`` from index 1 (0 is OpenWhisk's own) and ``extraArgs``."""
        env: dict[str, str] = {}
        for index, (name, value) in enumerate(self.environment().items(), start=FIRST_EXTRA_ENV_INDEX):
            env[f"{EXTRA_ENV_VARS}{index}"] = f"{name}={value}"
        for key, values in self.docker_args().items():
            for index, value in enumerate(values):
                env[f"{EXTRA_ARGS}{_camel(key)}_{index}"] = value
        return env

    def invoker_env(self, target: Target) -> dict[str, str]:
        """`container_factory_env()` plus the pooled HTTP client, without which the invoker sends
        one activation at a time whatever `limits.concurrency` says (docs/intra-concurrency.md)."""
        return {**self.container_factory_env(), _target(target).client_env: "true"}


@dataclass(frozen=True)
class Limits:
    """Raised system maxima for actions, read by the controller (it refuses an action above
    them: "... exceeds allowed threshold"), the scheduler and the invoker (whisk.memory,
    whisk.time-limit, whisk.concurrency-limit in common/scala application.conf). Only the maxima
    change; minima and defaults stay OpenWhisk's. A namespace default limit, where a deployment
    sets one (`namespace_default_limit_action_*`), still caps that namespace's actions."""

    memory_max_mb: int = 4096
    time_max_s: int = 600
    # The runtime's own cap on overlapping activations (WARMWHISK_MAX_CONCURRENT) defaults to 64.
    concurrency_max: int = 64

    def __post_init__(self) -> None:
        # OpenWhisk's defaults are 512 m, 5 m and 1 (application.conf): never lower them.
        if self.memory_max_mb < 512 or self.time_max_s < 300 or self.concurrency_max < 2:
            raise ValueError(
                "limits would lower OpenWhisk's defaults or leave concurrency off: memory_max_mb >= 512, "
                "time_max_s >= 300, concurrency_max >= 2"
            )

    def values(self) -> dict[str, str]:
        return {
            "memory": f"{self.memory_max_mb} m",
            "time": f"{self.time_max_s} s",
            "concurrency": str(self.concurrency_max),
        }

    def environment(self) -> dict[str, str]:
        v = self.values()
        return {
            "CONFIG_whisk_memory_max": v["memory"],
            "CONFIG_whisk_timeLimit_max": v["time"],
            "CONFIG_whisk_concurrencyLimit_max": v["concurrency"],
        }

    def helm_values(self) -> dict[str, dict[str, Any]]:
        """`whisk.limits.actions` of the Helm chart (its schema wants concurrency as a number)."""
        v = self.values()
        return {
            "memory": {"max": v["memory"]},
            "time": {"max": v["time"]},
            "concurrency": {"max": self.concurrency_max},
        }

    def ansible_vars(self) -> dict[str, Any]:
        """The variables OpenWhisk's controller, invoker and schedulers roles all read."""
        v = self.values()
        return {
            "limit_action_memory_max": v["memory"],
            "limit_action_time_max": v["time"],
            "limit_action_concurrency_max": self.concurrency_max,
        }


def component_environment(
    component: Component,
    container: ContainerConfig,
    target: Target,
    *,
    limits: Limits | None = None,
    log_store: str | None = LOG_DRIVER_LOG_STORE,
    runtimes_manifest: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The environment a hand-started OpenWhisk component needs: the invoker gets the container
    settings, the HTTP client, the limits and the log store; the controller the limits and the
    log store (it serves `/activations/<id>/logs` through the same SPI); the scheduler the
    limits. All three get ``RUNTIMES_MANIFEST`` when a manifest is given."""
    if component not in get_args(Component):
        raise ValueError(f"component is one of {get_args(Component)}, got {component!r}")
    env: dict[str, str] = {}
    if component == "invoker":
        env.update(container.invoker_env(target))
    env.update((limits or Limits()).environment())
    if log_store and component in ("invoker", "controller"):
        env[LOG_STORE_ENV] = _check_class(log_store)
    if runtimes_manifest is not None:
        env[RUNTIMES_MANIFEST_ENV] = json.dumps(runtimes_manifest, separators=(",", ":"), ensure_ascii=False)
    return env


def ansible_vars(
    container: ContainerConfig,
    target: Target,
    runtimes_manifest: Mapping[str, Any],
    *,
    entry: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    log_store: str | None = LOG_DRIVER_LOG_STORE,
) -> dict[str, Any]:
    """Variables for OpenWhisk's ansible (group_vars or ``-e @file``), used by its controller,
    scheduler and invoker roles alike.

    `runtimes_manifest` is OpenWhisk's runtimes.json; `entry` (default: `ml_runtime_entry()`) is
    merged into it, idempotently. Every key the roles set themselves is set through the role's own
    variable (`runtimes_enable_concurrency`, the HTTP client, `limit_action_*`, `userLogs_spi`), so
    `invoker_extraEnv`, which the invoker role merges last, only adds keys and overwrites none.
    """
    manifest = merge_runtime(runtimes_manifest, entry if entry is not None else ml_runtime_entry())
    problems = errors_in(validate_manifest(manifest))
    if problems:
        raise ValueError("the merged runtimes manifest is invalid: " + "; ".join(str(p) for p in problems))
    variables: dict[str, Any] = {
        "runtimes_manifest": manifest,
        # A string: the role renders "__OW_ALLOW_CONCURRENT={{ runtimes_enable_concurrency }}",
        # and a YAML boolean would come out as "True".
        "runtimes_enable_concurrency": "true",
        _target(target).client_ansible_var: True,
        **(limits or Limits()).ansible_vars(),
    }
    if log_store:
        variables["userLogs_spi"] = _check_class(log_store)
    variables["invoker_extraEnv"] = container.container_factory_env()
    _refuse_templates(variables)
    return variables


def helm_values(
    container: ContainerConfig,
    target: Target,
    *,
    limits: Limits | None = None,
    log_store: str | None = LOG_DRIVER_LOG_STORE,
    runtimes_file: str = DEFAULT_RUNTIMES_FILE,
    container_factory: ContainerFactory = "docker",
) -> dict[str, Any]:
    """Values for openwhisk-deploy-kube (helm/openwhisk/values.yaml), merged over yours.

    The chart has structured values for the manifest file, the limits and index 0 of
    extraEnvVars (`invoker.containerFactory.enableConcurrency`); everything else goes in
    `invoker.options` as ``-D`` system properties (the chart's only free-form hook: INVOKER_OPTS).
    `whisk.runtimes` names a file *inside the chart*: write the merged manifest there with
    ``manifest merge``. The docker container factory is chosen because the kubernetes one ignores
    extra-args (KubernetesContainerFactory.scala), which carry the model volume.
    """
    if container_factory not in get_args(ContainerFactory):
        raise ValueError(
            f"container_factory is one of {get_args(ContainerFactory)}, got {container_factory!r}"
        )
    if container_factory == "kubernetes" and container.docker_args():
        raise ValueError(
            "the kubernetes container factory ignores extra-args, so the model volume would be lost: use "
            "container_factory='docker', or leave models_dir out (routed mode needs no model in the action "
            "container) and mount models through whisk.kubernetes.pod-template yourself"
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]+\.json", runtimes_file):
        raise ValueError(f"runtimes_file is a .json file name inside the chart, got {runtimes_file!r}")
    invoker_props = dict(container.invoker_env(target))
    if log_store:
        invoker_props[LOG_STORE_ENV] = _check_class(log_store)
    values: dict[str, Any] = {
        "whisk": {
            "runtimes": runtimes_file,
            "limits": {"actions": (limits or Limits()).helm_values()},
        },
        "invoker": {
            "options": java_options(invoker_props),
            "containerFactory": {"impl": container_factory, "enableConcurrency": True},
        },
    }
    if log_store:
        values["controller"] = {"options": java_options({LOG_STORE_ENV: log_store})}
    return values


def config_property(env_name: str) -> str:
    """The JVM system property OpenWhisk's transformEnvironment.sh makes of a ``CONFIG_`` variable:
    ``_`` separates path segments (empty ones vanish, as bash word splitting drops them), a
    segment starting upper-case (an SPI class key) stays as is, and camelCase becomes kebab-case."""
    if not env_name.startswith("CONFIG_"):
        raise ValueError(f"{env_name!r} is not a CONFIG_ variable")
    segments = []
    for part in env_name[len("CONFIG_") :].split("_"):
        if not part:
            continue
        if part[0].isupper():
            segments.append(part)
        else:
            segments.append(
                re.sub(r"([a-z0-9])([A-Z])", lambda m: f"{m.group(1)}-{m.group(2).lower()}", part)
            )
    return ".".join(segments)


def java_options(env: Mapping[str, str]) -> str:
    """``-Dkey=value`` flags equal to these ``CONFIG_`` variables, for INVOKER_OPTS-style hooks."""
    flags = []
    for name, value in env.items():
        _check_safe(name, value)
        flags.append(f"-D{config_property(name)}={value}")
    return " ".join(flags)


def _target(target: str) -> TargetInfo:
    try:
        return TARGETS[target]
    except KeyError:
        raise ValueError(f"target is one of {TARGET_NAMES}, got {target!r}") from None


def _camel(key: str) -> str:
    """A `docker run` flag name as a CONFIG_ segment: "log-driver" -> "logDriver" (which
    transformEnvironment turns back into "log-driver")."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*", key):
        raise ValueError(f"not a docker run flag name: {key!r}")
    head, *rest = key.split("-")
    return head + "".join(part.capitalize() for part in rest)


def _check_class(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+", name):
        raise ValueError(f"not a JVM class name: {name!r}")
    return name


def _refuse_templates(value: object, where: str = "") -> None:
    """Ansible templates every string of a vars file: a `{{` in a generated value would be run."""
    if isinstance(value, str):
        if any(marker in value for marker in ("{{", "{%", "{#")):
            raise ValueError(f"{where or 'a value'} holds a Jinja marker Ansible would evaluate: {value!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_templates(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_templates(item, f"{where}[{index}]")
