"""Model hosts as Docker containers (docker SDK), in network mode "host", bound to ``bind_host``.

``bind_host`` is 127.0.0.1 on one machine; in a cluster it is the engine's machine's private
address, which routed containers on the invokers connect to (hosts advertise it). Never 0.0.0.0.

Each container is named after its host id and labelled (``LABEL_*`` below) with its owner, host
id, pool, ports and start time; ``running`` reads those labels back from the engine, so a
restarted scaler finds its hosts. Containers are not auto-removed: one that exited stays until
``reconcile`` (or ``stop``) removes it, so its logs can be read in between.

Limits: ``HostSpec.memory_bytes`` becomes ``--memory`` with swap disabled (``--memory-swap`` equal
to it), ``HostSpec.cpus`` becomes ``--cpus``; ``HostSpec.model_dir`` is bind-mounted read-only at
``/models`` (the folder must exist on the engine's machine; Docker then refuses rather than
creating it).

Hardening, always (``HARDENING``): a read-only root filesystem with a tmpfs at /tmp, every
capability dropped, ``no-new-privileges``, a pids limit, the image's non-root user.

Secrets (``HostSpec.secrets``) go in a folder of their own per host under ``secrets_dir`` on the
engine's machine (0700, owned by the container's user), bind-mounted at ``/run/warmwhisk``; the
host reads the file and removes it at start, so ``docker inspect`` shows a path and nothing else.
The folder goes when the host is stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.types import Mount

from warmwhisk_protocol.host import IMAGE_PYTHON, MODELS_MOUNT, RUNTIME_MODULE, Env, runtime_flags

from . import base
from .base import DEFAULT_OWNER, BackendError, HostSpec, RunningHost

LABEL_OWNER = "warmwhisk.owner"
LABEL_HOST_ID = "warmwhisk.host-id"
LABEL_POOL = "warmwhisk.pool"
LABEL_PORT = "warmwhisk.port"
LABEL_METRICS_PORT = "warmwhisk.metrics-port"
LABEL_STARTED_AT = "warmwhisk.started-at"
RESERVED_LABELS = frozenset(
    {LABEL_OWNER, LABEL_HOST_ID, LABEL_POOL, LABEL_PORT, LABEL_METRICS_PORT, LABEL_STARTED_AT}
)

# The runtime image's interpreter and module; the backend appends --host/--port/--metrics-port.
DEFAULT_COMMAND = (IMAGE_PYTHON, "-m", RUNTIME_MODULE)
# The image's user (uid:gid), who must own the secrets folder to remove the file in it.
RUNTIME_UID = 1000
SECRETS_MOUNT = "/run/warmwhisk"
# Every host container: nothing to write but /tmp (action code unpacks there), no capabilities, no
# privilege gain, a bounded number of processes. 256 MB of tmpfs counts against the memory limit.
HARDENING: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "pids_limit": 512,
    "user": f"{RUNTIME_UID}:{RUNTIME_UID}",
}


@contextlib.contextmanager
def _engine(what: str) -> Iterator[None]:
    """Turn the docker SDK's errors into one BackendError that says what failed and why."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise BackendError(f"{what}: image not found on the Docker engine ({exc.explanation})") from exc
    except docker.errors.APIError as exc:
        raise BackendError(f"{what}: the Docker engine refused: {exc.explanation or exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise BackendError(f"{what}: the Docker engine does not answer ({exc})") from exc
    except docker.errors.DockerException as exc:
        raise BackendError(f"{what}: {exc}") from exc


class DockerBackend:
    """``HostBackend`` over a Docker engine.

    ``client``: a ``docker.DockerClient`` (``DockerBackend.from_env`` builds one). ``image``: the
    runtime image. ``owner``: value of the ``warmwhisk.owner`` label; ``running``/``reconcile``
    only ever see (and remove) containers with this owner. ``extra_labels``: added to every
    container (cannot override the ``warmwhisk.*`` labels above). ``command``: interpreter and
    module inside the image. ``stop_timeout_s``: grace between SIGTERM and SIGKILL on ``stop``
    (whole seconds; the runtime finishes running activations within it). ``create_options``:
    more ``containers.create`` keyword arguments (e.g. ``log_config``, ``init``), applied last.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        owner: str = DEFAULT_OWNER,
        extra_labels: Mapping[str, str] | None = None,
        command: Sequence[str] = DEFAULT_COMMAND,
        stop_timeout_s: int = 5,
        create_options: Mapping[str, Any] | None = None,
        secrets_dir: str | os.PathLike[str] = "/var/lib/warmwhisk/host-secrets",
        bind_host: str = "127.0.0.1",
    ) -> None:
        clash = RESERVED_LABELS & set(extra_labels or {})
        if clash:
            raise ValueError(f"extra_labels may not set {sorted(clash)}")
        self.client = client
        self.image = image
        self.owner = owner
        self.extra_labels = dict(extra_labels or {})
        self.command = tuple(command)
        self.stop_timeout_s = int(stop_timeout_s)
        self.create_options = dict(create_options or {})
        self.secrets_dir = Path(secrets_dir)
        self.bind_host = bind_host
        self._ports = base.PortAllocator(bind_host=bind_host)

    @classmethod
    def from_env(cls, image: str, **kwargs: Any) -> DockerBackend:
        """A backend over the engine named by DOCKER_HOST (default: the local socket)."""
        with _engine("connecting to the Docker engine"):
            client = docker.from_env()
        return cls(client, image, **kwargs)

    # -- HostBackend -------------------------------------------------------------------------------
    def start(self, spec: HostSpec) -> RunningHost:
        port, metrics_port = self._ports.allocate(2)
        started_at = time.time()
        labels = {
            **self.extra_labels,
            LABEL_OWNER: self.owner,
            LABEL_HOST_ID: spec.host_id,
            LABEL_POOL: spec.pool,
            LABEL_PORT: str(port),
            LABEL_METRICS_PORT: str(metrics_port),
            LABEL_STARTED_AT: repr(started_at),
        }
        options: dict[str, Any] = {
            **HARDENING,
            "command": [*self.command, *runtime_flags(port, metrics_port, self.bind_host)],
            "name": spec.host_id,
            "labels": labels,
            "environment": {**spec.env, Env.ADVERTISE: f"{self.bind_host}:{port}"},
            "network_mode": "host",
            "mounts": [],
        }
        if spec.memory_bytes is not None:
            options["mem_limit"] = spec.memory_bytes
            options["memswap_limit"] = spec.memory_bytes  # no swap beyond the limit
        if spec.cpus is not None:
            options["nano_cpus"] = round(spec.cpus * 1e9)
        if spec.model_dir is not None:
            options["mounts"].append(Mount(MODELS_MOUNT, spec.model_dir, type="bind", read_only=True))
        what = f"starting model host {spec.host_id!r} from image {self.image!r}"
        if spec.secrets is not None:
            folder = self._write_secrets(spec, what)
            options["mounts"].append(Mount(SECRETS_MOUNT, str(folder), type="bind"))
            options["environment"][Env.SECRETS_FILE] = f"{SECRETS_MOUNT}/secrets.json"
        options.update(self.create_options)
        with _engine(what):
            # create + start, not containers.run: run() would try to pull a missing image.
            container = self.client.containers.create(self.image, **options)
        try:
            with _engine(what):
                container.start()
        except BackendError:
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                container.remove(force=True)
            raise
        return RunningHost(
            host_id=spec.host_id,
            pool=spec.pool,
            address=f"{self.bind_host}:{port}",
            metrics_address=f"{self.bind_host}:{metrics_port}",
            started_at=started_at,
            owner=self.owner,
        )

    def stop(self, host_id: str) -> None:
        for summary in self._list(extra_filters=[f"{LABEL_HOST_ID}={host_id}"]):
            self._remove(summary["Id"], running=summary.get("State") == "running", name=host_id)
        self._forget_secrets(host_id)

    def running(self) -> list[RunningHost]:
        return self._scan()[0]

    def reconcile(self, keep: Callable[[RunningHost], bool]) -> tuple[list[RunningHost], list[str]]:
        live, dead = self._scan()
        removed: list[str] = []
        for host_id, container_id in dead:
            self._remove(container_id, running=False, name=host_id)
            self._forget_secrets(host_id)
            removed.append(host_id)
        adopted, stopped = base.adopt_or_stop(live, keep, self.stop)
        return adopted, removed + stopped

    def wait_ready(self, host: RunningHost, timeout_s: float) -> bool:
        return base.poll_ready(host, timeout_s, alive=lambda: self._is_running(host.host_id))

    def logs(self, host_id: str, tail: int = 100) -> str:
        try:
            raw = self.client.api.logs(host_id, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return ""
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise BackendError(f"reading logs of model host {host_id!r}: {exc}") from exc
        return raw.decode(errors="replace")

    # -- internals ---------------------------------------------------------------------------------
    def _list(self, extra_filters: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Summaries (``GET /containers/json``) of this owner's containers, exited ones included."""
        with _engine(f"listing the containers of owner {self.owner!r}"):
            return self.client.api.containers(
                all=True, filters={"label": [f"{LABEL_OWNER}={self.owner}", *extra_filters]}
            )

    def _scan(self) -> tuple[list[RunningHost], list[tuple[str, str]]]:
        """(running hosts, [(host id, container id)] of containers that are not running or unreadable)."""
        live: list[RunningHost] = []
        dead: list[tuple[str, str]] = []
        for summary in self._list():
            labels = summary.get("Labels") or {}
            names = summary.get("Names") or ["?"]
            host_id = labels.get(LABEL_HOST_ID) or names[0].lstrip("/")
            host = _host_from_labels(labels, self.bind_host)
            if host is None or summary.get("State") != "running":
                dead.append((host_id, summary["Id"]))
            else:
                live.append(host)
        live.sort(key=lambda h: (h.started_at, h.host_id))
        return live, dead

    def _remove(self, container_id: str, running: bool, name: str) -> None:
        """SIGTERM and up to ``stop_timeout_s`` to exit (then SIGKILL), then remove. Gone is fine."""
        what = f"stopping model host {name!r}"
        try:
            with _engine(what):
                if running:
                    self.client.api.stop(container_id, timeout=self.stop_timeout_s)
                self.client.api.remove_container(container_id, force=True)
        except BackendError as exc:
            cause = exc.__cause__
            if isinstance(cause, docker.errors.NotFound):
                return
            if isinstance(cause, docker.errors.APIError) and cause.status_code == 409:
                return  # "removal already in progress": another stop got there first
            raise

    def _write_secrets(self, spec: HostSpec, what: str) -> Path:
        """The host's private secrets folder, with the file it will read and remove."""
        assert spec.secrets is not None
        folder = self.secrets_dir / spec.host_id
        try:
            self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
            spec.secrets.write(folder / "secrets.json")
            for path in (folder, folder / "secrets.json"):
                os.chown(path, RUNTIME_UID, RUNTIME_UID)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise BackendError(f"{what}: cannot write its secrets under {self.secrets_dir}: {exc}") from exc
        return folder

    def _forget_secrets(self, host_id: str) -> None:
        if base.HOST_ID_PATTERN.fullmatch(host_id):  # never a path outside the folder
            shutil.rmtree(self.secrets_dir / host_id, ignore_errors=True)

    def _is_running(self, host_id: str) -> bool:
        try:
            state = self.client.api.inspect_container(host_id)["State"]
        except docker.errors.NotFound:
            return False
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return True  # unknown: keep polling /healthz until the deadline
        return bool(state.get("Running")) and not state.get("Restarting")


def _host_from_labels(labels: Mapping[str, str], bind_host: str) -> RunningHost | None:
    """The host a container's labels describe; None if a label is missing or malformed."""
    try:
        return RunningHost(
            host_id=labels[LABEL_HOST_ID],
            pool=labels[LABEL_POOL],
            address=f"{bind_host}:{int(labels[LABEL_PORT])}",
            metrics_address=f"{bind_host}:{int(labels[LABEL_METRICS_PORT])}",
            started_at=float(labels[LABEL_STARTED_AT]),
            owner=labels[LABEL_OWNER],
        )
    except (KeyError, ValueError):
        return None
