"""ansible/: the playbooks pass ansible-lint's production profile, and a real deployment onto this
machine (one host in every group, Redis as a process, the scaler and its model hosts in Docker)
converges, changes nothing when run again, serves an ML activation the way a patched OpenWhisk
invoker would start its container, and clean.yml leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.types
import pytest
import redis
import yaml

from runtime_harness import IMAGE, TEST_LABELS, ContainerRuntime, free_port
from warmwhisk_protocol.credentials import CREDENTIAL_PARAMETER

REPO = Path(__file__).resolve().parent.parent
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
SCALER_IMAGE = os.environ.get("WARMWHISK_SCALER_IMAGE", "warmwhisk/scaler:dev")
RUNTIMES = REPO / "tests/fixtures/openwhisk/runtimes.master.json"
EXTRA_ENV = re.compile(r"^CONFIG_whisk_containerFactory_containerArgs_extraEnvVars_\d+$")
EXTRA_VOLUME = re.compile(r"^CONFIG_whisk_containerFactory_containerArgs_extraArgs_volume_\d+$")
# What OpenWhisk's DockerContainerFactory adds to every action container (InvokerReactive.scala:
# --cap-drop NET_RAW,NET_ADMIN, --ulimit nofile=1024:1024, --pids-limit 1024).
INVOKER_DEFAULTS: dict[str, Any] = {
    "cap_drop": ["NET_RAW", "NET_ADMIN"],
    "ulimits": [docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
    "pids_limit": 1024,
}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """An ansible command from ansible/ (its ansible.cfg), with this venv's tools first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCALHOST_WARNING": "0"}  # fmt: skip
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=timeout
    )


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: ok, changed, unreachable, failed."""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    found = {
        host: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts), strict=True))
        for host, *counts in RECAP.findall(result.stdout)
    }
    assert found, result.stdout[-3000:]
    return found


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported a change (for a readable failure)."""
    return re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:[^\n]*\n)*?changed:", output)


@pytest.mark.slow  # ansible-lint takes seconds
def test_playbooks_pass_the_production_lint_profile_and_the_syntax_check() -> None:
    lint = ansible("ansible-lint", "--offline", "--nocolor", "--profile", "production", ".")
    assert lint.returncode == 0, lint.stdout[-6000:] + lint.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in lint.stdout + lint.stderr
    syntax = ansible("ansible-playbook", "--syntax-check", "site.yml", "clean.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


class Deployment:
    """site.yml and clean.yml onto this machine, every path and port private to the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"wwtest-{secrets.token_hex(3)}"
        self.redis_port, self.scaler_port = free_port(), free_port()
        self.state = root / "state"
        self.secrets = root / "secrets"
        self.credentials = root / "credentials"
        self.openwhisk_vars = root / "openwhisk-vars.yml"
        self.models = root / "models"
        image, tag = IMAGE.rsplit(":", 1)
        assert image.endswith("warmwhisk/runtime"), f"the manifest entry names warmwhisk/runtime, not {IMAGE}"
        settings = {
            "warmwhisk_deployment": self.name,
            "warmwhisk_state_dir": str(self.state),
            "warmwhisk_secrets_dir": str(self.secrets),
            "warmwhisk_credentials_dir": str(self.credentials),
            "warmwhisk_openwhisk_vars_file": str(self.openwhisk_vars),
            "warmwhisk_openwhisk_runtimes": str(RUNTIMES),
            "warmwhisk_redis_runner": "process",  # no Redis image can be pulled here
            "warmwhisk_redis_port": self.redis_port,
            "warmwhisk_scaler_port": self.scaler_port,
            "warmwhisk_models_dir": str(self.models),
            "warmwhisk_models_include": ["digits"],
            "warmwhisk_build_images": False,  # `make test` built them
            "warmwhisk_install_packages": False,
            "warmwhisk_image_tag": tag,
            "warmwhisk_runtime_image": IMAGE,
            "warmwhisk_scaler_image": SCALER_IMAGE,
            "warmwhisk_host_memory_bytes": 1 << 30,
            "warmwhisk_namespaces": ["guest", "other"],
            "warmwhisk_labels": {"warmwhisk.deployment": self.name, **TEST_LABELS},
        }
        root.mkdir(parents=True, exist_ok=True)
        self.vars_file = root / "vars.json"
        self.vars_file.write_text(json.dumps(settings))
        self.inventory = root / "hosts.ini"
        self.inventory.write_text(
            "[redis]\nlocalhost ansible_connection=local\n[scaler]\nlocalhost\n[invokers]\nlocalhost\n"
            "[controllers]\n[schedulers]\n[all:vars]\n"
            f"ansible_python_interpreter={sys.executable}\n"
            "warmwhisk_redis_bind=127.0.0.1\nwarmwhisk_scaler_bind=127.0.0.1\n"
        )

    def play(self, playbook: str) -> subprocess.CompletedProcess[str]:
        return ansible("ansible-playbook", "-i", str(self.inventory), "-e", f"@{self.vars_file}", playbook)

    @property
    def owner_label(self) -> str:
        return f"warmwhisk.owner=warmwhisk-scaler.{self.name}"

    def containers(self, client: Any) -> list[Any]:
        found = {}
        for label in (f"warmwhisk.deployment={self.name}", self.owner_label):
            for container in client.containers.list(all=True, filters={"label": label}):
                found[container.id] = container
        return list(found.values())

    def force_clean(self, client: Any) -> None:
        """What clean.yml should have done, in case a test failed before it ran."""
        for container in self.containers(client):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        pidfile = self.state / "redis/run/redis.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.fixture
def deployment(tmp_path: Path, docker_client: Any) -> Iterator[Deployment]:
    try:
        docker_client.images.get(SCALER_IMAGE)
    except Exception:  # noqa: BLE001 - any failure means the image is not usable
        pytest.fail(f"no image {SCALER_IMAGE}: run `make scaler-image` (make test builds it)")
    made = Deployment(tmp_path / "deploy")
    try:
        yield made
    finally:
        made.force_clean(docker_client)


def invoker_container(vars_file: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The environment and volumes a patched invoker gives every action container: OpenWhisk turns
    each ``extraEnvVars_<i>: NAME=VALUE`` of ``invoker_extraEnv`` into ``-e NAME=VALUE`` and each
    ``extraArgs_volume_<i>: SRC:DST:ro`` into ``--volume SRC:DST:ro``."""
    extra = yaml.safe_load(vars_file.read_text())["invoker_extraEnv"]
    env = dict(value.split("=", 1) for key, value in extra.items() if EXTRA_ENV.match(key))
    volumes = {}
    for key, value in extra.items():
        if EXTRA_VOLUME.match(key):
            source, target, mode = value.split(":")
            volumes[source] = {"bind": target, "mode": mode}
    return env, volumes


def ml_kind(vars_file: Path) -> dict[str, Any]:
    variables = yaml.safe_load(vars_file.read_text())
    [entry] = [e for e in variables["runtimes_manifest"]["runtimes"]["python"] if e["kind"] == "python:3-ml"]
    return entry


def run_digits(runtime: ContainerRuntime, activation: str) -> tuple[int, Any]:
    context = {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/digits"}
    return runtime.run(
        {"pixels": [0] * 64}, timeout=90, __OW_ACTIVATION_ID=activation,
        __OW_DEADLINE=str(int((time.time() + 80) * 1000)), **context,
    )  # fmt: skip


@pytest.mark.docker
def test_site_converges_serves_routed_activations_and_clean_leaves_nothing(
    deployment: Deployment, docker_client: Any
) -> None:
    first = deployment.play("site.yml")
    assert recap(first)["localhost"]["failed"] == 0

    # Again: nothing changes (idempotent), and the scaler keeps running (not restarted).
    scaler = docker_client.containers.get(f"{deployment.name}-scaler")
    started_at = scaler.attrs["State"]["StartedAt"]
    second = deployment.play("site.yml")
    assert recap(second)["localhost"]["changed"] == 0, changed_tasks(second.stdout)
    scaler.reload()
    assert scaler.attrs["State"]["StartedAt"] == started_at and scaler.status == "running"

    # Secrets: 0600 files on the control node; in the scaler container only as read-only files.
    password = (deployment.secrets / "redis-admin-password").read_text().strip()
    token = (deployment.secrets / "scaler-token").read_text().strip()
    credentials = {ns: (deployment.credentials / ns).read_text().strip() for ns in ("guest", "other")}
    for path in [*deployment.secrets.iterdir(), *deployment.credentials.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(set(credentials.values())) == 2
    inspected = json.dumps(scaler.attrs)
    for secret in (password, token, *credentials.values()):
        assert secret not in inspected
        assert secret not in deployment.openwhisk_vars.read_text()
    assert stat.S_IMODE((deployment.state / "redis/conf/redis.conf").stat().st_mode) == 0o600

    # Redis answers nobody without a login; the admin works.
    anonymous = redis.Redis(port=deployment.redis_port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    admin = redis.Redis(port=deployment.redis_port, username=f"{deployment.name}-admin", password=password)
    assert admin.ping() is True
    admin.close()
    anonymous.close()

    # OpenWhisk's variables: the python:3-ml kind runs the deployed runtime image; every action
    # container gets the registry's address and nothing to log in with.
    entry = ml_kind(deployment.openwhisk_vars)
    assert f"{entry['image']['prefix']}/{entry['image']['name']}:{entry['image']['tag']}" == IMAGE
    env, volumes = invoker_container(deployment.openwhisk_vars)
    assert volumes == {str(deployment.models): {"bind": "/models", "mode": "ro"}}
    assert env["WARMWHISK_MODE"] == "routed" and env["__OW_ALLOW_CONCURRENT"] == "true"
    assert env["WARMWHISK_ROUTER_URL"] == f"redis://127.0.0.1:{deployment.redis_port}/0"
    assert env["WARMWHISK_REDIS_PREFIX"] == deployment.name

    # An ML action's container as the patched invoker starts it, its init carrying the
    # namespace's credential: the deployed scaler starts a model host and the host answers.
    runtime = ContainerRuntime(docker_client, env, volumes, **INVOKER_DEFAULTS)
    try:
        runtime.wait_ready(30)
        code = (REPO / "examples/digits/__main__.py").read_text()
        init_env = {"__OW_NAMESPACE": "guest", "__OW_ACTION_NAME": "/guest/digits",
                    CREDENTIAL_PARAMETER: credentials["guest"]}  # fmt: skip
        assert runtime.init(code, env=init_env) == (200, {"ok": True})
        status, answer = run_digits(runtime, "a-cold")
        assert status == 200 and answer["digit"] in range(10), answer
        assert run_digits(runtime, "a-warm") == (status, answer)
    finally:
        runtime.stop()
    hosts = docker_client.containers.list(filters={"label": deployment.owner_label})
    assert len(hosts) == 1, "the deployed scaler started the model host"
    assert hosts[0].labels["warmwhisk.pool"].startswith("/guest/digits@")  # the key: name@code digest
    assert hosts[0].attrs["HostConfig"]["ReadonlyRootfs"] is True

    # clean.yml: no container, process, port, folder or secret of the deployment is left.
    recap(deployment.play("clean.yml"))
    assert deployment.containers(docker_client) == []
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=deployment.redis_port, socket_timeout=2).ping()
    for path in (deployment.state, deployment.models, deployment.secrets, deployment.credentials,
                 deployment.openwhisk_vars):  # fmt: skip
        assert not path.exists(), path
